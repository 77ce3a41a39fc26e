//! The CORS filter as tables: which origins each `allowOrigins` entry allows, the headers
//! of a preflight answer and of an actual answer (with and without credentials), and the
//! validation errors of the wire form.

use super::super::{FilterContext, Filters, RequestVerdict};
use http::{HeaderMap, HeaderValue, Request};
use weft_proto::l7::{self as pb, filter::Kind};

fn cors(origins: &[&str], credentials: bool, lists: [&[&str]; 3]) -> pb::Cors {
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    pb::Cors {
        allow_origins: owned(origins),
        allow_credentials: credentials,
        allow_methods: owned(lists[0]),
        allow_headers: owned(lists[1]),
        expose_headers: owned(lists[2]),
        max_age_seconds: 3600,
    }
}

fn compile(wire: pb::Cors) -> Result<Filters, (String, String)> {
    let filter = pb::Filter {
        kind: Some(Kind::Cors(wire)),
    };
    Filters::compile(&[filter], false, "spec.rules[0].filters")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

/// The request through the filters: the preflight answer's headers, or `None` when the
/// request is forwarded.
fn preflight(filters: &Filters, method: &str, pairs: &[(&str, &str)]) -> Option<HeaderMap> {
    let mut builder = Request::builder().method(method).uri("/");
    for (name, value) in pairs {
        builder = builder.header(*name, *value);
    }
    let (mut parts, ()) = builder.body(()).unwrap().into_parts();
    let context = FilterContext {
        scheme: "http",
        port: 80,
        matched_prefix: None,
    };
    match filters.apply_request(&mut parts, &context).unwrap() {
        RequestVerdict::Preflight(headers) => Some(headers),
        RequestVerdict::Forward => None,
        other @ RequestVerdict::Redirect(_) => panic!("{other:?}"),
    }
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn origins_match_by_scheme_host_and_port_with_wildcards() {
    // (allowOrigins entry, Origin sent, allowed)
    let rows = [
        ("https://www.foo.com", "https://www.foo.com", true),
        ("https://www.foo.com", "https://WWW.Foo.com", true),
        ("https://www.foo.com", "https://www.foo.com:443", true),
        ("https://www.foo.com:443", "https://www.foo.com", true),
        ("http://www.foo.com", "http://www.foo.com:80", true),
        ("https://www.foo.com", "https://www.foo.com:8443", false),
        ("https://www.foo.com", "http://www.foo.com", false),
        ("https://www.foo.com", "https://foo.com", false),
        ("https://www.foo.com", "https://www.foo.com/path", false),
        ("https://*.bar.com", "https://www.bar.com", true),
        ("https://*.bar.com", "https://a.b.bar.com", true),
        ("https://*.bar.com", "https://bar.com", false),
        ("https://*.bar.com", "https://www.bar.com.evil", false),
        ("https://*.bar.com", "http://www.bar.com", false),
        ("http://*.bar.com:8080", "http://www.bar.com:8080", true),
        ("http://*.bar.com:8080", "http://www.bar.com", false),
        ("http://[::1]:8080", "http://[::1]:8080", true),
        ("http://[::1]", "http://[::1]:80", true),
        ("*", "https://anything.example:1234", true),
        ("*", "null", false),
    ];
    let mut failures = Vec::new();
    for (pattern, origin, allowed) in rows {
        let filters = compile(cors(&[pattern], false, [&[], &[], &[]])).unwrap();
        let request = [("origin", origin), ("access-control-request-method", "GET")];
        let answer = preflight(&filters, "OPTIONS", &request).expect("answered");
        let got = get(&answer, "access-control-allow-origin");
        let want = allowed.then_some(origin);
        if got != want {
            failures.push(format!("{pattern} / {origin}: {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn preflights_are_answered_with_the_allowed_lists() {
    let methods: &[&str] = &["GET", "OPTIONS"];
    let allowed: &[&str] = &["x-header-1", "x-header-2"];
    let exposed: &[&str] = &["x-header-3"];
    let filters = compile(cors(
        &["https://www.foo.com"],
        true,
        [methods, allowed, exposed],
    ));
    let filters = filters.unwrap();
    let request = [
        ("origin", "https://www.foo.com"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "x-header-1"),
    ];
    let answer = preflight(&filters, "OPTIONS", &request).expect("a preflight");
    let want = [
        ("access-control-allow-origin", "https://www.foo.com"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET, OPTIONS"),
        ("access-control-allow-headers", "x-header-1, x-header-2"),
        ("access-control-max-age", "3600"),
        ("vary", "Origin"),
    ];
    for (name, value) in want {
        assert_eq!(get(&answer, name), Some(value), "{name}: {answer:?}");
    }
    assert_eq!(answer.len(), want.len(), "{answer:?}");

    // A disallowed origin's preflight is answered without any CORS header.
    let other = [
        ("origin", "https://www.evil.com"),
        ("access-control-request-method", "GET"),
    ];
    let answer = preflight(&filters, "OPTIONS", &other).expect("a preflight");
    assert!(answer.is_empty(), "{answer:?}");

    // OPTIONS without Access-Control-Request-Method, and other methods, are forwarded.
    let plain = [("origin", "https://www.foo.com")];
    assert_eq!(preflight(&filters, "OPTIONS", &plain), None);
    assert_eq!(preflight(&filters, "GET", &request), None);
}

#[test]
fn wildcards_are_echoed_only_when_credentials_are_allowed() {
    let any: &[&str] = &["*"];
    let request = [
        ("origin", "http://a.example"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-a, x-b"),
    ];
    let open = compile(cors(any, false, [any, any, any])).unwrap();
    let answer = preflight(&open, "OPTIONS", &request).unwrap();
    assert_eq!(
        get(&answer, "access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(get(&answer, "access-control-allow-methods"), Some("*"));
    assert_eq!(get(&answer, "access-control-allow-headers"), Some("*"));
    assert_eq!(get(&answer, "access-control-allow-credentials"), None);

    let credentialed = compile(cors(any, true, [any, any, any])).unwrap();
    let answer = preflight(&credentialed, "OPTIONS", &request).unwrap();
    assert_eq!(get(&answer, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        get(&answer, "access-control-allow-headers"),
        Some("x-a, x-b")
    );
    let without_headers = &request[..2];
    let answer = preflight(&credentialed, "OPTIONS", without_headers).unwrap();
    assert_eq!(
        get(&answer, "access-control-allow-headers"),
        None,
        "{answer:?}"
    );

    // Exposed headers: `*`, or with credentials the names the answer carries.
    let origin = HeaderValue::from_static("http://a.example");
    let mut response = headers(&[("content-type", "text/plain"), ("x-trace", "1")]);
    open.apply_cors(Some(&origin), &mut response);
    assert_eq!(get(&response, "access-control-expose-headers"), Some("*"));
    let mut response = headers(&[("content-type", "text/plain"), ("x-trace", "1")]);
    credentialed.apply_cors(Some(&origin), &mut response);
    assert_eq!(
        get(&response, "access-control-expose-headers"),
        Some("content-type, x-trace")
    );
    assert_eq!(
        get(&response, "access-control-allow-credentials"),
        Some("true")
    );
}

#[test]
fn actual_answers_get_origin_credentials_and_exposed_headers_for_allowed_origins() {
    let exposed: &[&str] = &["x-header-3", "x-header-4"];
    let filters = compile(cors(&["https://*.foo.com"], true, [&[], &[], exposed])).unwrap();
    let request = headers(&[("origin", "https://www.foo.com")]);
    let origin = filters.cors_origin(&request);
    let mut response = headers(&[("vary", "Accept-Encoding")]);
    filters.apply_cors(origin.as_ref(), &mut response);
    assert_eq!(
        get(&response, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(
        get(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        get(&response, "access-control-expose-headers"),
        Some("x-header-3, x-header-4")
    );
    let vary: Vec<_> = response.get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    for origin in [Some("https://foo.com"), Some("garbage"), None] {
        let origin = origin.map(HeaderValue::from_static);
        let mut response = HeaderMap::new();
        filters.apply_cors(origin.as_ref(), &mut response);
        assert!(response.is_empty(), "{origin:?}: {response:?}");
    }
    // Without a CORS filter nothing is kept from the request.
    assert_eq!(Filters::default().cors_origin(&request), None);
}

#[test]
fn invalid_cors_fields_are_rejected_naming_them() {
    let at = "spec.rules[0].filters[0].cors";
    let rows: [(pb::Cors, String); 5] = [
        (
            cors(&["ftp://a.com"], false, [&[], &[], &[]]),
            format!("{at}.allowOrigins[0]"),
        ),
        (
            cors(&["*", "https://a.com/x"], false, [&[], &[], &[]]),
            format!("{at}.allowOrigins[1]"),
        ),
        (
            cors(&["https://*.a.*.com"], false, [&[], &[], &[]]),
            format!("{at}.allowOrigins[0]"),
        ),
        (
            cors(&["*"], false, [&["GET", "BAD METHOD"], &[], &[]]),
            format!("{at}.allowMethods[1]"),
        ),
        (
            cors(&["*"], false, [&[], &[], &["bad header"]]),
            format!("{at}.exposeHeaders[0]"),
        ),
    ];
    for (wire, field) in rows {
        let error = compile(wire).expect_err(&field);
        assert_eq!(error.0, field, "{error:?}");
    }
}
