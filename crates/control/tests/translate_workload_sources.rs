//! Which workloads the sources give and what they carry: a finished pod is no workload and
//! leaves its IP to the pod now using it; two live pods reporting one IP leave it to the
//! ready one; a ServiceEntry with an empty `workloadSelector` selects nothing; incremental
//! edits equal a full translation.

use weft_api::{ConfigSnapshot, LoadedObject, parse_manifests};
use weft_control::translate::{
    Output, ResourceKey, TranslateOptions, Translator, pod_uid, translate,
};
use weft_proto::workload::{Address, TunnelProtocol, Workload, address};

const AMBIENT: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
";

/// Pod `name` (`metadata` extra fields, `status` fields) reporting IP 10.1.0.7.
fn pod(name: &str, metadata: &str, status: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}{metadata}}}
spec: {{containers: [{{name: main, image: main}}]}}
status: {{podIP: 10.1.0.7, {status}}}"
    )
}

/// A Job's pod that completed; Kubernetes keeps its podIP.
fn completed() -> String {
    pod("batch-1", "", "phase: Succeeded")
}

/// A running pod that got the completed pod's IP.
fn running() -> String {
    let ready = "conditions: [{type: Ready, status: 'True'}]";
    pod("web-1", "", &format!("phase: Running, {ready}"))
}

/// A live but not ready pod (terminating) still reporting the same IP.
fn terminating() -> String {
    let deleting = ", deletionTimestamp: '2026-01-01T00:00:00Z'";
    let status = "phase: Running, conditions: [{type: Ready, status: 'False'}]";
    pod("aaa-old", deleting, status)
}

/// A ServiceEntry whose empty selector must not pick up the namespace's pods.
const EMPTY_SELECTOR: &str = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: everything, namespace: shop}
spec:
  hosts: [everything.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {}}
";

fn objects<S: AsRef<str>>(parts: &[S]) -> Vec<LoadedObject> {
    let all = parts.iter().map(AsRef::as_ref).chain([AMBIENT]);
    all.flat_map(|text| {
        let parsed = parse_manifests(text, "sources.yaml".as_ref());
        assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
        parsed.objects
    })
    .collect()
}

fn translated<S: AsRef<str>>(parts: &[S]) -> Output {
    translate(
        &ConfigSnapshot::new(objects(parts)),
        &TranslateOptions::default(),
    )
}

fn workloads(output: &Output) -> Vec<Workload> {
    let addresses: Vec<Address> = output.decode_all(weft_proto::ADDRESS_TYPE_URL).unwrap();
    addresses
        .into_iter()
        .filter_map(|a| match a.r#type {
            Some(address::Type::Workload(w)) => Some(w),
            _ => None,
        })
        .collect()
}

/// Names of the workloads that carry `ip`.
fn owners_of(output: &Output, ip: [u8; 4]) -> Vec<String> {
    let workloads = workloads(output);
    let owning = workloads
        .iter()
        .filter(|w| w.addresses.iter().any(|a| a[..] == ip));
    owning.map(|w| w.name.clone()).collect()
}

#[test]
fn a_finished_pod_is_no_workload_and_leaves_its_ip_to_the_running_pod() {
    let output = translated(&[completed(), running()]);
    assert_eq!(owners_of(&output, [10, 1, 0, 7]), ["web-1"]);
    let completed = ResourceKey::address(pod_uid("Kubernetes", "shop", "batch-1"));
    assert!(output.get(&completed).is_none());
}

#[test]
fn of_two_live_pods_with_one_ip_the_ready_one_keeps_it_with_a_warning() {
    let output = translated(&[terminating(), running()]);
    assert_eq!(owners_of(&output, [10, 1, 0, 7]), ["web-1"]);
    let names: Vec<String> = workloads(&output).into_iter().map(|w| w.name).collect();
    assert!(names.contains(&"aaa-old".to_owned()), "{names:?}");
    let warnings: Vec<String> = output.all_warnings().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Pod/shop/aaa-old") && w.contains("10.1.0.7")),
        "{warnings:#?}"
    );
}

#[test]
fn host_network_pods_share_their_nodes_ip_without_warnings() {
    let host_pod = |name: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop}}
spec: {{hostNetwork: true, containers: [{{name: main, image: main}}]}}
status: {{podIP: 10.1.0.7, phase: Running}}"
        )
    };
    let output = translated(&[host_pod("agent-a"), host_pod("agent-b")]);
    let mut owners = owners_of(&output, [10, 1, 0, 7]);
    owners.sort();
    assert_eq!(owners, ["agent-a", "agent-b"]);
    assert_eq!(output.all_warnings().count(), 0);
}

#[test]
fn a_pod_finishing_or_leaving_gives_the_ip_back_incrementally() {
    let options = TranslateOptions::default();
    let mut translator = Translator::new(options.clone());
    let steps = [
        vec![terminating(), running()],
        vec![terminating()],
        vec![completed(), running()],
        vec![running()],
    ];
    let mut old = ConfigSnapshot::new(Vec::new());
    translator.full(&old);
    for parts in steps {
        let new = ConfigSnapshot::new(objects(&parts));
        translator.update(&old, &new);
        let full = translate(&new, &options);
        assert_eq!(translator.output(), &full, "after {parts:?}");
        old = new;
    }
}

#[test]
fn a_service_entry_with_an_empty_workload_selector_selects_nothing() {
    let output = translated(&[running(), EMPTY_SELECTOR.to_owned()]);
    let web = workloads(&output).into_iter().find(|w| w.name == "web-1");
    let services = web.expect("web-1").services;
    assert!(
        !services.contains_key("shop/everything.example.com"),
        "{services:?}"
    );
}

/// A STATIC ServiceEntry without `location` (MESH_EXTERNAL) with one endpoint and a
/// WorkloadEntry, both in the ambient namespace: the entry and the WorkloadEntry with
/// `labels` (a YAML map), the entry's endpoint with `endpoint_labels`.
fn entries(labels: &str, endpoint_labels: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy, namespace: shop, labels: {labels}}}
spec:
  hosts: [legacy.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.2.0.1, labels: {endpoint_labels}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm, namespace: shop, labels: {labels}}}
spec: {{address: 10.2.0.2}}"
    )
}

fn tunnels(output: &Output) -> Vec<(String, TunnelProtocol)> {
    let mut entries: Vec<_> = workloads(output)
        .into_iter()
        .map(|w| (w.name.clone(), w.tunnel_protocol()))
        .collect();
    entries.sort();
    entries
}

#[test]
fn entries_in_an_ambient_namespace_use_hbone_only_with_the_tunnel_label() {
    const TUNNEL: &str = "{networking.istio.io/tunnel: http}";
    assert_eq!(
        tunnels(&translated(&[entries("{}", "{}")])),
        [
            ("legacy".to_owned(), TunnelProtocol::None),
            ("vm".to_owned(), TunnelProtocol::None)
        ]
    );
    assert_eq!(
        tunnels(&translated(&[entries(TUNNEL, "{}")])),
        [
            ("legacy".to_owned(), TunnelProtocol::Hbone),
            ("vm".to_owned(), TunnelProtocol::Hbone)
        ]
    );
    assert_eq!(
        tunnels(&translated(&[entries("{}", TUNNEL)])),
        [
            ("legacy".to_owned(), TunnelProtocol::None),
            ("vm".to_owned(), TunnelProtocol::None)
        ],
        "an inline endpoint takes its tunnel from its entry, as in istiod"
    );
}

#[test]
fn a_workload_entry_weight_is_sent_as_capacity() {
    let output = translated(&[r"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-heavy, namespace: shop}
spec: {address: 192.0.2.30, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-plain, namespace: shop}
spec: {address: 192.0.2.31}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-zero, namespace: shop}
spec: {address: 192.0.2.32, weight: 0}
"]);
    let mut capacities: Vec<(String, Option<u32>)> = workloads(&output)
        .into_iter()
        .map(|w| (w.name, w.capacity))
        .collect();
    capacities.sort();
    assert_eq!(
        capacities,
        [
            ("vm-heavy".to_owned(), Some(3)),
            ("vm-plain".to_owned(), None),
            // 0 is unset on the wire: not "never pick this one"
            ("vm-zero".to_owned(), None)
        ]
    );
}

/// A pod `name` (own IP) controlled by `kind`/`owner`, with extra `labels`.
fn owned_pod(name: &str, ip: &str, kind: &str, owner: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  labels: {{app: {name}{labels}}}
  ownerReferences: [{{apiVersion: v1, kind: {kind}, name: {owner}, uid: u-{owner}, controller: true}}]
spec: {{containers: [{{name: main, image: main}}]}}
status: {{podIP: {ip}}}"
    )
}

#[test]
fn workload_names_follow_the_owner_as_istiod_reports_them() {
    let output = translated(&[
        owned_pod(
            "r1",
            "10.1.0.21",
            "ReplicaSet",
            "reviews-v1-5f7b9c6d8",
            ", pod-template-hash: 5f7b9c6d8",
        ),
        owned_pod("r2", "10.1.0.22", "ReplicaSet", "standalone-rs", ""),
        owned_pod("j1", "10.1.0.23", "Job", "backup-28765430", ""),
        owned_pod("j2", "10.1.0.24", "Job", "migrate-v2", ""),
        owned_pod(
            "n1",
            "10.1.0.25",
            "ReplicaSet",
            "ignored-5f7b9c6d8",
            ", service.istio.io/workload-name: checkout",
        ),
        r"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop, labels: {service.istio.io/workload-name: legacy-billing}}
spec: {address: 192.0.2.40}"
            .to_owned(),
    ]);
    let mut names: Vec<(String, String)> = workloads(&output)
        .into_iter()
        .map(|w| (w.name, w.workload_name))
        .collect();
    names.sort();
    let expected = [
        ("j1", "backup"),
        ("j2", "migrate-v2"),
        ("n1", "checkout"),
        ("r1", "reviews-v1"),
        ("r2", "standalone-rs"),
        ("vm-1", "legacy-billing"),
    ]
    .map(|(name, workload)| (name.to_owned(), workload.to_owned()));
    assert_eq!(names, expected);
}

#[test]
fn a_service_entry_inline_endpoint_belongs_to_its_entry_only() {
    let output = translated(&[
        pod("pay", "", "phase: Running"),
        r"apiVersion: v1
kind: Service
metadata: {name: pay, namespace: shop}
spec: {selector: {app: pay}, ports: [{port: 80}]}"
            .to_owned(),
        r"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay-legacy, namespace: shop}
spec:
  hosts: [pay.legacy.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.50, labels: {app: pay}}]"
            .to_owned(),
        r"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay-selector, namespace: shop}
spec:
  hosts: [pay.internal.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: pay}}"
            .to_owned(),
    ]);
    let services_of = |address: [u8; 4]| -> Vec<String> {
        let workload = workloads(&output)
            .into_iter()
            .find(|w| w.addresses.iter().any(|a| a.as_slice() == address))
            .expect("workload");
        let mut keys: Vec<String> = workload.services.keys().cloned().collect();
        keys.sort();
        keys
    };
    // The pod is the Service's and the selecting entry's endpoint; the external endpoint
    // labelled app=pay is only its own entry's (never the cluster Service's).
    assert_eq!(
        services_of([10, 1, 0, 7]),
        [
            "shop/pay.internal.example",
            "shop/pay.shop.svc.cluster.local"
        ]
    );
    assert_eq!(services_of([192, 0, 2, 50]), ["shop/pay.legacy.example"]);
}

/// A `resolution: DNS` ServiceEntry with `hosts` and `extra` spec lines.
fn dns_entry(name: &str, hosts: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop, labels: {{team: pay}}}}
spec:
  hosts: {hosts}
  addresses: [240.240.0.1]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: DNS
{extra}"
    )
}

#[test]
fn a_dns_service_entry_without_endpoints_is_reached_by_its_host_names() {
    let output = translated(&[dns_entry("api", "[api.example.com, '*.example.org']", "")]);
    let implicit: Vec<Workload> = workloads(&output)
        .into_iter()
        .filter(|w| w.name == "api")
        .collect();
    let [workload] = implicit.as_slice() else {
        panic!("one workload per resolvable host (the wildcard has none): {implicit:#?}");
    };
    assert_eq!(
        workload.uid,
        "Kubernetes/networking.istio.io/ServiceEntry/shop/api/api.example.com"
    );
    assert_eq!(workload.hostname, "api.example.com");
    assert!(workload.addresses.is_empty(), "the proxy resolves the name");
    assert_eq!(
        workload.tunnel_protocol(),
        TunnelProtocol::None,
        "outside the mesh"
    );
    let services: Vec<&String> = workload.services.keys().collect();
    assert_eq!(services, ["shop/api.example.com"], "its own host only");
    let ports = &workload.services["shop/api.example.com"].ports;
    assert_eq!((ports[0].service_port, ports[0].target_port), (443, 443));
    assert_eq!(
        workload.canonical_name, "api",
        "from the entry's labels and name"
    );

    // Endpoints, a workload selector or another resolution: no implicit endpoint.
    for extra in [
        "  endpoints: [{address: 192.0.2.7}]",
        "  workloadSelector: {labels: {app: api}}",
    ] {
        let output = translated(&[dns_entry("api", "[api.example.com]", extra)]);
        let hosts: Vec<String> = workloads(&output).into_iter().map(|w| w.hostname).collect();
        assert!(hosts.iter().all(String::is_empty), "{extra}: {hosts:?}");
    }
    let stat = dns_entry("api", "[api.example.com]", "").replace("DNS", "STATIC");
    assert!(workloads(&translated(&[stat])).is_empty());

    // Incremental edits equal a full translation.
    let options = TranslateOptions::default();
    let mut translator = Translator::new(options.clone());
    let mut previous = ConfigSnapshot::new(Vec::new());
    let two_hosts = dns_entry("api", "[api.example.com, api2.example.com]", "");
    let with_endpoint = dns_entry(
        "api",
        "[api.example.com]",
        "  endpoints: [{address: 192.0.2.7}]",
    );
    for step in [vec![two_hosts], vec![with_endpoint], vec![]] {
        let snapshot = ConfigSnapshot::new(objects(&step));
        translator.update(&previous, &snapshot);
        assert_eq!(*translator.output(), translate(&snapshot, &options));
        previous = snapshot;
    }
}
