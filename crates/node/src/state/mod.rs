//! The proxy's view of the mesh: workloads, services and L4 policies, as immutable
//! snapshots ([`MeshState`]) published through [`StateStore`] with `arc-swap`, so that the
//! connection path reads without locks. Every update rebuilds all indexes from the stored
//! resources (O(workloads + services + policies)); that is fine at node-proxy scale
//! (thousands of resources) and keeps the indexes trivially consistent.

mod build;
mod local;
mod records;
mod store;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weft_proto::workload::{self, WorkloadStatus};

pub use local::{LocalConfig, LocalConfigError};
pub use records::{AddressRecord, PortMapping, ServiceRecord, WorkloadRecord};
pub use store::{StateStore, UpdateOutcome};

use weft_identity::SpiffeId;
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
}

/// A workload with the policies that apply to it and its live connection counter.
#[derive(Debug)]
pub struct MeshWorkload {
    record: Arc<WorkloadRecord>,
    policies: Arc<PolicySet>,
    /// Shared across snapshots for the same uid, so counts survive rebuilds.
    active: Arc<AtomicUsize>,
}

/// A service with its endpoints.
#[derive(Debug)]
pub struct MeshService {
    record: Arc<ServiceRecord>,
    endpoints: Vec<Endpoint>,
}

/// A workload backing a service, with the ports it declares for that service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The workload.
    pub workload: Arc<MeshWorkload>,
    /// Its port list for the service (may be empty: then the service's ports apply).
    pub ports: Vec<PortMapping>,
}

/// What a destination address is.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A service VIP on a declared port.
    Service {
        /// The service.
        service: Arc<MeshService>,
        /// The matched port.
        port: PortMapping,
    },
    /// A workload address.
    Workload(Arc<MeshWorkload>),
    /// Not in the mesh (or a VIP on an undeclared port): pass through as plain TCP.
    Unknown,
}

/// Decrements the workload's active connection count when dropped.
#[derive(Debug)]
pub struct ActiveConnection {
    counter: Arc<AtomicUsize>,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

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

    /// Classifies an outbound destination: service VIP:port first, then workload address.
    #[must_use]
    pub fn resolve(&self, network: &str, addr: SocketAddr) -> Destination {
        if let Some(service) = self.service_by_vip(network, addr.ip()) {
            return match service.port(addr.port()) {
                Some(port) => Destination::Service {
                    service: service.clone(),
                    port,
                },
                None => Destination::Unknown,
            };
        }
        match self.workload_by_addr(network, addr.ip()) {
            Some(workload) => Destination::Workload(workload.clone()),
            None => Destination::Unknown,
        }
    }
}

impl MeshWorkload {
    /// The validated record.
    #[must_use]
    pub fn record(&self) -> &Arc<WorkloadRecord> {
        &self.record
    }

    /// The resource as received.
    #[must_use]
    pub fn proto(&self) -> &workload::Workload {
        &self.record.proto
    }

    /// uid (the xDS resource name).
    #[must_use]
    pub fn uid(&self) -> &str {
        &self.record.proto.uid
    }

    /// Network name (`""` = default).
    #[must_use]
    pub fn network(&self) -> &str {
        &self.record.proto.network
    }

    /// Parsed addresses.
    #[must_use]
    pub fn addresses(&self) -> &[IpAddr] {
        &self.record.addresses
    }

    /// SPIFFE identity.
    #[must_use]
    pub fn identity(&self) -> &SpiffeId {
        &self.record.identity
    }

    /// Policies that apply to this workload, precompiled.
    #[must_use]
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// True when the control plane reports it healthy.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.record.proto.status() == WorkloadStatus::Healthy
    }

    /// True when it accepts HBONE (otherwise reach it with plain TCP).
    #[must_use]
    pub fn speaks_hbone(&self) -> bool {
        self.record.proto.tunnel_protocol() == workload::TunnelProtocol::Hbone
    }

    /// Connections this proxy currently has open to it (load balancing input).
    #[must_use]
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a new connection to this workload until the guard is dropped.
    #[must_use]
    pub fn track_connection(&self) -> ActiveConnection {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveConnection {
            counter: self.active.clone(),
        }
    }
}

impl MeshService {
    /// The validated record.
    #[must_use]
    pub fn record(&self) -> &Arc<ServiceRecord> {
        &self.record
    }

    /// The resource as received.
    #[must_use]
    pub fn proto(&self) -> &workload::Service {
        &self.record.proto
    }

    /// `<namespace>/<hostname>`.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.record.key
    }

    /// The declared port `service_port`, if any.
    #[must_use]
    pub fn port(&self, service_port: u16) -> Option<PortMapping> {
        self.record
            .ports
            .iter()
            .find(|p| p.service_port == service_port)
            .copied()
    }

    /// Workloads backing the service (healthy or not), ordered by uid.
    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

impl Endpoint {
    /// Where a connection to the service's `port` lands on this workload: the workload's own
    /// mapping for that service port, else the service's target port, else the same port.
    #[must_use]
    pub fn target_port(&self, port: PortMapping) -> u16 {
        self.ports
            .iter()
            .find(|p| p.service_port == port.service_port)
            .and_then(|p| p.target_port)
            .or(port.target_port)
            .unwrap_or(port.service_port)
    }
}
