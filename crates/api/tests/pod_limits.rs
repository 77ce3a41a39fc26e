//! One file cannot make weft build millions of pods: a workload asking for more than
//! `MAX_REPLICAS` is an `over-limit` error at its `replicas` line (and is expanded to that
//! many), and workloads past `MAX_PODS` in all run fewer pods or none, each named by `weft
//! analyze`.

use std::path::Path;
use weft_api::expand::{MAX_PODS, MAX_REPLICAS, pod_shortfalls};
use weft_api::{Code, ConfigSnapshot, Severity, analyze, parse_manifests};

/// Deployment `name` in namespace `big` asking for `replicas` (YAML, any integer).
fn deployment(name: &str, replicas: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: big}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: x}}}}
  template:
    metadata: {{labels: {{app: x}}}}
    spec: {{containers: [{{name: c, image: c}}]}}
"
    )
}

/// `weft analyze` of `snapshot` has exactly one `over-limit` finding, saying `what`.
fn assert_one_over_limit(snapshot: &ConfigSnapshot, what: &str) {
    let findings = analyze(snapshot);
    let over: Vec<_> = (findings.iter())
        .filter(|f| f.code == Code::OverLimit)
        .collect();
    assert_eq!(over.len(), 1, "{over:?}");
    assert!(over[0].message.contains(what), "{}", over[0]);
}

#[test]
fn a_workload_over_the_replica_limit_is_an_error_and_runs_the_limit() {
    let text = deployment("huge", "2147483647");
    let loaded = parse_manifests(&text, Path::new("huge.yaml"));
    let finding = (loaded.findings.iter())
        .find(|f| f.code == Code::OverLimit)
        .expect("an over-limit finding");
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(finding.source.line, 5, "the replicas line: {finding}");
    assert!(finding.message.contains("2147483647"), "{finding}");
    let snapshot = ConfigSnapshot::new(loaded.objects);
    assert_eq!(snapshot.pods().len(), MAX_REPLICAS as usize);

    let negative = parse_manifests(&deployment("minus", "-1"), Path::new("minus.yaml"));
    assert!(
        (negative.findings.iter()).any(|f| f.code == Code::OutOfRange && f.source.line == 5),
        "{:?}",
        negative.findings
    );
    assert!(ConfigSnapshot::new(negative.objects).pods().is_empty());
}

#[test]
fn workloads_past_the_mesh_pod_limit_run_fewer_pods_and_are_named() {
    let full = MAX_PODS / MAX_REPLICAS as usize;
    let mut text: Vec<String> = (0..full)
        .map(|i| deployment(&format!("d{i:05}"), &MAX_REPLICAS.to_string()))
        .collect();
    text.push(deployment("z-late", "3"));
    let loaded = parse_manifests(&text.join("---\n"), Path::new("many.yaml"));
    assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
    let snapshot = ConfigSnapshot::new(loaded.objects);
    assert_eq!(snapshot.pods().len(), MAX_PODS);
    let shortfalls = pod_shortfalls(&snapshot);
    assert_eq!(shortfalls.len(), 1, "{shortfalls:?}");
    assert_eq!(shortfalls[0].owner.name, "z-late");
    assert_eq!((shortfalls[0].asked, shortfalls[0].running), (3, 0));
    assert_one_over_limit(&snapshot, "runs 0 of its 3 pods");
}

#[test]
fn a_daemon_set_runs_on_at_most_the_replica_limit_of_nodes_and_is_named() {
    let nodes = MAX_REPLICAS as usize + 1;
    let mut text: Vec<String> = (0..nodes)
        .map(|i| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: node-{i:05}}}\n"))
        .collect();
    text.push(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: infra}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: c}]}
"
        .to_owned(),
    );
    let loaded = parse_manifests(&text.join("---\n"), Path::new("agents.yaml"));
    assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
    let snapshot = ConfigSnapshot::new(loaded.objects);
    let pods = snapshot.pods();
    assert_eq!(pods.len(), MAX_REPLICAS as usize);
    assert!(
        !pods.iter().any(|p| p.node_name() == Some("node-01000")),
        "the last node in name order is the one left out"
    );
    assert_one_over_limit(&snapshot, "runs on 1000 of the 1001 nodes");
}
