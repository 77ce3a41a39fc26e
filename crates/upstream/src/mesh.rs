//! The shared forms of workloads and services a state snapshot indexes, and
//! [`Directory`], the lookups routing needs from whichever state the caller keeps.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use weft_identity::SpiffeId;
use weft_proto::workload::{self, WorkloadStatus};

use crate::endpoint_keys::{EndpointKey, EndpointKeys, KeyFn};
use crate::{PortMapping, ServiceRecord, WorkloadNames, WorkloadRecord};

/// A workload and its live connection counter.
#[derive(Debug)]
pub struct MeshWorkload {
    record: Arc<WorkloadRecord>,
    /// Shared across snapshots for the same uid, so counts survive rebuilds.
    active: Arc<AtomicUsize>,
    /// The strings its connections share, built on the first connection.
    names: OnceLock<Arc<WorkloadNames>>,
}

/// A service with its endpoints.
#[derive(Debug)]
pub struct MeshService {
    record: Arc<ServiceRecord>,
    endpoints: Vec<Endpoint>,
    /// The endpoints' keys, computed on first use (only session persistence needs them).
    keys: OnceLock<EndpointKeys>,
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

/// The lookups routing needs, implemented by the caller's state snapshot (the node
/// proxy's `MeshState`, the waypoint's state). Networks are names, `""` the default.
pub trait Directory {
    /// Service owning the VIP `ip` on `network`.
    fn service_by_vip(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshService>>;

    /// Service by `<namespace>/<hostname>`.
    fn service_by_key(&self, key: &str) -> Option<&Arc<MeshService>>;

    /// Workload owning `ip` on `network`.
    fn workload_by_addr(&self, network: &str, ip: IpAddr) -> Option<&Arc<MeshWorkload>>;

    /// Classifies a destination: service VIP:port first, then workload address.
    fn resolve(&self, network: &str, addr: SocketAddr) -> Destination {
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
    /// A workload from its record and connection counter (carry the counter over from the
    /// previous snapshot's workload with the same uid so load balancing keeps its input).
    #[must_use]
    pub fn new(record: Arc<WorkloadRecord>, active: Arc<AtomicUsize>) -> Self {
        Self {
            record,
            active,
            names: OnceLock::new(),
        }
    }

    /// The strings its connections log, list and send, built on first use and shared by
    /// every later connection (a new record is a new `MeshWorkload`, so they follow it).
    #[must_use]
    pub fn names(&self) -> Arc<WorkloadNames> {
        Arc::clone(self.names.get_or_init(|| Arc::new(WorkloadNames::of(self))))
    }

    /// The connection counter, to carry over into the next snapshot.
    #[must_use]
    pub fn counter(&self) -> &Arc<AtomicUsize> {
        &self.active
    }

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
    /// A service from its record and endpoints (ordered as [`MeshService::endpoints`]
    /// returns them; the node proxy orders them by uid).
    #[must_use]
    pub fn new(record: Arc<ServiceRecord>, endpoints: Vec<Endpoint>) -> Self {
        Self {
            record,
            endpoints,
            keys: OnceLock::new(),
        }
    }

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

    /// Its first VIP (on any network), if it has one.
    #[must_use]
    pub fn first_vip(&self) -> Option<IpAddr> {
        self.record.vips.first().map(|(_, ip)| *ip)
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

    /// Workloads backing the service (healthy or not).
    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint whose [`EndpointKey`] is `key`: one map lookup (the keys of the
    /// endpoint set are computed with `derive` on the first call).
    #[must_use]
    pub fn endpoint_by_key(&self, key: &EndpointKey, derive: KeyFn) -> Option<&Endpoint> {
        self.endpoints.get(self.keys(derive).position(key)?)
    }

    /// The [`EndpointKey`] of `workload` as an endpoint of this service (its stored key
    /// when it is one of the endpoints, derived otherwise).
    #[must_use]
    pub fn endpoint_key(&self, workload: &MeshWorkload, derive: KeyFn) -> EndpointKey {
        let position = (self.endpoints.iter()).position(|e| {
            std::ptr::eq(&*e.workload, workload) || e.workload.uid() == workload.uid()
        });
        position
            .and_then(|p| self.keys(derive).key(p))
            .unwrap_or_else(|| derive(self.key(), workload.uid()))
    }

    fn keys(&self, derive: KeyFn) -> &EndpointKeys {
        (self.keys).get_or_init(|| EndpointKeys::of(self.key(), &self.endpoints, derive))
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
