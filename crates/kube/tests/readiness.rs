//! `/ready` of a Kubernetes-mode control plane: 503 naming what the first sync still waits
//! for (a kind whose list the API server holds back, then a referenced Secret), 200 once
//! everything is listed; the admin port answers liveness meanwhile.

use http::StatusCode;
use serde_json::json;
use weft_control::process::BoundAddrs;
use weft_kube::WatchOptions;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kubetest::TestApiServer;

mod support;

use support::{eventually, start_control};

const NAMESPACE: &str = "weft-system";

async fn page(addrs: &BoundAddrs, path: &str) -> (StatusCode, String) {
    let (status, body) = weft_serve::get(&addrs.admin.to_string(), path)
        .await
        .expect("admin port answers");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn ready_is_503_naming_what_the_first_sync_waits_for_then_200() {
    let server = TestApiServer::start().await;
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    server.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-cert", "namespace": "shop"},
        "stringData": {"tls.crt": "cert", "tls.key": "key"},
    }));
    server.put(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"gatewayClassName": "weft", "listeners": [{
            "name": "https", "port": 443, "protocol": "HTTPS",
            "tls": {"certificateRefs": [{"name": "web-cert"}]}}]},
    }));
    server.hold_lists("", "pods");
    server.hold_lists("", "secrets");
    let settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-0");
    let cluster = ClusterControl::spawn(server.client(), settings, &WatchOptions::default())
        .await
        .expect("cluster CA");
    let (addrs, _stop) = start_control(&cluster).await;

    let (status, body) = page(&addrs, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("first list of") && body.contains("Pod"),
        "{body}"
    );
    assert!(
        !body.contains("certificate authority"),
        "the CA is loaded: {body}"
    );
    assert_eq!(page(&addrs, "/healthz/live").await.0, StatusCode::OK);
    let (status, _) = page(&addrs, "/debug/configz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing translated yet"
    );

    server.release_lists("", "pods");
    let body = eventually("/ready waits only for the referenced Secret", || async {
        let (status, body) = page(&addrs, "/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE && !body.contains("Pod")).then_some(body)
    })
    .await;
    assert!(body.contains("Secret/shop/web-cert"), "{body}");

    server.release_lists("", "secrets");
    let body = eventually("/ready answers 200", || async {
        let (status, body) = page(&addrs, "/ready").await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(body, "ready\n");
    let (status, configz) = page(&addrs, "/debug/configz").await;
    assert_eq!(status, StatusCode::OK, "{configz}");
}
