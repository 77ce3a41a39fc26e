//! Feature GatewayListenerSet (GEP-1713) through the gateway's real listeners: a ListenerSet
//! adds a listener (its own port) to the Gateway that admits it, routes attach to it with a
//! parentRef of kind ListenerSet, and a ListenerSet the Gateway does not admit opens nothing.
//! The experimental channel's `XListenerSet` (`gateway.networking.x-k8s.io/v1alpha1`) the same.

use crate::conformance::{Conformance, gateway_with, request};
use crate::fixture::send;
use crate::harness::eventually;

/// Gateway `ns/gw` (HTTP `http` on 80) admitting ListenerSets as `allowed` says (YAML flow
/// mapping for `allowedListeners`), the ListenerSet `web/extra` adding HTTP `extra` on
/// 8090 for routes from every namespace, a route on it to `infra-backend-v2` and one on
/// the Gateway to `infra-backend-v1`.
fn manifests(allowed: &str) -> String {
    manifests_of(allowed, STANDARD)
}

/// How a ListenerSet is written: apiVersion, kind, and the group a parentRef names it with.
type SetKind = (&'static str, &'static str, &'static str);

const STANDARD: SetKind = (
    "gateway.networking.k8s.io/v1",
    "ListenerSet",
    "gateway.networking.k8s.io",
);
const EXPERIMENTAL: SetKind = (
    "gateway.networking.x-k8s.io/v1alpha1",
    "XListenerSet",
    "gateway.networking.x-k8s.io",
);

fn manifests_of(allowed: &str, (api_version, kind, group): SetKind) -> String {
    let gateway = gateway_with(
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n",
    )
    .replace(
        "  listeners:\n",
        &format!("  allowedListeners: {allowed}\n  listeners:\n"),
    );
    format!(
        "{gateway}---
apiVersion: {api_version}
kind: {kind}
metadata: {{name: extra, namespace: web}}
spec:
  parentRef: {{name: gw, namespace: ns}}
  listeners:
  - {{name: extra, port: 8090, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-set, namespace: ns}}
spec:
  parentRefs: [{{group: {group}, kind: {kind}, name: extra, namespace: web, sectionName: extra}}]
  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-gateway, namespace: ns}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]
"
    )
}

/// Feature GatewayListenerSet: the admitted ListenerSet's port is served with the routes
/// attached to it, the Gateway's own port with the Gateway's; once `allowedListeners` no
/// longer admits the ListenerSet, its port is closed and the Gateway's keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_set_listeners_serve_their_routes() {
    let case = Conformance::start(&manifests("{namespaces: {from: All}}")).await;
    let mut on_set = case.fixture.h1(8090).await;
    let answer = send(&mut on_set, request("GET", "/", &[])).await;
    assert_eq!(
        (answer.status, answer.header("x-backend")),
        (200, "infra-backend-v2-0"),
        "{answer:?}"
    );
    let mut on_gateway = case.fixture.h1(80).await;
    let answer = send(&mut on_gateway, request("GET", "/", &[])).await;
    assert_eq!(
        (answer.status, answer.header("x-backend")),
        (200, "infra-backend-v1-0"),
        "{answer:?}"
    );

    case.apply(&manifests("{namespaces: {from: Same}}")).await;
    assert_eq!(
        published(&case),
        ["http"],
        "the refused ListenerSet's listener is not published"
    );
    let set_port = case.fixture.addr(8090);
    eventually("the ListenerSet's port to close", || async move {
        tokio::net::TcpStream::connect(set_port).await.is_err()
    })
    .await;
    let mut on_gateway = case.fixture.h1(80).await;
    let answer = send(&mut on_gateway, request("GET", "/", &[])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Feature GatewayListenerSet with the experimental channel's kind: an `XListenerSet`'s
/// listener is served with the routes whose parentRef names it (group
/// `gateway.networking.x-k8s.io`, kind `XListenerSet`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_listener_set_listeners_serve_their_routes() {
    let manifests = manifests_of("{namespaces: {from: All}}", EXPERIMENTAL);
    let case = Conformance::start(&manifests).await;
    let mut on_set = case.fixture.h1(8090).await;
    let answer = send(&mut on_set, request("GET", "/", &[])).await;
    assert_eq!(
        (answer.status, answer.header("x-backend")),
        (200, "infra-backend-v2-0"),
        "{answer:?}"
    );
    assert_eq!(published(&case), ["http", "web/extra/extra"]);
}

/// The names of the listeners the gateway was given.
fn published(case: &Conformance) -> Vec<String> {
    let config = case.fixture.gateway.gateway.config();
    (config.resource.listeners.iter())
        .map(|l| l.name.clone())
        .collect()
}
