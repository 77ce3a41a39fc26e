//! What a ServiceEntry's endpoints take from the entry and what from themselves, as istiod
//! builds them: AuthorizationPolicies and PeerAuthentications select an inline endpoint
//! by its entry's labels, which also name its canonical service; the endpoint's own labels
//! choose only its waypoint, and that waypoint (no other) lists it among its workloads. An
//! implicit endpoint (a DNS entry's host) and an address of a selector-less Service's
//! EndpointSlice get no waypoint, even in a namespace that uses one.

use weft_api::{ConfigSnapshot, LoadedObject, parse_manifests};
use weft_control::translate::{Output, ResourceKey, TranslateOptions, translate};
use weft_proto::l7::Waypoint;
use weft_proto::workload::{Address, Workload, address};

/// Namespace `shop` uses waypoint `shop/waypoint` for everything in it; a second waypoint
/// `shop/special` for what asks for it by label; both serve workloads as well as services.
const MESH: &str = r"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: special, namespace: shop, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
";

/// An entry labelled `team: billing, app: ledger` whose endpoint is labelled
/// `team: other, app: endpoint-app` and asks for waypoint `special`; a DNS entry without
/// endpoints; a selector-less Service with one EndpointSlice address; policies selecting
/// by the entry's labels and by the endpoint's (STRICT mTLS by the entry's, DISABLE by the
/// endpoint's).
const OBJECTS: &str = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: shop, labels: {team: billing, app: ledger}}
spec:
  hosts: [ledger.example.com]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 10.2.0.1
    labels: {team: other, app: endpoint-app, istio.io/use-waypoint: special}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner, namespace: shop}
spec:
  hosts: [api.partner.example]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  clusterIP: 10.96.8.8
  ports: [{name: tcp, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-1, namespace: shop, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
ports: [{name: tcp, port: 5432, protocol: TCP}]
endpoints: [{addresses: [192.0.2.44]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-entry, namespace: shop}
spec:
  selector: {matchLabels: {team: billing}}
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-endpoint, namespace: shop}
spec:
  selector: {matchLabels: {team: other}}
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-by-entry, namespace: shop}
spec:
  selector: {matchLabels: {team: billing}}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plain-by-endpoint, namespace: shop}
spec:
  selector: {matchLabels: {team: other}}
  mtls: {mode: DISABLE}
";

fn objects(text: &str) -> Vec<LoadedObject> {
    let parsed = parse_manifests(text, "entry-endpoints.yaml".as_ref());
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    parsed.objects
}

fn translated() -> Output {
    let mut all = objects(MESH);
    all.extend(objects(OBJECTS));
    translate(&ConfigSnapshot::new(all), &TranslateOptions::default())
}

fn workload(output: &Output, uid_end: &str) -> Workload {
    let addresses: Vec<Address> = output.decode_all(weft_proto::ADDRESS_TYPE_URL).unwrap();
    addresses
        .into_iter()
        .find_map(|a| match a.r#type {
            Some(address::Type::Workload(w)) if w.uid.ends_with(uid_end) => Some(w),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no workload with uid ending {uid_end}"))
}

fn waypoint_host(workload: &Workload) -> Option<String> {
    use weft_proto::workload::gateway_address::Destination;
    match workload.waypoint.as_ref()?.destination.as_ref()? {
        Destination::Hostname(name) => Some(name.hostname.clone()),
        Destination::Address(_) => None,
    }
}

#[test]
fn an_inline_endpoint_is_selected_and_named_by_its_entry_and_routed_by_its_own_labels() {
    let output = translated();
    let endpoint = workload(&output, "/ServiceEntry/shop/ledger/10.2.0.1");
    let by_entry: Vec<&str> = (endpoint.authorization_policies.iter())
        .map(String::as_str)
        .filter(|name| name.starts_with("shop/"))
        .collect();
    assert_eq!(
        by_entry,
        ["shop/by-entry"],
        "policies select the entry's labels, not the endpoint's"
    );
    assert!(
        (endpoint.authorization_policies.iter()).any(|name| name.contains("weft-mtls-strict")),
        "the entry's labels select the STRICT PeerAuthentication: {:?}",
        endpoint.authorization_policies
    );
    assert_eq!(endpoint.canonical_name, "ledger", "the entry's app label");
    assert_eq!(
        waypoint_host(&endpoint).as_deref(),
        Some("special.shop.svc.cluster.local"),
        "the endpoint's own use-waypoint label"
    );
}

#[test]
fn implicit_endpoints_and_slice_addresses_have_no_waypoint() {
    let output = translated();
    let implicit = workload(&output, "/ServiceEntry/shop/partner/api.partner.example");
    assert_eq!(implicit.hostname, "api.partner.example");
    assert_eq!(waypoint_host(&implicit), None, "an implicit endpoint");
    let slice = workload(&output, "/EndpointSlice/shop/legacy-1/192.0.2.44");
    assert_eq!(waypoint_host(&slice), None, "an EndpointSlice address");
}

fn waypoint_workloads(output: &Output, name: &str) -> Vec<String> {
    let waypoint: Waypoint = (output.get(&ResourceKey::waypoint(name)))
        .unwrap_or_else(|| panic!("waypoint {name}"))
        .decode()
        .unwrap();
    waypoint.workloads
}

#[test]
fn each_waypoint_lists_the_endpoints_whose_workloads_name_it() {
    let output = translated();
    assert_eq!(
        waypoint_workloads(&output, "shop/special"),
        ["Kubernetes/networking.istio.io/ServiceEntry/shop/ledger/10.2.0.1"],
        "the endpoint asking for it by its own label"
    );
    assert_eq!(
        waypoint_workloads(&output, "shop/waypoint"),
        Vec::<String>::new(),
        "not the namespace's waypoint: no endpoint, implicit endpoint or slice address uses it"
    );
}
