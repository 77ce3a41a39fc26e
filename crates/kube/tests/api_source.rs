//! The Kubernetes API as the control plane's object source, against the in-process test
//! API server over real HTTP: initial list, watch resumption, bookmarks, 410 Gone and
//! relists, and objects that do not validate.

use serde_json::{Value, json};
use std::time::Duration;
use weft_api::{ConfigEvent, Kind, ObjectSource};
use weft_kube::{ApiSource, WatchOptions};
use weft_kubetest::{ServerOptions, TestApiServer};

const DEADLINE: Duration = Duration::from_secs(15);

fn pod(name: &str, ip: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"nodeName": node, "serviceAccountName": "web", "containers": [{"name": "main", "image": "web"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    })
}

fn config_map(name: &str, generation: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "other"},
        "data": {"generation": generation.to_string()},
    })
}

/// Polls `condition` until it holds; panics naming `what` at the deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `namespace/name: ip@node` of every pod the source's snapshot has.
fn pods(source: &ApiSource) -> Vec<String> {
    let snapshot = source.objects().snapshot();
    snapshot
        .pods()
        .iter()
        .map(|p| {
            let ip = p.ip().map(|ip| ip.to_string()).unwrap_or_default();
            format!(
                "{}/{}: {ip}@{}",
                p.namespace(),
                p.name(),
                p.node_name().unwrap_or("")
            )
        })
        .collect()
}

/// How many lists (not watches) of pods the server answered.
fn pod_lists(server: &TestApiServer) -> usize {
    let reads = server.store().reads();
    reads
        .iter()
        .filter(|r| r.plural == "pods" && !r.watch)
        .count()
}

/// Waits until every watched kind has a watch open (the start only waits for lists).
async fn watching(server: &TestApiServer) {
    eventually("every kind is watched", || {
        let reads = server.store().reads();
        reads.iter().filter(|r| r.watch).count() >= weft_kube::source::kinds::WATCHED.len()
    })
    .await;
}

fn pod_watches(server: &TestApiServer) -> usize {
    let reads = server.store().reads();
    reads
        .iter()
        .filter(|r| r.plural == "pods" && r.watch)
        .count()
}

#[tokio::test]
async fn the_first_snapshot_has_the_listed_pods_as_placed_and_addressed_and_no_workload_expanded() {
    let server = TestApiServer::start().await;
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    server.put(pod("web-7f9c", "10.1.0.5", "node-a"));
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api"}]}}},
    }));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    assert_eq!(pods(&source), ["shop/web-7f9c: 10.1.0.5@node-a"]);
    let snapshot = source.objects().snapshot();
    assert!(snapshot.contains(Kind::Namespace, None, "shop"));
    assert_eq!(snapshot.of_kind(Kind::Deployment).count(), 0);
}

#[tokio::test]
async fn a_watch_the_server_ends_resumes_from_its_version_without_listing_again() {
    let options = ServerOptions {
        max_watch_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let server = TestApiServer::start_with(options).await;
    server.put(pod("web-0", "10.1.0.5", "node-a"));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    eventually(
        "the server ended a pod watch and the client watched again",
        || pod_watches(&server) >= 2,
    )
    .await;
    let resumed = server
        .store()
        .reads()
        .into_iter()
        .filter(|r| r.plural == "pods" && r.watch)
        .nth(1);
    let version = resumed.and_then(|r| r.resource_version).unwrap_or_default();
    assert!(
        version.parse::<u64>().is_ok_and(|v| v > 1),
        "resumed from {version:?}"
    );
    server.put(pod("web-1", "10.1.0.6", "node-b"));
    eventually("the new pod arrives", || pods(&source).len() == 2).await;
    assert_eq!(
        pod_lists(&server),
        1,
        "listed again: {:?}",
        server.store().reads()
    );
}

/// A server that forgets all but the latest 4 changes and ends watches after 1 s.
fn forgetful(bookmark_interval: Duration) -> ServerOptions {
    ServerOptions {
        history_window: 4,
        max_watch_timeout: Duration::from_secs(1),
        bookmark_interval,
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn after_410_gone_the_kind_is_listed_again_with_nothing_lost_or_doubled() {
    let server = TestApiServer::start_with(forgetful(Duration::from_secs(3600))).await;
    server.put(pod("web-0", "10.1.0.5", "node-a"));
    server.put(pod("web-1", "10.1.0.6", "node-a"));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    watching(&server).await;
    let mut events = source.objects().subscribe();
    server.delete("v1", "Pod", Some("shop"), "web-0").unwrap();
    server.put(pod("web-2", "10.1.0.7", "node-b"));
    // changes to another kind push the pod watch's version out of the history
    for generation in 0..8 {
        server.put(config_map("settings", generation));
    }
    eventually("the pods were listed again after 410 Gone", || {
        pod_lists(&server) >= 2
    })
    .await;
    let expected = ["shop/web-1: 10.1.0.6@node-a", "shop/web-2: 10.1.0.7@node-b"];
    eventually("the pods equal the server's", || pods(&source) == expected).await;
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        let label = match &event {
            ConfigEvent::Added(_) => "added",
            ConfigEvent::Updated { .. } => "updated",
            ConfigEvent::Deleted(_) => "deleted",
        };
        seen.push(format!("{label} {}", event.object_ref().name));
    }
    assert_eq!(seen, ["deleted web-0", "added web-2"], "each change once");
}

#[tokio::test]
async fn bookmarks_keep_a_quiet_watch_current_so_it_resumes_without_410() {
    let server = TestApiServer::start_with(forgetful(Duration::from_millis(100))).await;
    server.put(pod("web-0", "10.1.0.5", "node-a"));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    watching(&server).await;
    for generation in 0..8 {
        server.put(config_map("settings", generation));
    }
    let version = server.store().resource_version().to_string();
    eventually("a pod watch resumed from a bookmarked version", || {
        server.store().reads().iter().any(|r| {
            r.plural == "pods" && r.watch && r.resource_version.as_deref() == Some(version.as_str())
        })
    })
    .await;
    assert_eq!(
        pod_lists(&server),
        1,
        "listed again: {:?}",
        server.store().reads()
    );
    assert_eq!(pods(&source), ["shop/web-0: 10.1.0.5@node-a"]);
}

#[tokio::test]
async fn an_object_that_does_not_validate_is_reported_by_name_and_field_while_the_rest_serves() {
    let server = TestApiServer::start().await;
    server.put(pod("web-0", "10.1.0.5", "node-a"));
    let policy = |name: &str, action_field: &str| {
        json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {action_field: "DENY", "rules": [{}]},
        })
    };
    server.put(policy("good", "action"));
    server.put(policy("typo", "acton"));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    let objects = source.objects();
    let errors: Vec<String> = objects.errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("AuthorizationPolicy/shop/typo") && errors[0].contains("\"acton\""),
        "{}",
        errors[0]
    );
    let snapshot = objects.snapshot();
    assert!(snapshot.contains(Kind::AuthorizationPolicy, Some("shop"), "good"));
    assert!(!snapshot.contains(Kind::AuthorizationPolicy, Some("shop"), "typo"));
    assert_eq!(snapshot.pods().len(), 1);

    // the good version replaces the error; a bad edit of a good object keeps the last good one
    server.put(policy("typo", "action"));
    eventually("the fixed policy serves", || {
        objects
            .snapshot()
            .contains(Kind::AuthorizationPolicy, Some("shop"), "typo")
    })
    .await;
    assert!(objects.errors().is_empty());
    server.put(policy("good", "acton"));
    eventually("the bad edit is reported", || objects.errors().len() == 1).await;
    assert!(
        objects
            .snapshot()
            .contains(Kind::AuthorizationPolicy, Some("shop"), "good")
    );
}

#[tokio::test]
async fn a_kubeconfig_file_names_the_api_server_to_follow() {
    let server = TestApiServer::start().await;
    server.put(pod("web-0", "10.1.0.5", "node-a"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters: [{{name: test, cluster: {{server: \"{}\"}}}}]\n\
         users: [{{name: test, user: {{token: test-token}}}}]\n\
         contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n",
        server.url()
    );
    std::fs::write(&kubeconfig, text).unwrap();
    let client = weft_kube::connect(Some(&kubeconfig)).await.unwrap();
    let source = ApiSource::start(client, &WatchOptions::default()).await;
    assert_eq!(pods(&source), ["shop/web-0: 10.1.0.5@node-a"]);

    let missing = weft_kube::connect(Some(&dir.path().join("absent"))).await;
    let error = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("absent"), "{error}");
}

#[tokio::test]
async fn gateway_api_kinds_are_watched_at_the_version_the_cluster_serves() {
    // An older experimental channel: TLSRoute only at v1alpha2 (no v1, no v1alpha3). The
    // test server does not convert between versions, so the others are simply not served.
    let options = ServerOptions {
        unserved_versions: vec![
            "gateway.networking.k8s.io/v1".to_owned(),
            "gateway.networking.k8s.io/v1alpha3".to_owned(),
        ],
        ..ServerOptions::default()
    };
    let server = TestApiServer::start_with(options).await;
    server.put(json!({
        "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}],
        },
    }));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    eventually("the TLSRoute served only at v1alpha2 is seen", || {
        source
            .objects()
            .snapshot()
            .contains(Kind::TlsRoute, Some("shop"), "db")
    })
    .await;
    let watched_at: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.resource == "tlsroutes" && matches!(r.verb, "list" | "watch"))
        .map(|r| r.version)
        .collect();
    assert!(
        !watched_at.is_empty() && watched_at.iter().all(|v| v == "v1alpha2"),
        "{watched_at:?}"
    );
}
