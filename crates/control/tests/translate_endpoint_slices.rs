//! EndpointSlices give a selector-less Service its endpoints: each ready address that is not
//! a known pod becomes a workload outside the mesh (plain TCP) mapped into the Service with
//! the slice's port of the Service port's name, and a known pod the slice lists becomes a
//! member of the Service on those ports; a Service with a selector ignores its slices;
//! incremental edits (slice added, named pod appearing, selector added) equal a full
//! translation, with and without a waypoint serving the namespace.

use weft_api::{ConfigSnapshot, LoadedObject, parse_manifests};
use weft_control::translate::{
    Output, ResourceKey, TranslateOptions, Translator, slice_endpoint_uid, translate,
};
use weft_proto::workload::{Address, TunnelProtocol, Workload, address};

const DB_KEY: &str = "shop/db.shop.svc.cluster.local";
const WEB: &str = "shop/web.shop.svc.cluster.local";

/// Namespace `shop`, in the mesh.
const AMBIENT: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
";

/// Service `db`, without a selector.
const DB: &str = r"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: sql, port: 5432, targetPort: 9999}, {name: admin, port: 8081}]
";

/// Service `db` given a selector (replaces [`DB`]): its slices no longer count.
const DB_SELECTED: &str = r"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: db}
  ports: [{name: sql, port: 5432, targetPort: 9999}, {name: admin, port: 8081}]
";

const BASE: &str = r"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: web}]}
status: {podIP: 10.1.0.5}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-xyz, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [192.0.2.50]
";

const DB_SLICE: &str = r"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-abc, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: sql, port: 6432, protocol: TCP}]
endpoints:
- addresses: [192.0.2.10]
- addresses: [192.0.2.11]
  conditions: {ready: false}
- addresses: [10.1.0.5]
  targetRef: {kind: Pod, name: web-0, namespace: shop}
- addresses: [10.1.0.6]
  targetRef: {kind: Pod, name: db-1, namespace: shop}
";

const DB_POD: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop, labels: {app: db}}
spec: {containers: [{name: db, image: db}]}
status: {podIP: 10.1.0.6}
";

fn parse(text: &str) -> Vec<LoadedObject> {
    let parsed = parse_manifests(text, "slices.yaml".as_ref());
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    parsed.objects
}

fn objects(parts: &[&str]) -> Vec<LoadedObject> {
    let namespace = (!parts.contains(&WAYPOINT)).then_some(AMBIENT);
    let db = (!parts.contains(&DB_SELECTED)).then_some(DB);
    let all = parts.iter().chain(&namespace).chain(&db);
    all.flat_map(|text| parse(text)).collect()
}

fn slice_uid(slice: &str, ip: &str) -> String {
    slice_endpoint_uid("Kubernetes", "shop", slice, ip.parse().unwrap())
}

fn workload(output: &Output, uid: &str) -> Option<Workload> {
    let resource = output.get(&ResourceKey::address(uid))?;
    match resource.decode::<Address>().unwrap().r#type {
        Some(address::Type::Workload(workload)) => Some(workload),
        other => panic!("{uid} is not a workload: {other:?}"),
    }
}

/// (service port, target port) of `service` on the workload.
fn ports(workload: &Workload, service: &str) -> Vec<(u32, u32)> {
    let list = workload.services.get(service);
    let list = list.unwrap_or_else(|| panic!("{service} in {:?}", workload.services));
    list.ports
        .iter()
        .map(|p| (p.service_port, p.target_port))
        .collect()
}

fn translated(parts: &[&str]) -> Output {
    translate(
        &ConfigSnapshot::new(objects(parts)),
        &TranslateOptions::default(),
    )
}

#[test]
fn a_selectorless_service_gets_the_ready_addresses_of_its_slices() {
    let output = translated(&[BASE, DB_SLICE]);
    let endpoint = workload(&output, &slice_uid("db-abc", "192.0.2.10")).expect("slice address");
    assert_eq!(endpoint.addresses, [vec![192, 0, 2, 10]]);
    assert_eq!(endpoint.tunnel_protocol(), TunnelProtocol::None, "not mesh");
    assert_eq!(endpoint.service_account, "", "no identity");
    assert_eq!(endpoint.namespace, "shop");
    assert_eq!(
        ports(&endpoint, DB_KEY),
        [(5432, 6432)],
        "slice port by name"
    );
    assert_eq!(endpoint.services.len(), 1, "{:?}", endpoint.services);
    let warnings: Vec<String> = (output.warnings.values().flatten())
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("EndpointSlice/shop/db-abc") && w.contains("\"admin\"")),
        "the Service port the slice lacks is reported: {warnings:?}"
    );

    let unknown_pod = workload(&output, &slice_uid("db-abc", "10.1.0.6"));
    assert!(
        unknown_pod.is_some(),
        "a pod weft does not know is a slice endpoint"
    );
    assert!(
        workload(&output, &slice_uid("db-abc", "192.0.2.11")).is_none(),
        "ready: false is left out"
    );
    assert!(
        workload(&output, &slice_uid("db-abc", "10.1.0.5")).is_none(),
        "a known pod is not duplicated"
    );
    let db_service = output.get(&ResourceKey::address(DB_KEY));
    assert!(db_service.is_some(), "the Service itself is published");
}

#[test]
fn a_service_with_a_selector_ignores_its_slices() {
    let output = translated(&[BASE]);
    assert!(workload(&output, &slice_uid("web-xyz", "192.0.2.50")).is_none());
    let pod = workload(&output, "Kubernetes//Pod/shop/web-0").expect("pod");
    assert_eq!(ports(&pod, WEB), [(80, 8080)], "the Service's targetPort");
    assert_eq!(pod.services.len(), 1, "{:?}", pod.services);
}

/// Services (`<ns>/<hostname>`) the pod workload `name` of namespace shop is a member of.
fn services_of(output: &Output, name: &str) -> Vec<String> {
    let uid = format!("Kubernetes//Pod/shop/{name}");
    let pod = workload(output, &uid).unwrap_or_else(|| panic!("pod {name}"));
    let mut services: Vec<String> = pod.services.into_keys().collect();
    services.sort();
    services
}

#[test]
fn a_known_pod_listed_in_a_selectorless_slice_is_a_member_of_that_service() {
    let output = translated(&[BASE, DB_SLICE, DB_POD]);
    let web = workload(&output, "Kubernetes//Pod/shop/web-0").expect("pod web-0");
    assert_eq!(ports(&web, WEB), [(80, 8080)], "its own Service as before");
    assert_eq!(
        ports(&web, DB_KEY),
        [(5432, 6432)],
        "the slice's port of the Service port's name, not the Service's targetPort"
    );
    assert_eq!(services_of(&output, "db-1"), [DB_KEY]);
    let db = workload(&output, "Kubernetes//Pod/shop/db-1").expect("pod db-1");
    assert_eq!(ports(&db, DB_KEY), [(5432, 6432)]);

    // Once the Service has a selector, its slices no longer count: db-1 is a member by its
    // labels (the Service's target ports), web-0 is not one any more.
    let selected = translated(&[BASE, DB_SLICE, DB_POD, DB_SELECTED]);
    assert_eq!(services_of(&selected, "web-0"), [WEB]);
    let db = workload(&selected, "Kubernetes//Pod/shop/db-1").expect("pod db-1");
    assert_eq!(ports(&db, DB_KEY), [(5432, 9999), (8081, 8081)]);
}

/// A second slice of Service `db` listing web-0 with the `admin` port.
const DB_ADMIN_SLICE: &str = r"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-admin, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: admin, port: 7081, protocol: TCP}]
endpoints:
- addresses: [10.1.0.5]
  targetRef: {kind: Pod, name: web-0, namespace: shop}
";

/// A selector-less Service of namespace `other` whose slice names pod shop/web-0.
const OTHER_NAMESPACE: &str = r"
apiVersion: v1
kind: Service
metadata: {name: grab, namespace: other}
spec:
  clusterIP: 10.96.0.30
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: grab-1, namespace: other, labels: {kubernetes.io/service-name: grab}}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.1.0.5]
  targetRef: {kind: Pod, name: web-0, namespace: shop}
";

#[test]
fn a_pods_membership_takes_ports_from_every_slice_and_only_from_its_own_namespace() {
    let output = translated(&[BASE, DB_SLICE, DB_ADMIN_SLICE, OTHER_NAMESPACE]);
    let web = workload(&output, "Kubernetes//Pod/shop/web-0").expect("pod web-0");
    assert_eq!(
        ports(&web, DB_KEY),
        [(5432, 6432), (8081, 7081)],
        "each Service port from the slice that has it"
    );
    assert_eq!(
        services_of(&output, "web-0"),
        [DB_KEY, WEB],
        "a slice of namespace other cannot make a shop pod a member of its Service"
    );
}

/// Namespace `shop` in the mesh, served by a waypoint for all traffic (replaces [`AMBIENT`]).
const WAYPOINT: &str = r"
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
";

/// Translates each step incrementally from the previous one and compares it with a full
/// translation; the slice address of pod db-1 exists exactly while the pod is unknown and
/// the Service has no selector.
fn edits_equal_full_translation(extra: &[&'static str]) {
    let options = TranslateOptions::default();
    let steps = [
        vec![BASE],
        vec![BASE, DB_SLICE],
        vec![BASE, DB_SLICE, DB_POD],
        vec![BASE, DB_SLICE],
        vec![BASE, DB_SLICE, DB_SELECTED],
        vec![BASE, DB_SLICE],
        vec![BASE],
    ];
    let mut translator = Translator::new(options.clone());
    let mut previous = ConfigSnapshot::new(Vec::new());
    for mut parts in steps {
        parts.extend_from_slice(extra);
        let snapshot = ConfigSnapshot::new(objects(&parts));
        translator.update(&previous, &snapshot);
        let full = translate(&snapshot, &options);
        assert_eq!(*translator.output(), full, "after {} parts", parts.len());
        let pod_endpoint = workload(&full, &slice_uid("db-abc", "10.1.0.6"));
        let expected =
            parts.contains(&DB_SLICE) && !parts.contains(&DB_POD) && !parts.contains(&DB_SELECTED);
        assert_eq!(
            pod_endpoint.is_some(),
            expected,
            "once db-1 is known it replaces its slice address"
        );
        let member = parts.contains(&DB_SLICE) && !parts.contains(&DB_SELECTED);
        assert_eq!(
            services_of(&full, "web-0").contains(&DB_KEY.to_owned()),
            member,
            "web-0 is in Service db while db's slice lists it and db has no selector"
        );
        previous = snapshot;
    }
}

#[test]
fn slice_and_pod_edits_equal_a_full_translation() {
    edits_equal_full_translation(&[]);
}

#[test]
fn slice_edits_under_a_waypoint_equal_a_full_translation() {
    let output = translated(&[BASE, WAYPOINT, DB_SLICE]);
    let endpoint = workload(&output, &slice_uid("db-abc", "192.0.2.10")).expect("slice address");
    assert_eq!(endpoint.tunnel_protocol(), TunnelProtocol::None);
    let pod = workload(&output, "Kubernetes//Pod/shop/web-0").expect("pod");
    assert!(pod.waypoint.is_some(), "the namespace uses the waypoint");
    edits_equal_full_translation(&[WAYPOINT]);
}
