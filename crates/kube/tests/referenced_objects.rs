//! Secrets and ConfigMaps in Kubernetes mode: only those gateways reference are read, each
//! watched by name in its namespace; one referenced later is fetched, one no longer
//! referenced is forgotten; everything else stays on the API server (in-process test API
//! server over real HTTP, its request log checked).

use serde_json::{Value, json};
use std::time::Duration;
use weft_api::{Kind, Object, ObjectSource};
use weft_kube::{ApiSource, WatchOptions};
use weft_kubetest::TestApiServer;

const DEADLINE: Duration = Duration::from_secs(15);

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

fn tls_secret(namespace: &str, name: &str, marker: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": marker, "tls.key": "key"},
    })
}

fn config_map(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"},
    })
}

/// A Gateway in `shop` whose HTTPS listener uses `refs` (certificateRefs entries).
fn gateway(refs: &Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"gatewayClassName": "weft", "listeners": [{
            "name": "https", "port": 443, "protocol": "HTTPS",
            "tls": {"mode": "Terminate", "certificateRefs": refs},
        }]},
    })
}

fn backend_tls_policy(config_map: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "db"}],
            "validation": {"hostname": "db.shop",
                           "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": config_map}]},
        },
    })
}

/// `Kind/namespace/name` of every Secret and ConfigMap the source holds.
fn held(source: &ApiSource) -> Vec<String> {
    let snapshot = source.objects().snapshot();
    let secrets = snapshot.of_kind(Kind::Secret);
    secrets
        .chain(snapshot.of_kind(Kind::ConfigMap))
        .map(|o| o.object.object_ref().to_string())
        .collect()
}

/// Every request for `plural` that reads more than one object by name in a namespace.
fn broad_reads(server: &TestApiServer, plural: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.resource == plural)
        .filter(|r| {
            let by_name = r
                .field_selector
                .as_deref()
                .is_some_and(|f| f.starts_with("metadata.name="));
            r.namespace.is_none() || !(by_name || r.name.is_some())
        })
        .map(|r| format!("{r:?}"))
        .collect()
}

#[tokio::test]
async fn only_referenced_secrets_and_config_maps_are_read_each_by_name() {
    let server = TestApiServer::start().await;
    server.put(tls_secret("shop", "web-cert", "v1"));
    server.put(tls_secret("shop", "unrelated", "private"));
    server.put(config_map("shop", "db-ca"));
    server.put(config_map("shop", "settings"));
    server.put(config_map("istio-system", "istio"));
    server.put(gateway(&json!([{"name": "web-cert"}])));
    server.put(backend_tls_policy("db-ca"));

    let options = WatchOptions::for_root_namespace("istio-system");
    let source = ApiSource::start(server.client(), &options).await;
    assert_eq!(
        held(&source),
        [
            "Secret/shop/web-cert",
            "ConfigMap/istio-system/istio",
            "ConfigMap/shop/db-ca"
        ],
        "the first snapshot holds what is referenced, nothing else"
    );
    assert_eq!(broad_reads(&server, "secrets"), Vec::<String>::new());
    assert_eq!(broad_reads(&server, "configmaps"), Vec::<String>::new());

    // a change of a referenced Secret arrives
    server.put(tls_secret("shop", "web-cert", "v2"));
    let objects = source.objects();
    eventually("the Secret's new version arrives", || {
        let snapshot = objects.snapshot();
        let found = snapshot.get(Kind::Secret, Some("shop"), "web-cert");
        matches!(found.map(|l| &l.object), Some(Object::Secret(s))
            if s.string_data.as_ref().is_some_and(|d| d["tls.crt"] == "v2"))
    })
    .await;
}

#[tokio::test]
async fn a_secret_referenced_later_is_fetched_and_one_no_longer_referenced_is_forgotten() {
    let server = TestApiServer::start().await;
    server.put(tls_secret("shop", "old-cert", "old"));
    server.put(tls_secret("shop", "new-cert", "new"));
    server.put(gateway(&json!([{"name": "old-cert"}])));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    assert_eq!(held(&source), ["Secret/shop/old-cert"]);

    server.put(gateway(&json!([{"name": "new-cert"}])));
    eventually(
        "the newly referenced Secret is fetched and the old one forgotten",
        || held(&source) == ["Secret/shop/new-cert"],
    )
    .await;
    // the forgotten Secret's watch is gone: its changes no longer arrive
    server.put(tls_secret("shop", "old-cert", "changed"));
    server
        .delete("v1", "Secret", Some("shop"), "new-cert")
        .unwrap();
    eventually("the deleted Secret is gone", || held(&source).is_empty()).await;
    server.put(tls_secret("shop", "new-cert", "back"));
    eventually("the Secret created again is fetched", || {
        held(&source) == ["Secret/shop/new-cert"]
    })
    .await;
    assert_eq!(broad_reads(&server, "secrets"), Vec::<String>::new());
}

#[tokio::test]
async fn a_secret_in_another_namespace_is_read_only_once_a_reference_grant_allows_it() {
    let server = TestApiServer::start().await;
    server.put(tls_secret("certs", "shared", "shared"));
    server.put(gateway(&json!([{"name": "shared", "namespace": "certs"}])));
    let source = ApiSource::start(server.client(), &WatchOptions::default()).await;
    assert_eq!(held(&source), Vec::<String>::new(), "no grant: not read");
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.resource == "secrets" && r.namespace.as_deref() == Some("certs")),
        "nothing was asked of the other namespace"
    );

    server.put(json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "gateways", "namespace": "certs"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Secret"}]},
    }));
    eventually("the granted Secret is fetched", || {
        held(&source) == ["Secret/certs/shared"]
    })
    .await;
    server
        .delete(
            "gateway.networking.k8s.io/v1beta1",
            "ReferenceGrant",
            Some("certs"),
            "gateways",
        )
        .unwrap();
    eventually("the Secret is forgotten with its grant", || {
        held(&source).is_empty()
    })
    .await;
}
