//! GATEWAY-HTTP conformance features of HTTPRoute filters, one test each, as the Gateway
//! API conformance suite exercises them (see `conformance.rs`): header modifiers on the
//! response and per backend, redirects (port, scheme, path, status codes), URL rewrites and
//! request mirrors. The feature each test shows is named in its doc comment and in
//! `docs/gateway-api.md`.

use std::sync::atomic::Ordering::Relaxed;

use crate::conformance::{Conformance, GATEWAY, request, route};
use crate::fixture::send;
use crate::harness::eventually;

/// Feature HTTPRouteResponseHeaderModification: set overwrites a header the backend
/// sent, add appends to it, remove drops it; the response body is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_modification() {
    // The echo answers each request header `h` as response header `x-seen-h`.
    let rules = "  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Backend, value: set-overwrites-values}]
        add: [{name: X-Seen-X-Add, value: add-appends-values}, {name: X-New, value: added}]
        remove: [x-seen-x-remove]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("response", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let headers = [("x-add", "original"), ("x-remove", "doomed")];
    let answer = send(&mut client, request("GET", "/", &headers)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-backend"), "set-overwrites-values");
    let added: Vec<_> = answer.headers.get_all("x-seen-x-add").iter().collect();
    assert_eq!(added, ["original", "add-appends-values"], "{answer:?}");
    assert_eq!(answer.header("x-new"), "added");
    assert!(
        !answer.headers.contains_key("x-seen-x-remove"),
        "{answer:?}"
    );
    assert_eq!(answer.body, "infra-backend-v1-0 GET / 0");
}

/// One rule per `(path prefix, requestRedirect)`, for the redirect features.
fn redirects(redirects: &[(&str, &str)]) -> String {
    let rules: String = redirects
        .iter()
        .map(|(prefix, redirect)| {
            format!(
                "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    \
                 filters: [{{type: RequestRedirect, requestRedirect: {redirect}}}]\n"
            )
        })
        .collect();
    format!("{GATEWAY}{}", route("redirect", &rules))
}

/// Sends a GET for each `(path, status, location)` and checks the redirect.
async fn assert_redirects(case: &Conformance, expected: &[(&str, u16, &str)]) {
    let mut client = case.fixture.h1(80).await;
    for (path, status, location) in expected {
        let answer = send(&mut client, request("GET", path, &[])).await;
        assert_eq!(
            (answer.status, answer.header("location")),
            (*status, *location),
            "{path}: {answer:?}"
        );
    }
    for backend in ["infra-backend-v1-0", "infra-backend-v2-0"] {
        assert_eq!(case.backend(backend).requests.load(Relaxed), 0);
    }
}

/// Feature HTTPRoutePortRedirect: the port is replaced, and left out of the location when
/// it is the scheme's well-known one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_redirect() {
    let case = Conformance::start(&redirects(&[
        ("/port", "{port: 8083}"),
        ("/scheme-and-port", "{scheme: https, port: 443}"),
        (
            "/host-and-port",
            "{hostname: example.org, port: 8083, statusCode: 301}",
        ),
    ]))
    .await;
    assert_redirects(
        &case,
        &[
            ("/port/x?q=1", 302, "http://example.com:8083/port/x?q=1"),
            (
                "/scheme-and-port",
                302,
                "https://example.com/scheme-and-port",
            ),
            (
                "/host-and-port",
                301,
                "http://example.org:8083/host-and-port",
            ),
        ],
    )
    .await;
}

/// Feature HTTPRouteSchemeRedirect: the scheme is replaced; without a port the new
/// scheme's well-known port applies (and is left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheme_redirect() {
    let case = Conformance::start(&redirects(&[
        ("/scheme", "{scheme: https}"),
        ("/scheme-and-host", "{scheme: https, hostname: example.org}"),
        ("/scheme-and-status", "{scheme: https, statusCode: 301}"),
    ]))
    .await;
    assert_redirects(
        &case,
        &[
            ("/scheme", 302, "https://example.com/scheme"),
            (
                "/scheme-and-host",
                302,
                "https://example.org/scheme-and-host",
            ),
            (
                "/scheme-and-status",
                301,
                "https://example.com/scheme-and-status",
            ),
        ],
    )
    .await;
}

/// Feature HTTPRoutePathRedirect: ReplaceFullPath and ReplacePrefixMatch, the query kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_redirect() {
    let case = Conformance::start(&redirects(&[
        (
            "/original-prefix",
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        (
            "/full",
            "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}",
        ),
        (
            "/path-and-host",
            "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}",
        ),
    ]))
    .await;
    assert_redirects(
        &case,
        &[
            (
                "/original-prefix/lemon",
                302,
                "http://example.com/replacement-prefix/lemon",
            ),
            (
                "/full/x?a=b",
                302,
                "http://example.com/full-path-replacement?a=b",
            ),
            ("/path-and-host/one", 302, "http://example.org/one"),
        ],
    )
    .await;
}

/// Features HTTPRoute303/307/308RedirectStatusCode: each status code is answered as asked.
async fn redirect_status(code: u16) {
    let redirect = format!("{{hostname: example.org, statusCode: {code}}}");
    let case = Conformance::start(&redirects(&[("/", &redirect)])).await;
    assert_redirects(&case, &[("/moved", code, "http://example.org/moved")]).await;
}

/// Feature HTTPRoute303RedirectStatusCode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_303() {
    redirect_status(303).await;
}

/// Feature HTTPRoute307RedirectStatusCode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_307() {
    redirect_status(307).await;
}

/// Feature HTTPRoute308RedirectStatusCode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_308() {
    redirect_status(308).await;
}

/// Feature HTTPRouteHostRewrite: the backend sees the rewritten Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite() {
    let rules = "  - matches: [{path: {type: PathPrefix, value: /one}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("rewrite", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let rewritten = send(&mut client, request("GET", "/one/x", &[])).await;
    assert_eq!(
        rewritten.header("x-seen-host"),
        "one.example.org",
        "{rewritten:?}"
    );
    assert_eq!(rewritten.body, "infra-backend-v1-0 GET /one/x 0");
    let kept = send(&mut client, request("GET", "/two", &[])).await;
    assert_eq!(kept.header("x-seen-host"), "example.com", "{kept:?}");
}

/// Feature HTTPRoutePathRewrite: ReplaceFullPath and ReplacePrefixMatch as the backend
/// sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrite() {
    let rules = "  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("rewrite", rules))).await;
    let mut client = case.fixture.h1(80).await;
    for (path, seen) in [
        ("/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/full/one/two", "/one"),
        ("/full", "/one"),
    ] {
        let answer = send(&mut client, request("GET", path, &[])).await;
        assert_eq!(
            answer.body,
            format!("infra-backend-v1-0 GET {seen} 0"),
            "{path}: {answer:?}"
        );
    }
}

/// Waits until echo pod `pod` has answered `count` requests (mirrors are sent after the
/// response, without waiting).
async fn wait_requests(case: &Conformance, pod: &str, count: usize) {
    let backend = case.backend(pod);
    eventually(&format!("{count} requests at {pod}"), || async {
        backend.requests.load(Relaxed) >= count
    })
    .await;
}

/// Feature HTTPRouteRequestMirror: the request is answered by the backend and a copy goes
/// to the mirror, whose answer is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirror() {
    let rules = "  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("mirror", rules))).await;
    let mut client = case.fixture.h1(80).await;
    for _ in 0..3 {
        let answer = send(&mut client, request("GET", "/mirror", &[])).await;
        assert_eq!(
            answer.header("x-backend"),
            "infra-backend-v1-0",
            "{answer:?}"
        );
    }
    wait_requests(&case, "infra-backend-v2-0", 3).await;
    assert_eq!(case.backend("infra-backend-v1-0").requests.load(Relaxed), 3);
    assert_eq!(case.backend("infra-backend-v3-0").requests.load(Relaxed), 0);
}

/// Feature HTTPRouteRequestMultipleMirrors: two RequestMirror filters in one rule each get
/// a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_multiple_mirrors() {
    let rules = "  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("mirrors", rules))).await;
    let mut client = case.fixture.h1(80).await;
    for _ in 0..2 {
        let answer = send(&mut client, request("GET", "/multi", &[])).await;
        assert_eq!(
            answer.header("x-backend"),
            "infra-backend-v1-0",
            "{answer:?}"
        );
    }
    wait_requests(&case, "infra-backend-v2-0", 2).await;
    wait_requests(&case, "infra-backend-v3-0", 2).await;
}

/// Feature HTTPRouteRequestPercentageMirror: `percent` and `fraction` mirror that share
/// of the requests (checked within four standard deviations), `percent: 0` none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_percentage_mirror() {
    let rules = "  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}, percent: 50}
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}, fraction: {numerator: 1, denominator: 4}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: web-backend, namespace: web, port: 8080}, percent: 0}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: mirror-to-web, namespace: web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ns}]
  to: [{group: '', kind: Service}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("percent", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let sent = 400;
    for _ in 0..sent {
        let answer = send(&mut client, request("GET", "/percent", &[])).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    // Half of 400 is 200 (sd 10), a quarter 100 (sd 8.7).
    wait_requests(&case, "infra-backend-v2-0", 160).await;
    wait_requests(&case, "infra-backend-v3-0", 66).await;
    let v2 = case.backend("infra-backend-v2-0").requests.load(Relaxed);
    let v3 = case.backend("infra-backend-v3-0").requests.load(Relaxed);
    assert!(v2 <= 240, "percent 50 mirrored {v2} of {sent}");
    assert!(v3 <= 134, "fraction 1/4 mirrored {v3} of {sent}");
    assert_eq!(case.backend("web-backend-0").requests.load(Relaxed), 0);
}

/// Feature HTTPRouteBackendRequestHeaderModification: a backendRef's own
/// RequestHeaderModifier applies to requests sent to that backend only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_request_header_modification() {
    let rules = "  - matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: X-Header-Set, value: set-overwrites-values}]
          add: [{name: X-Header-Add, value: header-val-1}]
          remove: [X-Header-Remove]
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
";
    let case = Conformance::start(&format!("{GATEWAY}{}", route("backend-filter", rules))).await;
    let mut client = case.fixture.h1(80).await;
    let headers = [
        ("x-header-set", "original"),
        ("x-header-add", "original"),
        ("x-header-remove", "doomed"),
    ];
    let filtered = send(&mut client, request("GET", "/v1", &headers)).await;
    assert_eq!(
        filtered.header("x-backend"),
        "infra-backend-v1-0",
        "{filtered:?}"
    );
    assert_eq!(
        filtered.header("x-seen-x-header-set"),
        "set-overwrites-values"
    );
    let added: Vec<_> = filtered
        .headers
        .get_all("x-seen-x-header-add")
        .iter()
        .collect();
    assert_eq!(added, ["original", "header-val-1"]);
    assert!(!filtered.headers.contains_key("x-seen-x-header-remove"));
    let other = send(&mut client, request("GET", "/v2", &headers)).await;
    assert_eq!(other.header("x-backend"), "infra-backend-v2-0", "{other:?}");
    assert_eq!(other.header("x-seen-x-header-set"), "original");
    assert_eq!(other.header("x-seen-x-header-remove"), "doomed");
}
