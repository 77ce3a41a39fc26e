//! ClusterIP allocation for Services that do not write one, as a Kubernetes API server does
//! at admission. Every consumer of a [`crate::ConfigSnapshot`] (the control plane's
//! translation, `weft up`'s kube-proxy rules and DNS, `weft analyze`) sees the same address.
//!
//! Addresses come from [`SERVICE_CIDR`], picked by a stable hash of `<namespace>/<name>`
//! with linear probing, so adding one Service never moves another. Written addresses are
//! reserved first; headless (`clusterIP: None`) and `ExternalName` Services get none.

use crate::expand::{free_address, stable_hash};
use crate::object::{LoadedObject, Object};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// The range ClusterIPs are allocated from (Kubernetes' common default).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Fills `spec.clusterIP`/`clusterIPs` of Services that need an address and have none.
pub fn allocate_cluster_ips(objects: &mut [LoadedObject]) {
    let Ok(cidr) = SERVICE_CIDR.parse::<IpNet>() else {
        return;
    };
    let mut taken: HashSet<IpAddr> = HashSet::new();
    let mut pending: Vec<(String, usize)> = Vec::new();
    for (position, loaded) in objects.iter().enumerate() {
        let Object::Service(service) = &loaded.object else {
            continue;
        };
        let spec = service.spec.as_ref();
        let written = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        let external_name = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if let Ok(ip) = written.parse::<IpAddr>() {
            taken.insert(ip);
        } else if written.is_empty() && !external_name {
            let key = format!(
                "{}/{}",
                loaded.object.namespace().unwrap_or_default(),
                loaded.object.name()
            );
            pending.push((key, position));
        }
    }
    // Sorted so the result does not depend on file or document order.
    pending.sort();
    for (key, position) in pending {
        let Some(ip) = free_address(cidr, stable_hash(&key), &taken) else {
            tracing::warn!(service = %key, cidr = SERVICE_CIDR, "no free ClusterIP left");
            continue;
        };
        taken.insert(ip);
        if let Object::Service(service) = &mut objects[position].object {
            let spec = service.spec.get_or_insert_with(Default::default);
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigSnapshot;

    fn services(yaml: &str) -> ConfigSnapshot {
        let loaded = crate::parse_manifests(yaml, std::path::Path::new("test.yaml"));
        ConfigSnapshot::new(loaded.objects)
    }

    fn cluster_ip(snapshot: &ConfigSnapshot, name: &str) -> Option<String> {
        snapshot
            .services()
            .find(|(_, loaded)| loaded.object.name() == name)
            .and_then(|(service, _)| service.spec.as_ref()?.cluster_ip.clone())
    }

    const MANIFESTS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: a, namespace: x}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: x}
spec: {clusterIP: 10.96.7.7, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: x}
spec: {clusterIP: None, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: x}
spec: {type: ExternalName, externalName: example.invalid}
";

    #[test]
    fn assigns_stable_addresses_in_the_service_cidr_and_keeps_written_ones() {
        let snapshot = services(MANIFESTS);
        let assigned: IpAddr = cluster_ip(&snapshot, "a").unwrap().parse().unwrap();
        assert!(SERVICE_CIDR.parse::<IpNet>().unwrap().contains(&assigned));
        assert_ne!(assigned.to_string(), "10.96.7.7");
        assert_eq!(cluster_ip(&snapshot, "b").as_deref(), Some("10.96.7.7"));
        assert_eq!(cluster_ip(&snapshot, "headless").as_deref(), Some("None"));
        assert_eq!(cluster_ip(&snapshot, "ext"), None);

        // Same answer whatever the document order.
        let mut reversed: Vec<&str> = MANIFESTS.split("---\n").collect();
        reversed.reverse();
        let again = services(&reversed.join("---\n"));
        assert_eq!(cluster_ip(&again, "a"), Some(assigned.to_string()));
    }
}
