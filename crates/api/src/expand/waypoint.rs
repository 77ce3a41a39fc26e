//! Waypoint deployment: what a waypoint `Gateway` (class `istio-waypoint`) runs, decided at
//! expansion time as Istio's deployment controller decides it in a cluster.
//!
//! Each waypoint Gateway `<ns>/<gw>` gets:
//! - a pod `<gw>-<hash>` in `<ns>` (the hash is a stable hash of `<ns>/<gw>`, so the name is
//!   the same on every run) owned by the Gateway, with service account `<gw>` (its identity
//!   is `spiffe://<trust domain>/ns/<ns>/sa/<gw>`), the labels in [`waypoint_pod_labels`] and
//!   one container that runs `weft waypoint run --gateway <ns>/<gw>` (the runtime adds where
//!   the control plane is). `istio.io/dataplane-mode: none` keeps the pod out of the node
//!   proxy's capture: the waypoint terminates HBONE on its port 15008 itself, so that traffic
//!   must not be captured a second time (its workload record says no HBONE for the same
//!   reason: node proxies reach it as a waypoint, by its Service, on 15008);
//!   `istio.io/use-waypoint: none` keeps a namespace-wide waypoint label from sending the
//!   waypoint's own traffic through itself;
//! - a Service `<gw>` in `<ns>` selecting that pod by `gateway.networking.k8s.io/gateway-name`
//!   with the ports `status-port` 15021 and `mesh` 15008 (the ports of Istio's waypoint
//!   Service; weft's waypoint answers readiness on its metrics port 15020, so 15021 is only
//!   there for tools that expect it), so the waypoint is reachable by the hostname
//!   `<gw>.<ns>.svc.<domain>` that services using it are given. A Service of that name
//!   written in the configuration is kept as written instead.

use super::deployment::{self, Deployment, GATEWAY_CLASS_LABEL, namespace_of};
use super::{ExpandedPod, stable_hash};
use crate::gateway::{Gateway, WAYPOINT_CLASS};
use crate::object::LoadedObject;
use crate::snapshot::ConfigSnapshot;
use std::collections::BTreeMap;

pub use super::deployment::GATEWAY_NAME_LABEL;
/// The label that keeps a pod out of (or puts it into) the ambient mesh's capture.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// The label naming the waypoint an object's traffic goes through (`none`: no waypoint).
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// The waypoint's HBONE port (Service port `mesh`).
pub const WAYPOINT_HBONE_PORT: u16 = 15008;
/// The waypoint's readiness port (Service port `status-port`).
pub const WAYPOINT_STATUS_PORT: u16 = 15021;
/// Name of the waypoint pod's container.
pub const WAYPOINT_CONTAINER: &str = "waypoint";

/// The waypoint Gateways of `snapshot` with their namespace, in snapshot order.
pub fn waypoint_gateways(
    snapshot: &ConfigSnapshot,
) -> impl Iterator<Item = (&str, &Gateway, &LoadedObject)> {
    snapshot
        .gateways()
        .filter(|(gateway, _)| gateway.spec.gateway_class_name == WAYPOINT_CLASS)
        .map(|(gateway, loaded)| (namespace_of(&gateway.metadata), gateway, loaded))
}

/// The name of the pod running waypoint `<namespace>/<gateway>`.
#[must_use]
pub fn waypoint_pod_name(namespace: &str, gateway: &str) -> String {
    let hash = stable_hash(&format!("{namespace}/{gateway}")) & 0xff_ffff_ffff;
    format!("{gateway}-{hash:010x}")
}

/// The waypoint Gateway (`namespace/name`) a pod runs, if it is a waypoint's pod: expanded
/// from a Gateway, or written with a Gateway as its controlling owner (as `weft up`'s
/// explicit mode writes the pods it expanded), and not labelled with another class (an
/// ingress gateway's pod is owned by its Gateway too).
#[must_use]
pub fn waypoint_of(pod: &ExpandedPod) -> Option<String> {
    match deployment::controlling_gateway(pod)? {
        (gateway, None) => Some(gateway),
        (gateway, Some(class)) => (class == WAYPOINT_CLASS).then_some(gateway),
    }
}

/// Labels of a waypoint's pod and Service (the gateway name is also the Service's selector).
#[must_use]
pub fn waypoint_pod_labels(gateway: &str) -> BTreeMap<String, String> {
    [
        (GATEWAY_NAME_LABEL, gateway),
        (GATEWAY_CLASS_LABEL, WAYPOINT_CLASS),
        (DATAPLANE_MODE_LABEL, "none"),
        // A waypoint's traffic never goes through a waypoint (its own included).
        (USE_WAYPOINT_LABEL, "none"),
        ("service.istio.io/canonical-name", gateway),
        ("service.istio.io/canonical-revision", "latest"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One pod per waypoint Gateway of `snapshot` (no node or address yet), except where a
/// Pod of that name is written in the configuration.
pub(super) fn waypoint_pods(snapshot: &ConfigSnapshot) -> Vec<ExpandedPod> {
    waypoint_gateways(snapshot)
        .filter_map(|(_, gateway, loaded)| {
            waypoint_deployment(gateway)?.expanded_pod(snapshot, loaded)
        })
        .collect()
}

/// What waypoint Gateway `gateway` runs (`None` for Gateways of other classes).
pub(super) fn waypoint_deployment(gateway: &Gateway) -> Option<Deployment> {
    if gateway.spec.gateway_class_name != WAYPOINT_CLASS {
        return None;
    }
    let namespace = namespace_of(&gateway.metadata);
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let ports = |order: [(&str, u16); 2]| order.map(|(n, p)| (n.to_owned(), p)).into();
    Some(
        Deployment {
            namespace: namespace.to_owned(),
            pod_name: waypoint_pod_name(namespace, &name),
            service_name: name.clone(),
            service_account: name.clone(),
            labels: waypoint_pod_labels(&name),
            annotations: BTreeMap::new(),
            container: WAYPOINT_CONTAINER,
            command: ["weft", "waypoint", "run", "--gateway"]
                .map(str::to_owned)
                .into_iter()
                .chain([format!("{namespace}/{name}")])
                .collect(),
            container_ports: ports([
                ("mesh", WAYPOINT_HBONE_PORT),
                ("status-port", WAYPOINT_STATUS_PORT),
            ]),
            service_ports: ports([
                ("status-port", WAYPOINT_STATUS_PORT),
                ("mesh", WAYPOINT_HBONE_PORT),
            ]),
            gateway: name,
        }
        .with_infrastructure(gateway),
    )
}

/// Adds the Service of each waypoint Gateway in `objects` that has no Service of its name
/// yet (before ClusterIPs are allocated, so it gets one like any other Service).
pub fn add_waypoint_services(objects: &mut Vec<LoadedObject>) {
    deployment::add_services(objects, waypoint_deployment);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = "\
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.9.0.0/24}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
";

    fn snapshot(extra: &str) -> ConfigSnapshot {
        let text = format!("{MESH}{extra}");
        let loaded = crate::parse_manifests(&text, std::path::Path::new("mesh.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        ConfigSnapshot::new(loaded.objects)
    }

    #[test]
    fn a_waypoint_gateway_runs_one_pod_with_its_own_identity_outside_capture() {
        let snapshot = snapshot("");
        let pods = snapshot.pods();
        assert_eq!(
            pods.len(),
            1,
            "only the waypoint Gateway runs a pod: {pods:?}"
        );
        let pod = &pods[0];
        assert_eq!(pod.name(), waypoint_pod_name("shop", "wp"));
        assert!(pod.name().starts_with("wp-") && pod.name().len() == "wp-".len() + 10);
        assert_eq!(pod.namespace(), "shop");
        assert_eq!(pod.service_account(), "wp");
        assert_eq!(waypoint_of(pod).as_deref(), Some("shop/wp"));
        let labels = pod.labels();
        assert_eq!(labels[GATEWAY_NAME_LABEL], "wp");
        assert_eq!(labels[DATAPLANE_MODE_LABEL], "none");
        assert_eq!(labels[USE_WAYPOINT_LABEL], "none");
        assert_eq!(pod.node_name(), Some("n1"));
        assert!(pod.ip().is_some());
        let container = &pod.pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.command.as_deref().unwrap(),
            ["weft", "waypoint", "run", "--gateway", "shop/wp"]
        );
    }

    #[test]
    fn a_waypoint_gateway_gets_a_service_on_15008_and_15021_unless_one_is_written() {
        let snapshot = snapshot("");
        let service = snapshot
            .services()
            .find(|(s, _)| s.metadata.name.as_deref() == Some("wp"))
            .map(|(s, _)| s)
            .expect("generated Service shop/wp");
        let spec = service.spec.as_ref().unwrap();
        assert!(spec.cluster_ip.is_some(), "a ClusterIP is allocated");
        assert_eq!(spec.selector.as_ref().unwrap()[GATEWAY_NAME_LABEL], "wp");
        let ports: Vec<(Option<&str>, i32)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(ports, [(Some("status-port"), 15021), (Some("mesh"), 15008)]);
        assert!(
            snapshot
                .services()
                .all(|(s, _)| s.metadata.name.as_deref() != Some("ingress")),
            "only waypoints get a Service"
        );

        let written = "---\napiVersion: v1\nkind: Service\nmetadata: {name: wp, namespace: shop}\n\
                       spec: {ports: [{port: 9}]}\n";
        let snapshot = self::snapshot(written);
        let services: Vec<_> = snapshot.services().collect();
        assert_eq!(services.len(), 1);
        let ports = services[0].0.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(ports[0].port, 9, "the written Service is kept");
    }

    #[test]
    fn pod_names_are_stable_and_distinct_per_gateway() {
        assert_eq!(waypoint_pod_name("a", "wp"), waypoint_pod_name("a", "wp"));
        assert_ne!(waypoint_pod_name("a", "wp"), waypoint_pod_name("b", "wp"));
    }
}
