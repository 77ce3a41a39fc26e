//! The proxy's view of the mesh: workloads, services and L4 policies, as immutable
//! snapshots ([`MeshState`]) published through [`StateStore`] with `arc-swap`, so that the
//! connection path reads without locks.
//!
//! Resources are validated and converted once, on arrival, into typed records (parsed
//! addresses, ports, identity; each workload's compiled [`PolicySet`]; the strings its
//! connections log and send, [`WorkloadNames`], on its first connection). The snapshot's
//! indexes are [`sharded::ShardedMap`]s: a delta updates only the entries of the changed
//! resources (the services they are members of, the policy sets a changed policy can
//! select) and publishing shares every untouched shard with the previous snapshot, so a
//! delta costs time in proportion to what it changes, not to the size of the mesh.

#[cfg(test)]
mod delta_tests;
mod index;
mod local;
mod scopes;
mod sharded;
mod store;
#[cfg(test)]
pub(crate) mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

pub use local::{LocalConfig, LocalConfigError};
pub use store::{StateStore, UpdateOutcome};
pub use weft_upstream::{
    ActiveConnection, AddressRecord, Destination, Directory, Endpoint, MeshService, MeshWorkload,
    PortMapping, ServiceRecord, WorkloadNames, WorkloadRecord,
};

use sharded::ShardedMap;
use weft_policy::{CompiledPolicy, PolicySet};

/// One immutable snapshot of the mesh with its indexes. Lists under one key are kept in
/// workload uid (service key) order, so the first match wins deterministically.
#[derive(Debug, Default, Clone)]
pub struct MeshState {
    generation: u64,
    workloads_by_uid: ShardedMap<String, Arc<MeshWorkload>>,
    workloads_by_ip: ShardedMap<IpAddr, Vec<Arc<MeshWorkload>>>,
    /// By `<namespace>/<name>`; the last (highest uid) wins a duplicate name.
    workloads_by_name: ShardedMap<String, Vec<Arc<MeshWorkload>>>,
    services_by_key: ShardedMap<String, Arc<MeshService>>,
    services_by_vip: ShardedMap<IpAddr, Vec<(String, Arc<MeshService>)>>,
    /// By xDS resource name.
    policies: ShardedMap<String, Arc<CompiledPolicy>>,
    /// Per workload uid: the policies that apply to it, precompiled.
    workload_policies: ShardedMap<String, Arc<PolicySet>>,
}

/// What a workload that is not in the snapshot gets: no policies, nothing missing.
static NO_POLICIES: LazyLock<PolicySet> =
    LazyLock::new(|| PolicySet::new(std::iter::empty(), Vec::new()));

impl MeshState {
    /// Increases on every published update.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Workload by uid.
    #[must_use]
    pub fn workload_by_uid(&self, uid: &str) -> Option<&Arc<MeshWorkload>> {
        self.workloads_by_uid.get(uid)
    }

    /// Workload owning `ip` on `network` (`""` is the default network).
    #[must_use]
    pub fn workload_by_addr(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        self.workloads_by_ip
            .get(&ip.to_canonical())?
            .iter()
            .find(|w| w.network() == network)
    }

    /// Every workload owning `ip`, on any network.
    pub fn workloads_with_ip(&self, ip: IpAddr) -> impl Iterator<Item = &Arc<MeshWorkload>> {
        self.workloads_by_ip
            .get(&ip.to_canonical())
            .into_iter()
            .flatten()
    }

    /// Workload by `namespace` and `name` (the pod name for Kubernetes pods).
    #[must_use]
    pub fn workload_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<MeshWorkload>> {
        self.workloads_by_name
            .get(format!("{namespace}/{name}").as_str())?
            .last()
    }

    /// All workloads (unordered).
    pub fn workloads(&self) -> impl Iterator<Item = &Arc<MeshWorkload>> {
        self.workloads_by_uid.values()
    }

    /// Service by `<namespace>/<hostname>`.
    #[must_use]
    pub fn service_by_key(&self, key: &str) -> Option<&Arc<MeshService>> {
        self.services_by_key.get(key)
    }

    /// Service owning the VIP `ip` on `network`.
    #[must_use]
    pub fn service_by_vip(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshService>> {
        self.services_by_vip
            .get(&ip.to_canonical())?
            .iter()
            .find_map(|(net, svc)| (net == network).then_some(svc))
    }

    /// All services (unordered).
    pub fn services(&self) -> impl Iterator<Item = &Arc<MeshService>> {
        self.services_by_key.values()
    }

    /// Policy by `<namespace>/<name>`.
    #[must_use]
    pub fn policy(&self, key: &str) -> Option<&Arc<CompiledPolicy>> {
        self.policies.get(key)
    }

    /// All policies, ordered by key (sorted on each call: for admin pages, not the data
    /// path).
    pub fn policies(&self) -> impl Iterator<Item = &Arc<CompiledPolicy>> {
        let mut all: Vec<_> = self.policies.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(_, policy)| policy)
    }

    /// Policies that apply to `workload` (a workload of this snapshot), precompiled.
    #[must_use]
    pub fn policies_of(&self, workload: &MeshWorkload) -> &PolicySet {
        self.policies_by_uid(workload.uid()).unwrap_or(&NO_POLICIES)
    }

    /// Policies that apply to the workload `uid`, if it is in this snapshot.
    #[must_use]
    pub fn policies_by_uid(&self, uid: &str) -> Option<&PolicySet> {
        self.workload_policies.get(uid).map(|set| &**set)
    }

    /// Classifies an outbound destination: service VIP:port first, then workload address.
    #[must_use]
    pub fn resolve(&self, network: &str, addr: SocketAddr) -> Destination {
        Directory::resolve(self, network, addr)
    }
}

impl Directory for MeshState {
    fn service_by_vip(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshService>> {
        MeshState::service_by_vip(self, network, ip)
    }

    fn service_by_key(&self, key: &str) -> Option<&Arc<MeshService>> {
        MeshState::service_by_key(self, key)
    }

    fn workload_by_addr(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        MeshState::workload_by_addr(self, network, ip)
    }
}
