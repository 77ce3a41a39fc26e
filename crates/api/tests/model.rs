//! Loading manifests into the typed model, and pod expansion.

use std::path::Path;
use weft_api::{Code, ConfigSnapshot, Kind, Object, parse_manifests};

const MESH: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  podCIDR: 10.244.1.0/24
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
spec:
  podCIDR: 10.244.2.0/24
---
# a comment-only line before the object
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: frontend
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: weft
        command: ["weft", "x", "echo"]
        args: ["--port", "8080"]
        ports:
        - containerPort: 8080
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: infra
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: weft
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector:
    matchLabels: {app: catalog}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/frontend/sa/web"]
    to:
    - operation:
        ports: ["8080"]
"#;

#[test]
fn multi_document_file_loads_every_object_with_its_line() {
    let result = parse_manifests(MESH, Path::new("mesh.yaml"));
    assert!(result.findings.is_empty(), "{:?}", result.findings);
    let kinds: Vec<_> = result.objects.iter().map(|o| o.object.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::Node,
            Kind::Node,
            Kind::Deployment,
            Kind::DaemonSet,
            Kind::AuthorizationPolicy
        ]
    );
    let lines: Vec<_> = result.objects.iter().map(|o| o.source.line).collect();
    assert_eq!(lines, [2, 9, 17, 39, 55]);
    let Object::AuthorizationPolicy(policy) = &result.objects[4].object else {
        panic!("not a policy")
    };
    assert_eq!(policy.spec.action, Some(weft_api::istio::Action::Allow));
    assert_eq!(result.objects[4].object.namespace(), Some("shop"));
    assert_eq!(result.objects[0].object.namespace(), None);
}

#[test]
fn deployments_and_daemonsets_expand_to_named_pods_spread_over_nodes_with_ips() {
    let snapshot = ConfigSnapshot::new(parse_manifests(MESH, Path::new("mesh.yaml")).objects);
    let pods = snapshot.pods();
    let names: Vec<_> = pods
        .iter()
        .map(|p| format!("{}/{}", p.namespace(), p.name()))
        .collect();
    assert_eq!(
        names,
        [
            "frontend/web-0",
            "frontend/web-1",
            "frontend/web-2",
            "infra/agent-node-a",
            "infra/agent-node-b"
        ]
    );
    let web_nodes: std::collections::HashSet<_> =
        pods[..3].iter().filter_map(|p| p.node_name()).collect();
    assert_eq!(web_nodes.len(), 2, "3 replicas on 2 nodes use both");
    assert_eq!(pods[3].node_name(), Some("node-a"));
    for pod in pods.iter() {
        let ip = pod
            .ip()
            .expect("every pod gets an IP from its node's podCIDR");
        let cidr = if pod.node_name() == Some("node-a") {
            "10.244.1.0/24"
        } else {
            "10.244.2.0/24"
        };
        assert!(
            cidr.parse::<ipnet::IpNet>().unwrap().contains(&ip),
            "{ip} not in {cidr}"
        );
        assert_eq!(
            pod.labels().get("app").map(String::as_str),
            Some(pod.name().split('-').next().unwrap())
        );
    }
    let ips: std::collections::HashSet<_> =
        pods.iter().filter_map(weft_api::ExpandedPod::ip).collect();
    assert_eq!(ips.len(), pods.len(), "IPs are unique");
    assert_eq!(
        pods[0].owner.as_ref().map(|o| o.kind),
        Some(Kind::Deployment)
    );
    // Expansion is deterministic: the control plane and `weft up` compute the same pods.
    assert_eq!(snapshot.pods(), pods);
}

#[test]
fn unknown_field_is_an_error_with_a_suggestion_and_line() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selectr:\n    app: x\n  ports:\n  - port: 80\n";
    let result = parse_manifests(text, Path::new("svc.yaml"));
    assert_eq!(result.objects.len(), 1, "object is still loaded");
    let [finding] = result.findings.as_slice() else {
        panic!("{:?}", result.findings)
    };
    assert_eq!(finding.code, Code::UnknownField);
    assert_eq!(finding.source.line, 6);
    assert!(
        finding.message.contains("did you mean \"selector\""),
        "{}",
        finding.message
    );
}

#[test]
fn unknown_field_deep_in_an_istio_kind_is_found() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  rules:\n  - to:\n    - operation:\n        methds: [GET]\n";
    let result = parse_manifests(text, Path::new("p.yaml"));
    let [finding] = result.findings.as_slice() else {
        panic!("{:?}", result.findings)
    };
    assert_eq!(finding.source.line, 9);
    assert!(
        finding.message.contains("did you mean \"methods\""),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("spec.rules[0].to[0].operation"),
        "{}",
        finding.message
    );
}

#[test]
fn unknown_kinds_are_skipped_with_info_and_lists_are_accepted() {
    let text = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: a\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: b\n    namespace: x\n";
    let result = parse_manifests(text, Path::new("l.yaml"));
    assert_eq!(result.objects.len(), 2);
    assert_eq!(
        result.objects[1].object.object_ref().to_string(),
        "ServiceAccount/x/b"
    );
    let [finding] = result.findings.as_slice() else {
        panic!("{:?}", result.findings)
    };
    assert_eq!(
        (finding.code, finding.severity),
        (Code::UnknownKind, weft_api::Severity::Info)
    );
}

#[test]
fn gateway_api_versions_parse_with_the_same_model() {
    let text = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n  parentRefs:\n  - name: gw\n  rules:\n  - backendRefs:\n    - name: svc\n      port: 80\n      weight: 90\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: t\nspec:\n  rules:\n  - backendRefs:\n    - name: db\n      port: 5432\n";
    let result = parse_manifests(text, Path::new("r.yaml"));
    assert!(result.findings.is_empty(), "{:?}", result.findings);
    assert_eq!(result.objects.len(), 2);
    assert_eq!(result.objects[1].source.line, 14);
}

#[test]
fn a_snapshot_reuses_the_pod_expansion_only_when_pods_workloads_and_nodes_are_unchanged() {
    let snapshot =
        |text: &str| ConfigSnapshot::new(parse_manifests(text, Path::new("mesh.yaml")).objects);
    let before = snapshot(MESH);
    let pod_count = before.pods().len();

    let policy_edit = snapshot(&MESH.replace("ports: [\"8080\"]", "ports: [\"9090\"]"));
    let policy_edit = policy_edit.with_pods_of(&before);
    assert!(std::sync::Arc::ptr_eq(&policy_edit.pods(), &before.pods()));

    let scaled = snapshot(&MESH.replace("replicas: 3", "replicas: 5")).with_pods_of(&before);
    assert_eq!(scaled.pods().len(), pod_count + 2);

    let node_edit = snapshot(&MESH.replace("10.244.2.0/24", "10.244.9.0/24")).with_pods_of(&before);
    assert!(!std::sync::Arc::ptr_eq(&node_edit.pods(), &before.pods()));
    assert_eq!(
        node_edit.pods(),
        snapshot(&MESH.replace("10.244.2.0/24", "10.244.9.0/24")).pods()
    );
}
