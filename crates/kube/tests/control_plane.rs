//! `weft control` following the Kubernetes API: the real control-plane process, in-process
//! on loopback ports, fed by the API watchers from the test API server; what it would
//! push is read back from its admin page `/debug/configz`.

use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::oneshot;
use weft_control::process::{BoundAddrs, Objects, run};
use weft_kube::{ApiSource, WatchOptions};
use weft_kubetest::TestApiServer;

mod support;

const DEADLINE: Duration = Duration::from_secs(20);

fn pod(name: &str, ip: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "serviceAccountName": service_account,
                 "containers": [{"name": "main", "image": "web"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

/// Starts the control plane on `objects`; stops when the sender is dropped.
async fn start_control(
    objects: Objects,
    dir: &std::path::Path,
) -> (BoundAddrs, oneshot::Sender<()>) {
    let token_file = dir.join("tokens.yaml");
    std::fs::write(
        &token_file,
        "tokens:\n  - token: node-a-token-0123456789\n    node: node-a\n",
    )
    .unwrap();
    let config = support::loopback_config(objects, dir.join("state"), token_file);
    let (bound, addrs) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(
        config,
        move |a| {
            let _ = bound.send(a);
        },
        async {
            let _ = stopped.await;
        },
    ));
    (addrs.await.expect("control plane started"), stop)
}

async fn configz(addrs: &BoundAddrs) -> String {
    let (status, body) = weft_serve::get(&addrs.admin.to_string(), "/debug/configz")
        .await
        .expect("admin page");
    assert_eq!(status.as_u16(), 200);
    String::from_utf8_lossy(&body).into_owned()
}

/// Polls `/debug/configz` until `holds`; panics with the page at the deadline.
async fn until_configz(addrs: &BoundAddrs, what: &str, holds: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = configz(addrs).await;
        if holds(&page) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pods_added_changed_and_deleted_in_the_api_reach_the_translation() {
    let server = TestApiServer::start().await;
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    server.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}));
    server.put(pod("web-0", "10.1.0.5", "web"));
    server.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }));
    let api = ApiSource::start(server.client(), &WatchOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (addrs, _stop) = start_control(Objects::Source(api.objects()), dir.path()).await;

    let first = configz(&addrs).await;
    assert!(
        first.contains("Kubernetes//Pod/shop/web-0"),
        "initial pod: {first}"
    );
    assert!(first.contains("shop/web"), "service: {first}");

    server.put(pod("web-1", "10.1.0.6", "web"));
    until_configz(&addrs, "the added pod is translated", |page| {
        page.contains("Kubernetes//Pod/shop/web-1")
    })
    .await;

    server.put(pod("web-0", "10.1.0.5", "web-canary"));
    until_configz(
        &addrs,
        "the changed service account is translated",
        |page| page.contains("web-canary"),
    )
    .await;

    server.delete("v1", "Pod", Some("shop"), "web-1").unwrap();
    until_configz(&addrs, "the deleted pod is gone", |page| {
        !page.contains("Kubernetes//Pod/shop/web-1") && page.contains("Kubernetes//Pod/shop/web-0")
    })
    .await;
}
