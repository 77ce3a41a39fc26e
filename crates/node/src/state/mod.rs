//! The proxy's view of the mesh: workloads, services and L4 policies, as immutable
//! snapshots ([`MeshState`]) published through [`StateStore`] with `arc-swap`, so that the
//! connection path reads without locks. Every update rebuilds all indexes from the stored
//! resources (O(workloads + services + policies)); that is fine at node-proxy scale
//! (thousands of resources) and keeps the indexes trivially consistent.

mod build;
mod local;
mod store;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

pub use local::{LocalConfig, LocalConfigError};
pub use store::{StateStore, UpdateOutcome};
pub use weft_upstream::{
    ActiveConnection, AddressRecord, Destination, Directory, Endpoint, MeshService, MeshWorkload,
    PortMapping, ServiceRecord, WorkloadRecord,
};

use weft_policy::{CompiledPolicy, PolicySet};

/// One immutable snapshot of the mesh with its indexes.
#[derive(Debug, Default)]
pub struct MeshState {
    generation: u64,
    workloads_by_uid: HashMap<String, Arc<MeshWorkload>>,
    workloads_by_ip: HashMap<IpAddr, Vec<Arc<MeshWorkload>>>,
    workloads_by_name: HashMap<String, Arc<MeshWorkload>>,
    services_by_key: HashMap<String, Arc<MeshService>>,
    services_by_vip: HashMap<IpAddr, Vec<(String, Arc<MeshService>)>>,
    policies: BTreeMap<String, Arc<CompiledPolicy>>,
    /// Per workload uid: the policies that apply to it, precompiled.
    workload_policies: HashMap<String, Arc<PolicySet>>,
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
        self.workloads_by_name.get(&format!("{namespace}/{name}"))
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

    /// All policies, ordered by key.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<CompiledPolicy>> {
        self.policies.values()
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
