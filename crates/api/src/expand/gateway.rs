//! Gateway deployment: what an ingress/egress `Gateway` of a class weft runs (see
//! [`crate::gateway_status::gateway_controller`]: `weft.dev/gateway` and
//! `istio.io/gateway-controller` classes, and the built-in `weft` and `istio`) becomes,
//! decided at expansion time the way Istio's gateway deployment controller decides it in a
//! cluster, so manifests written for Istio find the names they expect.
//!
//! Each such Gateway `<ns>/<gw>` of class `<class>` gets:
//! - a pod `<gw>-<class>-<hash>` in `<ns>` (the hash is a stable hash of `<ns>/<gw>`) owned
//!   by the Gateway, with service account `<gw>-<class>` (identity
//!   `spiffe://<trust domain>/ns/<ns>/sa/<gw>-<class>`), the labels of [`gateway_pod_labels`]
//!   and one container running `weft gateway --gateway <ns>/<gw> --service-account
//!   <gw>-<class>` (the runtime adds where the control plane is and the address to listen
//!   on). `istio.io/dataplane-mode: none` keeps it out of the node proxy's capture: clients
//!   outside the mesh connect to it directly, and it opens its own HBONE tunnels to mesh
//!   backends with its own identity;
//! - a Service `<gw>-<class>` in `<ns>` selecting that pod by
//!   `gateway.networking.k8s.io/gateway-name: <gw>`, with the port `status-port` 15021 and one
//!   port per distinct listener port, named `<protocol>-<port>` (`http-80`). A Service of
//!   that name written in the configuration is kept as written instead.
//!
//! Both carry the Gateway's `spec.infrastructure` labels and annotations (weft's own labels
//! win where a key is in both).
//!
//! A Pod written in the configuration under the pod's name replaces the expanded one.

use super::deployment::{self, Deployment, GATEWAY_CLASS_LABEL, GATEWAY_NAME_LABEL, namespace_of};
use super::waypoint::{DATAPLANE_MODE_LABEL, USE_WAYPOINT_LABEL};
use super::{ExpandedPod, stable_hash};
use crate::gateway::{Gateway, WAYPOINT_CLASS};
use crate::gateway_status::gateway_controller;
use crate::object::{Kind, LoadedObject};
use crate::snapshot::ConfigSnapshot;
use std::collections::BTreeMap;

/// Name of the gateway pod's container.
pub const GATEWAY_CONTAINER: &str = "gateway";
/// The gateway's readiness port (Service port `status-port`).
pub const GATEWAY_STATUS_PORT: u16 = 15021;
/// The gateway's metrics port.
pub const GATEWAY_METRICS_PORT: u16 = 15020;

/// The name of a gateway's deployment, Service and service account: `<gateway>-<class>`.
#[must_use]
pub fn gateway_service_account(gateway: &str, class: &str) -> String {
    format!("{gateway}-{class}")
}

/// The name of the pod running gateway `<namespace>/<gateway>` of class `class`.
#[must_use]
pub fn gateway_pod_name(namespace: &str, gateway: &str, class: &str) -> String {
    let hash = stable_hash(&format!("{namespace}/{gateway}")) & 0xff_ffff_ffff;
    format!("{}-{hash:010x}", gateway_service_account(gateway, class))
}

/// The Gateway (`namespace/name`) a pod runs as an ingress/egress gateway: owned by a
/// Gateway (expanded, or written with it as controlling owner) and labelled with a class
/// other than the waypoint class.
#[must_use]
pub fn gateway_of(pod: &ExpandedPod) -> Option<String> {
    match deployment::controlling_gateway(pod)? {
        (gateway, Some(class)) if class != WAYPOINT_CLASS => Some(gateway),
        _ => None,
    }
}

/// Labels of a gateway's pod and Service (the gateway name is also the Service's selector).
#[must_use]
pub fn gateway_pod_labels(gateway: &str, class: &str) -> BTreeMap<String, String> {
    let deployment = gateway_service_account(gateway, class);
    [
        (GATEWAY_NAME_LABEL, gateway),
        (GATEWAY_CLASS_LABEL, class),
        (DATAPLANE_MODE_LABEL, "none"),
        // Traffic to the gateway comes from outside: it never goes through a waypoint.
        (USE_WAYPOINT_LABEL, "none"),
        ("service.istio.io/canonical-name", &deployment),
        ("service.istio.io/canonical-revision", "latest"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The listener ports of `gateway`, each once, in listener order, with the protocol of the
/// first listener on it (as written).
#[must_use]
pub fn listener_ports(gateway: &Gateway) -> Vec<(String, u16)> {
    let mut ports: Vec<(String, u16)> = Vec::new();
    for listener in &gateway.spec.listeners {
        let Ok(port) = u16::try_from(listener.port) else {
            continue;
        };
        if port != 0 && ports.iter().all(|(_, known)| *known != port) {
            ports.push((listener.protocol.clone(), port));
        }
    }
    ports
}

/// One pod per Gateway weft runs as a gateway (no node or address yet), except where a Pod
/// of that name is written in the configuration.
pub(super) fn gateway_pods(snapshot: &ConfigSnapshot) -> Vec<ExpandedPod> {
    snapshot
        .gateways()
        .filter(|(gateway, _)| runs_as_gateway(snapshot, gateway))
        .filter_map(|(gateway, loaded)| gateway_deployment(gateway).expanded_pod(snapshot, loaded))
        .collect()
}

fn runs_as_gateway(snapshot: &ConfigSnapshot, gateway: &Gateway) -> bool {
    let class = &gateway.spec.gateway_class_name;
    class != WAYPOINT_CLASS && gateway_controller(snapshot, class).is_some()
}

/// What `gateway` runs when weft runs it as an ingress/egress gateway (its class is one of
/// weft's, per `snapshot`'s GatewayClasses).
pub(super) fn deployment_of(snapshot: &ConfigSnapshot, gateway: &Gateway) -> Option<Deployment> {
    runs_as_gateway(snapshot, gateway).then(|| gateway_deployment(gateway))
}

/// What gateway `gateway` runs.
fn gateway_deployment(gateway: &Gateway) -> Deployment {
    let namespace = namespace_of(&gateway.metadata);
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let class = gateway.spec.gateway_class_name.as_str();
    let account = gateway_service_account(&name, class);
    let listeners: Vec<(String, u16)> = (listener_ports(gateway).into_iter())
        .map(|(protocol, port)| (format!("{}-{port}", protocol.to_ascii_lowercase()), port))
        .collect();
    let status = ("status-port".to_owned(), GATEWAY_STATUS_PORT);
    let metrics = ("metrics".to_owned(), GATEWAY_METRICS_PORT);
    let command = ["weft", "gateway", "--gateway"]
        .map(str::to_owned)
        .into_iter()
        .chain([
            format!("{namespace}/{name}"),
            "--service-account".to_owned(),
        ])
        .chain([account.clone()])
        .collect();
    Deployment {
        namespace: namespace.to_owned(),
        pod_name: gateway_pod_name(namespace, &name, class),
        service_name: account.clone(),
        service_account: account,
        labels: gateway_pod_labels(&name, class),
        annotations: BTreeMap::new(),
        container: GATEWAY_CONTAINER,
        command,
        container_ports: (listeners.iter().cloned())
            .chain([status.clone(), metrics])
            .collect(),
        service_ports: std::iter::once(status).chain(listeners).collect(),
        gateway: name,
    }
    .with_infrastructure(gateway)
}

/// Adds the Service of each Gateway in `objects` that weft runs as a gateway and that has
/// no Service of its name yet (before ClusterIPs are allocated). Which classes weft runs is
/// read from the GatewayClasses among `objects`.
pub fn add_gateway_services(objects: &mut Vec<LoadedObject>) {
    let candidates = objects.iter().any(|o| match &o.object {
        crate::Object::Gateway(g) => g.spec.gateway_class_name != WAYPOINT_CLASS,
        _ => false,
    });
    if !candidates {
        return;
    }
    // The classes alone: a snapshot of them answers which controller each class names.
    let classes = (objects.iter())
        .filter(|o| o.object.kind() == Kind::GatewayClass)
        .cloned()
        .collect();
    let classes = ConfigSnapshot::new(classes);
    deployment::add_services(objects, |gateway| {
        runs_as_gateway(&classes, gateway).then(|| gateway_deployment(gateway))
    });
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
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: shop}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: http-b, port: 80, protocol: HTTP, hostname: b.example.com}
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
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
metadata: {name: other, namespace: shop}
spec:
  gatewayClassName: someone-else
  listeners: [{name: http, port: 80, protocol: HTTP}]
";

    fn snapshot(extra: &str) -> ConfigSnapshot {
        let text = format!("{MESH}{extra}");
        let loaded = crate::parse_manifests(&text, std::path::Path::new("mesh.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        ConfigSnapshot::new(loaded.objects)
    }

    fn find_service<'a>(
        snapshot: &'a ConfigSnapshot,
        name: &str,
    ) -> Option<&'a k8s_openapi::api::core::v1::Service> {
        (snapshot.services())
            .find(|(s, _)| s.metadata.name.as_deref() == Some(name))
            .map(|(s, _)| s)
    }

    #[test]
    fn a_gateway_of_a_builtin_class_runs_one_pod_named_as_istio_names_it() {
        let snapshot = snapshot("");
        let pods = snapshot.pods();
        let names: Vec<&str> = pods.iter().map(ExpandedPod::name).collect();
        assert_eq!(
            names.len(),
            2,
            "the gateway and the waypoint only: {names:?}"
        );
        let pod = (pods.iter())
            .find(|p| gateway_of(p).is_some())
            .expect("a gateway pod");
        assert_eq!(pod.name(), gateway_pod_name("shop", "web", "istio"));
        assert!(pod.name().starts_with("web-istio-"), "{}", pod.name());
        assert_eq!(pod.service_account(), "web-istio");
        assert_eq!(gateway_of(pod).as_deref(), Some("shop/web"));
        assert_eq!(super::super::waypoint::waypoint_of(pod), None);
        let labels = pod.labels();
        assert_eq!(labels[GATEWAY_NAME_LABEL], "web");
        assert_eq!(labels[GATEWAY_CLASS_LABEL], "istio");
        assert_eq!(labels[DATAPLANE_MODE_LABEL], "none");
        assert!(pod.ip().is_some() && pod.node_name() == Some("n1"));
        let container = &pod.pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.command.as_deref().unwrap(),
            [
                "weft",
                "gateway",
                "--gateway",
                "shop/web",
                "--service-account",
                "web-istio"
            ]
        );
        let waypoint = (pods.iter()).find(|p| gateway_of(p).is_none()).unwrap();
        assert_eq!(
            super::super::waypoint::waypoint_of(waypoint).as_deref(),
            Some("shop/wp")
        );
    }

    #[test]
    fn the_gateway_service_has_the_status_port_and_each_listener_port_once() {
        let snapshot = snapshot("");
        let service = find_service(&snapshot, "web-istio").expect("Service shop/web-istio");
        let spec = service.spec.as_ref().unwrap();
        assert!(spec.cluster_ip.is_some(), "a ClusterIP is allocated");
        assert_eq!(spec.selector.as_ref().unwrap()[GATEWAY_NAME_LABEL], "web");
        let ports: Vec<(Option<&str>, i32)> = (spec.ports.iter().flatten())
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("status-port"), 15021),
                (Some("http-80"), 80),
                (Some("tls-443"), 443)
            ]
        );
        assert!(find_service(&snapshot, "other-someone-else").is_none());

        let written = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web-istio, namespace: shop}\n\
                       spec: {ports: [{port: 9}]}\n";
        let snapshot = self::snapshot(written);
        let service = find_service(&snapshot, "web-istio").unwrap();
        let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1, "the written Service is kept");
    }

    /// Feature GatewayInfrastructurePropagation: `spec.infrastructure` labels and
    /// annotations reach the gateway's pod and Service (and a waypoint's), weft's own
    /// labels keeping their values.
    #[test]
    fn infrastructure_labels_and_annotations_reach_the_pod_and_the_service() {
        let infrastructure = "  infrastructure:
    labels: {team: payments, gateway.networking.k8s.io/gateway-name: spoofed}
    annotations: {example.com/owner: alice}
";
        let text = MESH.replace(
            "  gatewayClassName: istio\n",
            &format!("  gatewayClassName: istio\n{infrastructure}"),
        );
        let text = text.replace(
            "  gatewayClassName: istio-waypoint\n",
            &format!("  gatewayClassName: istio-waypoint\n{infrastructure}"),
        );
        let loaded = crate::parse_manifests(&text, std::path::Path::new("mesh.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        let snapshot = ConfigSnapshot::new(loaded.objects);
        let pods = snapshot.pods();
        for (name, gateway) in [("web-istio", "web"), ("wp", "wp")] {
            let pod = (pods.iter()).find(|p| p.service_account() == name);
            let metadata = &pod.expect("the pod").pod.metadata;
            let service = &find_service(&snapshot, name).expect("the Service").metadata;
            for metadata in [metadata, service] {
                let labels = metadata.labels.as_ref().unwrap();
                assert_eq!(labels["team"], "payments", "{metadata:?}");
                assert_eq!(labels[GATEWAY_NAME_LABEL], gateway, "weft's label wins");
                let annotations = metadata.annotations.as_ref().unwrap();
                assert_eq!(annotations["example.com/owner"], "alice", "{metadata:?}");
            }
        }
        // Without infrastructure, no annotations at all.
        let plain = self::snapshot("");
        let pods = plain.pods();
        assert!(pods.iter().all(|p| p.pod.metadata.annotations.is_none()));
    }

    #[test]
    fn an_explicit_class_decides_by_its_controller_name() {
        let classes = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
                       metadata: {name: someone-else}\nspec: {controllerName: weft.dev/gateway}\n\
                       ---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
                       metadata: {name: istio}\nspec: {controllerName: example.com/not-weft}\n";
        let snapshot = snapshot(classes);
        let gateways: Vec<String> = snapshot.pods().iter().filter_map(gateway_of).collect();
        assert_eq!(
            gateways,
            ["shop/other"],
            "istio is overridden, someone-else is weft's"
        );
        assert!(find_service(&snapshot, "other-someone-else").is_some());
        assert!(find_service(&snapshot, "web-istio").is_none());
    }
}
