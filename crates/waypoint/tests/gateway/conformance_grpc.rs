//! GATEWAY-GRPC conformance features, one test each, written as the Gateway API conformance
//! suite exercises them: GRPCRoute manifests (see `conformance.rs`) translated by the
//! control plane, gRPC calls (HTTP/2 cleartext `POST /<service>/<method>`,
//! `content-type: application/grpc`) through the gateway's real HTTP listener, and the echo
//! pod that answered each. The service and method names are those of the suite's echo
//! service. A call no rule matches gets HTTP 404, which gRPC clients read as UNIMPLEMENTED.

use std::collections::BTreeMap;

use http::Request;
use hyper::client::conn::http2::SendRequest;

use crate::conformance::{Conformance, GATEWAY};
use crate::harness::{Answer, ClientBody, empty, eventually, h2c_over, read};

const ECHO: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// A GRPCRoute `name` of namespace `ns` with `parents` (YAML flow list) and `rules` (YAML,
/// indented by two spaces).
pub(crate) fn grpc_route(name: &str, parents: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n\
         metadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  parentRefs: {parents}\n  rules:\n{rules}"
    )
}

/// An h2c connection to the gateway's listener on `port`.
pub(crate) async fn h2c(case: &Conformance, port: u16) -> SendRequest<ClientBody> {
    let stream = tokio::net::TcpStream::connect(case.fixture.addr(port))
        .await
        .expect("connect to the gateway");
    h2c_over(stream).await
}

/// Calls `method` of the echo service at `authority` with `metadata`.
pub(crate) async fn call(
    sender: &mut SendRequest<ClientBody>,
    authority: &str,
    method: &str,
    metadata: &[(&str, &str)],
) -> Answer {
    let mut request = Request::post(format!("http://{authority}/{ECHO}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, *value);
    }
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request.body(empty()).unwrap()).await;
    read(response.expect("response")).await
}

/// (HTTP status, echo pod) of a call.
async fn answered_by(
    sender: &mut SendRequest<ClientBody>,
    authority: &str,
    method: &str,
    metadata: &[(&str, &str)],
) -> (u16, String) {
    let answer = call(sender, authority, method, metadata).await;
    (answer.status, answer.header("x-backend").to_owned())
}

fn method_rule(method: &str, backend: &str) -> String {
    format!(
        "  - matches: [{{method: {{service: {ECHO}, method: {method}}}}}]\n    \
         backendRefs: [{{name: {backend}, port: 8080}}]\n"
    )
}

/// Feature GRPCRoute (core): exact service/method matching chooses the backend; a method no
/// rule names is not routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exact_method_matching() {
    let rules =
        method_rule("Echo", "infra-backend-v1") + &method_rule("EchoTwo", "infra-backend-v2");
    let manifests = format!("{GATEWAY}{}", grpc_route("exact", "[{name: gw}]", &rules));
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    for (method, expected) in [
        ("Echo", (200, "infra-backend-v1-0")),
        ("EchoTwo", (200, "infra-backend-v2-0")),
        ("EchoThree", (404, "")),
    ] {
        let got = answered_by(&mut client, "example.com", method, &[]).await;
        assert_eq!((got.0, got.1.as_str()), expected, "{method}");
    }
}

/// Feature GRPCRoute (core): header (metadata) matches, exact and regular expression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_header_matching() {
    let rules = "  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{type: RegularExpression, name: grid, value: '^[a-c][0-9]$'}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
";
    let manifests = format!("{GATEWAY}{}", grpc_route("headers", "[{name: gw}]", rules));
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    for (metadata, expected) in [
        (&[("version", "one")][..], (200, "infra-backend-v1-0")),
        (
            &[("version", "two"), ("color", "orange")],
            (200, "infra-backend-v2-0"),
        ),
        (&[("grid", "b7")], (200, "infra-backend-v3-0")),
        (&[("version", "two")], (404, "")),
        (&[("grid", "d7")], (404, "")),
        (&[("version", "ONE")], (404, "")),
    ] {
        let got = answered_by(&mut client, "example.com", "Echo", metadata).await;
        assert_eq!((got.0, got.1.as_str()), expected, "{metadata:?}");
    }
}

/// Feature GRPCRoute (core): the listener chosen by `:authority` (exact, then wildcard
/// hostnames) decides which GRPCRoute applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_listener_hostname_matching() {
    let listeners = "  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.bar.com'}
  - {name: listener-4, port: 80, protocol: HTTP, hostname: '*.foo.com'}
";
    let usual =
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n";
    assert!(GATEWAY.ends_with(usual), "the usual Gateway's listener");
    let gateway = GATEWAY.replace(usual, listeners);
    let all = "  - backendRefs: [{name: BACKEND, port: 8080}]\n";
    let routes = [
        (
            "backend-v1",
            "[{name: gw, sectionName: listener-1}]",
            "infra-backend-v1",
        ),
        (
            "backend-v2",
            "[{name: gw, sectionName: listener-2}]",
            "infra-backend-v2",
        ),
        (
            "backend-v3",
            "[{name: gw, sectionName: listener-3}, {name: gw, sectionName: listener-4}]",
            "infra-backend-v3",
        ),
    ];
    let mut manifests = gateway;
    for (name, parents, backend) in routes {
        manifests += &grpc_route(name, parents, &all.replace("BACKEND", backend));
    }
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    for (authority, expected) in [
        ("bar.com", (200, "infra-backend-v1-0")),
        ("foo.bar.com", (200, "infra-backend-v2-0")),
        ("baz.bar.com", (200, "infra-backend-v3-0")),
        ("boo.bar.com", (200, "infra-backend-v3-0")),
        ("multiple.prefixes.bar.com", (200, "infra-backend-v3-0")),
        ("multiple.prefixes.foo.com", (200, "infra-backend-v3-0")),
        ("foo.com", (404, "")),
        ("no.matching.host", (404, "")),
    ] {
        let got = answered_by(&mut client, authority, "Echo", &[]).await;
        assert_eq!((got.0, got.1.as_str()), expected, "{authority}");
    }
}

/// Feature GRPCRoute (core): weighted backendRefs share the calls by weight (weight 0 gets
/// none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_weight() {
    let rules = "  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}
";
    let manifests = format!("{GATEWAY}{}", grpc_route("weights", "[{name: gw}]", rules));
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    let total = 500_u32;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..total {
        let (status, pod) = answered_by(&mut client, "example.com", "Echo", &[]).await;
        assert_eq!(status, 200);
        *seen.entry(pod).or_default() += 1;
    }
    assert_eq!(seen.get("infra-backend-v3-0"), None, "{seen:?}");
    // Binomial(500, 0.3): mean 150, sigma ~10.2; allow four sigma.
    let v2 = f64::from(seen.get("infra-backend-v2-0").copied().unwrap_or(0));
    let sigma = (f64::from(total) * 0.3 * 0.7).sqrt();
    assert!(
        (v2 - f64::from(total) * 0.3).abs() <= 4.0 * sigma,
        "{seen:?}"
    );
}

/// Feature GRPCRouteNamedRouteRule: rules with a `name` (and without) are accepted and
/// routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_named_rule() {
    let named_rule = format!(
        "  - name: named-rule\n    matches: [{{method: {{service: {ECHO}, method: Echo}}}}]\n    \
         backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
    );
    let rules = named_rule + &method_rule("EchoTwo", "infra-backend-v2");
    let manifests = format!("{GATEWAY}{}", grpc_route("named", "[{name: gw}]", &rules));
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    let named = answered_by(&mut client, "example.com", "Echo", &[]).await;
    assert_eq!(named, (200, "infra-backend-v1-0".to_owned()));
    let unnamed = answered_by(&mut client, "example.com", "EchoTwo", &[]).await;
    assert_eq!(unnamed, (200, "infra-backend-v2-0".to_owned()));
}

/// Feature ReferenceGrant (core) for GRPCRoute: a backend in another namespace answers 500
/// until a ReferenceGrant there allows GRPCRoutes of `ns`, then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_cross_namespace_backend_needs_a_reference_grant() {
    let rules = "  - backendRefs: [{name: web-backend, namespace: web, port: 8080}]\n";
    let route = grpc_route("cross", "[{name: gw}]", rules);
    let case = Conformance::start(&format!("{GATEWAY}{route}")).await;
    let mut client = h2c(&case, 80).await;
    let refused = answered_by(&mut client, "example.com", "Echo", &[]).await;
    assert_eq!(refused, (500, String::new()));

    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: grpc-from-ns, namespace: web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: ns}]
  to: [{group: '', kind: Service}]
";
    case.apply(&format!("{GATEWAY}{route}{grant}")).await;
    eventually("the granted backend to answer", || async {
        let mut client = h2c(&case, 80).await;
        let got = answered_by(&mut client, "example.com", "Echo", &[]).await;
        got == (200, "web-backend-0".to_owned())
    })
    .await;
}
