//! GATEWAY-HTTP conformance features of Gateways and of HTTPRoute matching, timeouts,
//! parents and backends (filters are in `conformance_filters.rs`), one test each, written as
//! the Gateway API conformance suite exercises them: manifests (see `conformance.rs`)
//! translated by the control plane, requests through the gateway's real listener,
//! assertions on what the echo backend saw and on the response. The feature each test shows
//! is named in its doc comment and in `docs/gateway-api.md`.

use std::sync::atomic::Ordering::Relaxed;

use crate::conformance::{Conformance, GATEWAY, gateway_with, request, route, route_conditions};
use crate::fixture::{get, send};

/// Feature HTTPRouteQueryParamMatching: query parameters choose the rule, exactly and
/// case-sensitively by name; more matching parameters beat fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_param_matching() {
    let rules = "  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("query", rules))).await;
    let mut client = case.fixture.h1(80).await;
    for (path, status, pod) in [
        ("/?animal=whale", 200, "infra-backend-v1-0"),
        ("/?animal=dolphin", 200, "infra-backend-v2-0"),
        ("/?animal=dolphin&color=blue", 200, "infra-backend-v3-0"),
        ("/?color=blue&animal=dolphin", 200, "infra-backend-v3-0"),
        ("/?ANIMAL=whale", 404, ""),
        ("/?animal=Whale", 404, ""),
    ] {
        let answer = send(&mut client, get("example.com", path, &[])).await;
        assert_eq!(
            (answer.status, answer.header("x-backend")),
            (status, pod),
            "{path}: {answer:?}"
        );
    }
}

/// Feature HTTPRouteMethodMatching: the method chooses the rule; a method no rule names
/// matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_matching() {
    let rules = "  - matches: [{method: POST}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{method: GET, path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("methods", rules))).await;
    let mut client = case.fixture.h1(80).await;
    for (method, path, status, pod) in [
        ("POST", "/", 200, "infra-backend-v1-0"),
        ("GET", "/v2/x", 200, "infra-backend-v2-0"),
        ("GET", "/", 404, ""),
        ("HEAD", "/v2", 404, ""),
        ("DELETE", "/v2", 404, ""),
    ] {
        let answer = send(&mut client, request(method, path, &[])).await;
        assert_eq!(
            (answer.status, answer.header("x-backend")),
            (status, pod),
            "{method} {path}: {answer:?}"
        );
    }
}

/// Feature HTTPRouteRequestTimeout: a request not answered within `timeouts.request` gets
/// 504; a quick one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout() {
    let rules = "  - timeouts: {request: 300ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("timeout", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let slow = send(&mut client, request("GET", "/", &[("x-delay-ms", "3000")])).await;
    assert_eq!(slow.status, 504, "{slow:?}");
    let mut client = case.fixture.h1(80).await;
    let quick = send(&mut client, request("GET", "/", &[])).await;
    assert_eq!(quick.status, 200, "{quick:?}");
}

/// Feature HTTPRouteBackendTimeout: one backend attempt longer than
/// `timeouts.backendRequest` gets 504 even within a longer `timeouts.request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_timeout() {
    let rules = "  - timeouts: {request: 20s, backendRequest: 300ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("timeout", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let started = std::time::Instant::now();
    let slow = send(&mut client, request("GET", "/", &[("x-delay-ms", "3000")])).await;
    assert_eq!(slow.status, 504, "{slow:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let mut client = case.fixture.h1(80).await;
    let quick = send(&mut client, request("GET", "/", &[])).await;
    assert_eq!(quick.status, 200, "{quick:?}");
}

/// HTTP listeners `http` on 80 and `http-8080` on 8080.
const TWO_PORTS: &str = "  - {name: http, port: 80, protocol: HTTP}
  - {name: http-8080, port: 8080, protocol: HTTP}
";

/// An HTTPRoute `name` with one parentRef `parent` (YAML flow mapping) to `backend`.
fn route_with_parent(name: &str, parent: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  parentRefs: [{parent}]\n  hostnames: [{name}.example.com]\n  \
         rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
    )
}

/// The status of the request for `host` on `port`, and the pod that answered.
async fn answer_on(case: &Conformance, port: u16, host: &str) -> (u16, String) {
    let mut client = case.fixture.h1(port).await;
    let answer = send(&mut client, get(host, "/", &[])).await;
    (answer.status, answer.header("x-backend").to_owned())
}

/// Feature HTTPRouteParentRefPort: a parentRef's `port` attaches the route to the
/// listeners of that port only (with or without a `sectionName`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_ref_port() {
    let manifests = [
        gateway_with(TWO_PORTS),
        route_with_parent("port-80", "{name: gw, port: 80}", "infra-backend-v1"),
        route_with_parent("port-8080", "{name: gw, port: 8080}", "infra-backend-v2"),
        route_with_parent(
            "section-and-port",
            "{name: gw, sectionName: http-8080, port: 8080}",
            "infra-backend-v3",
        ),
    ]
    .concat();
    let case = Conformance::start(&manifests).await;
    let ok = |pod: &str| (200, pod.to_owned());
    let not_found = (404, String::new());
    assert_eq!(
        answer_on(&case, 80, "port-80.example.com").await,
        ok("infra-backend-v1-0")
    );
    assert_eq!(
        answer_on(&case, 8080, "port-80.example.com").await,
        not_found
    );
    assert_eq!(
        answer_on(&case, 8080, "port-8080.example.com").await,
        ok("infra-backend-v2-0")
    );
    assert_eq!(
        answer_on(&case, 80, "port-8080.example.com").await,
        not_found
    );
    let both = answer_on(&case, 8080, "section-and-port.example.com").await;
    assert_eq!(both, ok("infra-backend-v3-0"));
    assert_eq!(
        answer_on(&case, 80, "section-and-port.example.com").await,
        not_found
    );
}

/// Feature HTTPRouteDestinationPortMatching: a parentRef whose `port` no listener has is
/// `Accepted=False` (`NoMatchingParent`) and serves nothing, nor does one whose port and
/// sectionName name different listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_port_matching() {
    let manifests = [
        gateway_with(TWO_PORTS),
        route_with_parent("no-port", "{name: gw, port: 81}", "infra-backend-v1"),
        route_with_parent(
            "mismatch",
            "{name: gw, sectionName: http, port: 8080}",
            "infra-backend-v2",
        ),
        route_with_parent("fine", "{name: gw, port: 8080}", "infra-backend-v3"),
    ]
    .concat();
    for name in ["no-port", "mismatch"] {
        let accepted = route_conditions(&manifests, name).into_iter().next();
        let expected = ("Accepted".into(), "False".into(), "NoMatchingParent".into());
        assert_eq!(accepted, Some(expected), "{name}");
    }
    let case = Conformance::start(&manifests).await;
    for port in [80, 8080] {
        for host in ["no-port.example.com", "mismatch.example.com"] {
            assert_eq!(answer_on(&case, port, host).await.0, 404, "{host}:{port}");
        }
    }
    let fine = answer_on(&case, 8080, "fine.example.com").await;
    assert_eq!(fine, (200, "infra-backend-v3-0".to_owned()));
}

/// A Service `name` in `ns` selecting the pod of `infra-backend-v1`, its port 8080 of
/// `appProtocol`, and a route sending everything to it.
fn app_protocol_backend(name: &str, app_protocol: &str) -> String {
    let rules = format!("  - backendRefs: [{{name: {name}, port: 8080}}]\n");
    format!(
        "{GATEWAY}---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  selector: {{app: infra-backend-v1}}\n  \
         ports: [{{name: app, port: 8080, appProtocol: {app_protocol}}}]\n{}",
        route(name, &rules)
    )
}

/// Feature HTTPRouteBackendProtocolH2C: a backend Service port of appProtocol
/// `kubernetes.io/h2c` is spoken to in HTTP/2 prior knowledge, whatever the client spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocol_h2c() {
    let case = Conformance::start(&app_protocol_backend("h2c", "kubernetes.io/h2c")).await;
    let mut client = case.fixture.h1(80).await;
    let answer = send(&mut client, request("GET", "/h2c", &[])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "infra-backend-v1-0 GET /h2c 0");
    assert_eq!(
        answer.header("x-version"),
        "HTTP/2.0",
        "the backend saw HTTP/2"
    );
}

/// Feature HTTPRouteBackendProtocolWebSocket: a WebSocket upgrade to a backend Service
/// port of appProtocol `kubernetes.io/ws` is answered 101 and carries bytes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocol_websocket() {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let case = Conformance::start(&app_protocol_backend("ws", "kubernetes.io/ws")).await;
    let mut client = case.fixture.h1(80).await;
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    client.ready().await.unwrap();
    let response = client
        .send_request(request("GET", "/ws", &upgrade))
        .await
        .expect("an answer to the upgrade");
    assert_eq!(response.status(), 101);
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
    io.write_all(b"frames both ways").await.unwrap();
    let mut echoed = [0_u8; 16];
    io.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"frames both ways");
}

/// Feature HTTPRouteNamedRouteRule: rules with a `name` (and without) are accepted and
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_route_rule() {
    let rules = "  - name: named-rule
    matches: [{path: {type: PathPrefix, value: /named}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
";
    let manifests = format!("{GATEWAY}{}", route("named", rules));
    let conditions = route_conditions(&manifests, "named");
    let accepted = ("Accepted".into(), "True".into(), "Accepted".into());
    assert_eq!(conditions.first(), Some(&accepted));
    let case = Conformance::start(&manifests).await;
    let mut client = case.fixture.h1(80).await;
    let named = send(&mut client, request("GET", "/named", &[])).await;
    assert_eq!(named.header("x-backend"), "infra-backend-v1-0", "{named:?}");
    let unnamed = send(&mut client, request("GET", "/other", &[])).await;
    assert_eq!(
        unnamed.header("x-backend"),
        "infra-backend-v2-0",
        "{unnamed:?}"
    );
}

/// Feature GatewayPort8080: an HTTP listener on port 8080 serves its routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_port_8080() {
    let gateway = GATEWAY.replace("port: 80,", "port: 8080,");
    let rules = "  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n";
    let case = Conformance::start(&format!("{gateway}{}", route("on-8080", rules))).await;
    let answer = answer_on(&case, 8080, "example.com").await;
    assert_eq!(answer, (200, "infra-backend-v1-0".to_owned()));
}

/// Four HTTP listeners on port 80 from least to most specific hostname, each with a route
/// (attached by sectionName) for the path prefix named after it.
const ISOLATED: &str = "  - {name: empty-hostname, port: 80, protocol: HTTP}
  - {name: wildcard-example-com, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: wildcard-foo-example-com, port: 80, protocol: HTTP, hostname: '*.foo.example.com'}
  - {name: abc-foo-example-com, port: 80, protocol: HTTP, hostname: abc.foo.example.com}
";

/// Feature GatewayHTTPListenerIsolation: a request is served only by the routes of the
/// most specific listener matching its Host, even when a less specific listener has a
/// route for its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_isolation() {
    let listeners = [
        "empty-hostname",
        "wildcard-example-com",
        "wildcard-foo-example-com",
        "abc-foo-example-com",
    ];
    let mut manifests = gateway_with(ISOLATED);
    for listener in listeners {
        manifests += &format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: {listener}, namespace: ns}}\n\
             spec:\n  parentRefs: [{{name: gw, sectionName: {listener}}}]\n  \
             rules:\n  - matches: [{{path: {{type: PathPrefix, value: /{listener}}}}}]\n    \
             backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
        );
    }
    let case = Conformance::start(&manifests).await;
    let mut client = case.fixture.h1(80).await;
    let hosts = [
        ("bar.com", "empty-hostname"),
        ("bar.example.com", "wildcard-example-com"),
        ("bar.foo.example.com", "wildcard-foo-example-com"),
        ("abc.foo.example.com", "abc-foo-example-com"),
    ];
    for (host, own) in hosts {
        for listener in listeners {
            let answer = send(&mut client, get(host, &format!("/{listener}"), &[])).await;
            let expected = if listener == own { 200 } else { 404 };
            assert_eq!(answer.status, expected, "{host} /{listener}: {answer:?}");
        }
    }
}

/// Core features HTTPRoute and ReferenceGrant: a backend in another namespace answers 500
/// with `ResolvedRefs=False` (`RefNotPermitted`) until a ReferenceGrant there allows it;
/// then (applied live) 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_backend_needs_a_reference_grant() {
    let rules = "  - backendRefs: [{name: web-backend, namespace: web, port: 8080}]\n";
    let without = format!("{GATEWAY}{}", route("cross", rules));
    let resolved = route_conditions(&without, "cross").into_iter().nth(1);
    let refused = (
        "ResolvedRefs".into(),
        "False".into(),
        "RefNotPermitted".into(),
    );
    assert_eq!(resolved, Some(refused));
    let case = Conformance::start(&without).await;
    let mut client = case.fixture.h1(80).await;
    let answer = send(&mut client, request("GET", "/", &[])).await;
    assert_eq!(answer.status, 500, "{answer:?}");
    assert_eq!(case.backend("web-backend-0").requests.load(Relaxed), 0);

    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
                 metadata: {name: routes-from-ns, namespace: web}\n\
                 spec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ns}]\n  \
                 to: [{group: '', kind: Service, name: web-backend}]\n";
    case.apply(&format!("{without}{grant}")).await;
    let answer = answer_on(&case, 80, "example.com").await;
    assert_eq!(answer, (200, "web-backend-0".to_owned()));
}
