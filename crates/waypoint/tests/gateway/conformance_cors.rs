//! Feature HTTPRouteCORS (Gateway API v1.3+, GEP-1767) through a real gateway: a route's
//! `CORS` filter makes the gateway answer preflight requests itself and add the CORS
//! headers to the backend's answers for allowed origins (see `l7/src/filters/cors.rs` for
//! the rules, and `docs/gateway-api.md`).

use std::sync::atomic::Ordering::Relaxed;

use crate::conformance::{Conformance, GATEWAY, request, route, route_conditions};
use crate::fixture::send;

/// Two rules: `/cors` with explicit lists and credentials, `/cors-wildcard` with
/// wildcards, no credentials and the default `maxAge`.
const RULES: &str = "  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ['https://www.foo.com', 'https://*.bar.com', 'http://*.foo.com:8080']
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*']}
    backendRefs: [{name: infra-backend-v2, port: 8080}]
";

const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

/// Feature HTTPRouteCORS: preflights from allowed origins (exact, and by host wildcard
/// with and without a port) are answered by the gateway with the configured lists;
/// a preflight from another origin is answered without CORS headers; an actual request
/// reaches the backend and its answer carries the origin, credentials and exposed headers
/// only for an allowed origin; wildcards without credentials are sent as `*`, and an unset
/// `maxAge` is 5 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors() {
    let manifests = format!("{GATEWAY}{}", route("cors", RULES));
    let accepted = ("Accepted".into(), "True".into(), "Accepted".into());
    assert_eq!(
        route_conditions(&manifests, "cors").first(),
        Some(&accepted)
    );
    let case = Conformance::start(&manifests).await;
    let mut client = case.fixture.h1(80).await;
    let preflight = |origin| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-header-1"),
        ];
        request("OPTIONS", "/cors/resource", &headers)
    };

    for origin in [
        "https://www.foo.com",
        "https://api.bar.com",
        "http://a.b.foo.com:8080",
    ] {
        let answer = send(&mut client, preflight(origin)).await;
        assert_eq!(answer.status, 200, "{origin}: {answer:?}");
        let want = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, OPTIONS"),
            ("access-control-allow-headers", "x-header-1, x-header-2"),
            ("access-control-max-age", "3600"),
        ];
        for (name, value) in want {
            assert_eq!(answer.header(name), value, "{origin} {name}: {answer:?}");
        }
    }
    for origin in [
        "https://www.evil.com",
        "http://a.b.foo.com",
        "https://bar.com",
    ] {
        let answer = send(&mut client, preflight(origin)).await;
        assert_eq!(answer.status, 200, "{origin}: {answer:?}");
        for name in CORS_HEADERS {
            assert!(
                !answer.headers.contains_key(name),
                "{origin} {name}: {answer:?}"
            );
        }
    }
    let backend = case.backend("infra-backend-v1-0");
    assert_eq!(
        backend.requests.load(Relaxed),
        0,
        "preflights reach no backend"
    );

    let actual = [("origin", "https://www.foo.com")];
    let answer = send(&mut client, request("GET", "/cors/resource", &actual)).await;
    assert_eq!(
        answer.body, "infra-backend-v1-0 GET /cors/resource 0",
        "{answer:?}"
    );
    let want = [
        ("access-control-allow-origin", "https://www.foo.com"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-header-3, x-header-4"),
        ("vary", "Origin"),
    ];
    for (name, value) in want {
        assert_eq!(answer.header(name), value, "{name}: {answer:?}");
    }
    let other = [("origin", "https://www.evil.com")];
    let answer = send(&mut client, request("GET", "/cors/resource", &other)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for name in CORS_HEADERS {
        assert!(!answer.headers.contains_key(name), "{name}: {answer:?}");
    }
    assert_eq!(backend.requests.load(Relaxed), 2);

    let wildcard = [
        ("origin", "https://anyone.example:8443"),
        ("access-control-request-method", "DELETE"),
        ("access-control-request-headers", "x-anything"),
    ];
    let answer = send(&mut client, request("OPTIONS", "/cors-wildcard", &wildcard)).await;
    let want = [
        ("access-control-allow-origin", "https://anyone.example:8443"),
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "*"),
        ("access-control-max-age", "5"),
        ("access-control-allow-credentials", ""),
    ];
    for (name, value) in want {
        assert_eq!(answer.header(name), value, "{name}: {answer:?}");
    }
}
