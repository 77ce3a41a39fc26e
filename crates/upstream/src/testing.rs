//! Test support (feature `test-support`): builders of `istio.workload` resources and
//! [`Index`], a minimal [`Directory`] over them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use weft_proto::workload::{
    self as wl, Address, NetworkAddress, Port, PortList, Service, Workload, address,
};

use crate::{AddressRecord, Directory, Endpoint, MeshService, MeshWorkload};

/// The 4 or 16 bytes of `ip`.
#[must_use]
pub fn ip_bytes(ip: &str) -> Vec<u8> {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The uid of pod `ns/name`.
#[must_use]
pub fn uid(ns: &str, name: &str) -> String {
    format!("Kubernetes//Pod/{ns}/{name}")
}

/// A healthy-by-default HBONE pod at `ip`, service account = name up to the first `-`.
#[must_use]
pub fn pod(ns: &str, name: &str, ip: &str) -> Workload {
    Workload {
        uid: uid(ns, name),
        name: name.into(),
        namespace: ns.into(),
        addresses: vec![ip_bytes(ip)],
        tunnel_protocol: wl::TunnelProtocol::Hbone.into(),
        service_account: name.split('-').next().unwrap().into(),
        ..Workload::default()
    }
}

fn ports(pairs: &[(u32, u32)]) -> Vec<Port> {
    pairs
        .iter()
        .map(|&(service_port, target_port)| Port {
            service_port,
            target_port,
            app_protocol: 0,
        })
        .collect()
}

/// `w` as an endpoint of `service_key` with `(service port, target port)` pairs.
#[must_use]
pub fn member(mut w: Workload, service_key: &str, pairs: &[(u32, u32)]) -> Workload {
    let ports = ports(pairs);
    w.services.insert(service_key.into(), PortList { ports });
    w
}

/// Service `name.ns.svc.cluster.local` on `vip` with `(service port, target port)` pairs.
#[must_use]
pub fn service(ns: &str, name: &str, vip: &str, pairs: &[(u32, u32)]) -> Service {
    Service {
        name: name.into(),
        namespace: ns.into(),
        hostname: format!("{name}.{ns}.svc.cluster.local"),
        addresses: vec![NetworkAddress {
            network: String::new(),
            address: ip_bytes(vip),
            length: None,
        }],
        ports: ports(pairs),
        ..Service::default()
    }
}

/// `(resource name, Address)` of a workload.
#[must_use]
pub fn wl_address(w: Workload) -> (String, Address) {
    (
        w.uid.clone(),
        Address {
            r#type: Some(address::Type::Workload(w)),
        },
    )
}

/// `(resource name, Address)` of a service.
#[must_use]
pub fn svc_address(s: Service) -> (String, Address) {
    (
        format!("{}/{}", s.namespace, s.hostname),
        Address {
            r#type: Some(address::Type::Service(s)),
        },
    )
}

/// A minimal [`Directory`]: workloads and services indexed by address and key, on the
/// default network only. Endpoints are ordered by uid.
#[derive(Debug, Default)]
pub struct Index {
    workloads: HashMap<IpAddr, Arc<MeshWorkload>>,
    by_name: HashMap<String, Arc<MeshWorkload>>,
    by_vip: HashMap<IpAddr, Arc<MeshService>>,
    by_key: HashMap<String, Arc<MeshService>>,
}

impl Index {
    /// Validates and indexes `resources`.
    ///
    /// # Panics
    /// When a resource is invalid.
    #[must_use]
    pub fn new(resources: impl IntoIterator<Item = (String, Address)>) -> Self {
        let mut index = Self::default();
        let mut services = Vec::new();
        let mut endpoints: HashMap<String, Vec<Endpoint>> = HashMap::new();
        for (name, address) in resources {
            match AddressRecord::validate(Some(&name), address).unwrap() {
                AddressRecord::Service(record) => services.push(record),
                AddressRecord::Workload(record) => {
                    let workload = Arc::new(MeshWorkload::new(record.clone(), Arc::default()));
                    for (key, ports) in &record.service_ports {
                        let ports = ports.clone();
                        let workload = workload.clone();
                        endpoints
                            .entry(key.clone())
                            .or_default()
                            .push(Endpoint { workload, ports });
                    }
                    index.add_workload(workload);
                }
            }
        }
        for record in services {
            let mut members = endpoints.remove(&record.key).unwrap_or_default();
            members.sort_by(|a, b| a.workload.uid().cmp(b.workload.uid()));
            let service = Arc::new(MeshService::new(record.clone(), members));
            for (_, ip) in &record.vips {
                index.by_vip.insert(*ip, service.clone());
            }
            index.by_key.insert(record.key.clone(), service);
        }
        index
    }

    fn add_workload(&mut self, workload: Arc<MeshWorkload>) {
        for ip in workload.addresses() {
            self.workloads.insert(*ip, workload.clone());
        }
        let proto = workload.proto();
        let name = format!("{}/{}", proto.namespace, proto.name);
        self.by_name.insert(name, workload);
    }

    /// Workload by namespace and name.
    #[must_use]
    pub fn workload_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<MeshWorkload>> {
        self.by_name.get(&format!("{namespace}/{name}"))
    }
}

impl Directory for Index {
    fn service_by_vip(&self, _network: &str, ip: IpAddr) -> Option<&Arc<MeshService>> {
        self.by_vip.get(&ip)
    }

    fn service_by_key(&self, key: &str) -> Option<&Arc<MeshService>> {
        self.by_key.get(key)
    }

    fn workload_by_addr(&self, _network: &str, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        self.workloads.get(&ip)
    }
}
