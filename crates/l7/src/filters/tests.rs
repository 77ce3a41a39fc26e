//! Filters as tables: path modifiers against the spec's `ReplacePrefixMatch` table,
//! redirect `Location`s (scheme, host, port and path rules), rewrites of host and path,
//! header modifiers, mirror sampling, and the validation errors of the wire form.

use super::{FilterContext, Filters, PathModifier, RequestVerdict};
use http::request::Parts;
use http::{Request, StatusCode};
use weft_proto::l7::{self as pb, filter::Kind, path_modifier};

fn compile(kinds: Vec<Kind>, prefix_only: bool) -> Result<Filters, (String, String)> {
    let filters: Vec<_> = (kinds.into_iter())
        .map(|k| pb::Filter { kind: Some(k) })
        .collect();
    Filters::compile(&filters, prefix_only, "spec.rules[0].filters")
}

fn parts(uri: &str, host: Option<&str>) -> Parts {
    let mut builder = Request::builder().uri(uri);
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    builder.body(()).expect("request").into_parts().0
}

fn full(path: &str) -> Option<pb::PathModifier> {
    let kind = path_modifier::Kind::ReplaceFullPath(path.to_owned());
    Some(pb::PathModifier { kind: Some(kind) })
}

fn prefix(path: &str) -> Option<pb::PathModifier> {
    let kind = path_modifier::Kind::ReplacePrefixMatch(path.to_owned());
    Some(pb::PathModifier { kind: Some(kind) })
}

fn context(prefix: Option<&str>) -> FilterContext<'_> {
    FilterContext {
        scheme: "http",
        port: 80,
        matched_prefix: prefix,
    }
}

#[test]
fn replace_prefix_match_follows_the_spec_table() {
    // (request path, matched PathPrefix, replacement, expected)
    let rows = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/prefix/one", "/prefix", "/", "/one"),
        ("/prefix/one/", "/prefix", "/two", "/two/one/"),
        ("/anything", "/", "/api", "/api/anything"),
    ];
    let mut failures = Vec::new();
    for (path, matched, replacement, want) in rows {
        let modifier = PathModifier::ReplacePrefixMatch(replacement.to_owned());
        let got = modifier.apply(path, Some(matched.trim_end_matches('/')));
        if got != want {
            failures.push(format!(
                "{path} {matched} -> {replacement}: {got}, want {want}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn redirect_locations() {
    let redirect = |scheme: &str, hostname: &str, port: u32, path, status_code| {
        Kind::RequestRedirect(pb::Redirect {
            scheme: scheme.to_owned(),
            hostname: hostname.to_owned(),
            port,
            path,
            status_code,
        })
    };
    // (what, filter, request URI, Host header, client port, matched prefix, status, Location)
    let rows = [
        (
            "nothing set keeps the request",
            redirect("", "", 0, None, 0),
            "/a?q=1",
            Some("svc"),
            80,
            None,
            302,
            "http://svc/a?q=1",
        ),
        (
            "hostname replaces the Host",
            redirect("", "example.org", 0, None, 301),
            "/a",
            Some("svc:8080"),
            8080,
            None,
            301,
            "http://example.org:8080/a",
        ),
        (
            "a scheme sets its well-known port",
            redirect("https", "", 0, None, 0),
            "/a",
            Some("svc:8080"),
            8080,
            None,
            302,
            "https://svc/a",
        ),
        (
            "http to port 80 omits it",
            redirect("http", "", 0, None, 0),
            "/",
            Some("svc"),
            8080,
            None,
            302,
            "http://svc/",
        ),
        (
            "an explicit port is kept",
            redirect("https", "", 8443, None, 308),
            "/",
            Some("svc"),
            80,
            None,
            308,
            "https://svc:8443/",
        ),
        (
            "an explicit default port is omitted",
            redirect("", "", 80, None, 0),
            "/",
            Some("svc:9000"),
            9000,
            None,
            302,
            "http://svc/",
        ),
        (
            "no scheme uses the client's port",
            redirect("", "", 0, None, 303),
            "/",
            Some("svc:9000"),
            9000,
            None,
            303,
            "http://svc:9000/",
        ),
        (
            "full path replaced, query kept",
            redirect("", "", 0, full("/new"), 307),
            "/old/x?q=1",
            Some("svc"),
            80,
            None,
            307,
            "http://svc/new?q=1",
        ),
        (
            "prefix replaced on segments",
            redirect("", "", 0, prefix("/v2"), 0),
            "/v1/items/3",
            Some("svc"),
            80,
            Some("/v1"),
            302,
            "http://svc/v2/items/3",
        ),
        (
            "authority of an h2 request",
            redirect("", "", 0, None, 0),
            "http://api.test:8080/p",
            None,
            8080,
            None,
            302,
            "http://api.test:8080/p",
        ),
        (
            "the URI's scheme wins over the context's",
            redirect("", "", 0, None, 0),
            "https://api.test/p",
            None,
            443,
            None,
            302,
            "https://api.test/p",
        ),
        (
            "IPv6 host keeps brackets",
            redirect("", "", 0, None, 0),
            "/",
            Some("[::1]:8080"),
            8080,
            None,
            302,
            "http://[::1]:8080/",
        ),
    ];
    let mut failures = Vec::new();
    for (what, kind, uri, host, port, matched, status, location) in rows {
        let filters = compile(vec![kind], matched.is_some()).expect(what);
        let mut request = parts(uri, host);
        let context = FilterContext {
            port,
            ..context(matched)
        };
        let got = filters.apply_request(&mut request, &context).expect(what);
        let RequestVerdict::Redirect(redirect) = got else {
            panic!("{what}: not a redirect")
        };
        let got = (
            redirect.status.as_u16(),
            redirect.location.to_str().unwrap_or("?").to_owned(),
        );
        if got != (status, location.to_owned()) {
            failures.push(format!("{what}: {got:?}, want ({status}, {location})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rewrites_change_host_and_path_and_keep_the_query() {
    let rewrite = |hostname: &str, path| {
        Kind::UrlRewrite(pb::Rewrite {
            hostname: hostname.to_owned(),
            path,
        })
    };
    // (what, filter, request URI, Host header, matched prefix, URI after, Host after)
    let rows = [
        (
            "hostname only",
            rewrite("backend.test", None),
            "/a?q",
            Some("svc"),
            None,
            "/a?q",
            "backend.test",
        ),
        (
            "full path",
            rewrite("", full("/b")),
            "/a/x?q=1",
            Some("svc"),
            None,
            "/b?q=1",
            "svc",
        ),
        (
            "prefix to /",
            rewrite("", prefix("/")),
            "/prefix/one",
            Some("svc"),
            Some("/prefix"),
            "/one",
            "svc",
        ),
        (
            "prefix to a longer one",
            rewrite("", prefix("/api/v2")),
            "/v1/x?y",
            Some("svc"),
            Some("/v1"),
            "/api/v2/x?y",
            "svc",
        ),
        (
            "h2 authority rewritten",
            rewrite("b.test", None),
            "http://a.test:8080/p",
            None,
            None,
            "http://b.test/p",
            "b.test",
        ),
    ];
    let mut failures = Vec::new();
    for (what, kind, uri, host, matched, want_uri, want_host) in rows {
        let filters = compile(vec![kind], matched.is_some()).expect(what);
        let mut request = parts(uri, host);
        let verdict = filters.apply_request(&mut request, &context(matched));
        assert_eq!(verdict, Ok(RequestVerdict::Forward), "{what}");
        let got = (
            request.uri.to_string(),
            request.headers["host"].to_str().unwrap_or("?").to_owned(),
        );
        if got != (want_uri.to_owned(), want_host.to_owned()) {
            failures.push(format!("{what}: {got:?}, want ({want_uri}, {want_host})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn header(name: &str, value: &str) -> pb::Header {
    pb::Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

#[test]
fn header_modifiers_remove_then_set_then_add() {
    let modifier = pb::HeaderModifier {
        set: vec![header("x-set", "new")],
        add: vec![header("x-add", "two")],
        remove: vec!["x-gone".to_owned(), "x-add".to_owned()],
    };
    let filters = compile(
        vec![
            Kind::RequestHeaderModifier(modifier.clone()),
            Kind::ResponseHeaderModifier(modifier),
        ],
        false,
    )
    .expect("filters");
    let mut request = parts("/", Some("svc"));
    for (name, value) in [
        ("x-set", "old"),
        ("x-set", "older"),
        ("x-add", "one"),
        ("x-gone", "1"),
        ("x-keep", "k"),
    ] {
        request.headers.append(name, value.parse().expect("value"));
    }
    let mut response = request.headers.clone();
    filters
        .apply_request(&mut request, &context(None))
        .expect("applied");
    filters.apply_response(&mut response);
    for headers in [&request.headers, &response] {
        let values = |name| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect::<Vec<_>>()
        };
        assert_eq!(values("x-set"), ["new"]);
        assert_eq!(values("x-add"), ["two"]);
        assert_eq!(values("x-gone"), Vec::<&str>::new());
        assert_eq!(values("x-keep"), ["k"]);
    }
}

#[test]
fn mirrors_say_which_backend_and_which_requests() {
    let mirror = |numerator, denominator| {
        Kind::RequestMirror(pb::Mirror {
            backend: Some(pb::Backend {
                service: "default/shadow.default.svc.cluster.local".to_owned(),
                port: 8080,
                ..pb::Backend::default()
            }),
            numerator,
            denominator,
        })
    };
    let filters = compile(vec![mirror(0, 0), mirror(25, 0), mirror(1, 3)], false).expect("mirrors");
    let [all, quarter, third] = filters.mirrors() else {
        panic!("{:?}", filters.mirrors())
    };
    assert_eq!(
        all.backend().service(),
        "default/shadow.default.svc.cluster.local"
    );
    assert_eq!(all.backend().port(), 8080);
    assert_eq!(
        [all.fraction(), quarter.fraction(), third.fraction()],
        [(100, 100), (25, 100), (1, 3)]
    );
    let sampled = |m: &super::Mirror| (0..m.fraction().1).filter(|r| m.sampled_at(*r)).count();
    assert_eq!(
        [sampled(all), sampled(quarter), sampled(third)],
        [100, 25, 1]
    );
    let mut rng = rand::rng();
    assert!((0..100).all(|_| all.sampled(&mut rng)));
}

#[test]
fn invalid_filters_are_rejected_naming_the_field() {
    let redirect = Kind::RequestRedirect(pb::Redirect::default());
    let rewrite = Kind::UrlRewrite(pb::Rewrite::default());
    let headers = |name: &str| {
        Kind::RequestHeaderModifier(pb::HeaderModifier {
            set: vec![header(name, "v")],
            ..pb::HeaderModifier::default()
        })
    };
    let status = |code| {
        Kind::RequestRedirect(pb::Redirect {
            status_code: code,
            ..pb::Redirect::default()
        })
    };
    let rows: Vec<(&str, Vec<Kind>, bool, &str)> = vec![
        (
            "redirect with rewrite",
            vec![redirect.clone(), rewrite.clone()],
            false,
            "spec.rules[0].filters[1]",
        ),
        (
            "two header modifiers",
            vec![headers("a"), headers("b")],
            false,
            "spec.rules[0].filters[1]",
        ),
        (
            "a bad header name",
            vec![headers("a b")],
            false,
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].name",
        ),
        (
            "status 200",
            vec![status(200)],
            false,
            "spec.rules[0].filters[0].requestRedirect.statusCode",
        ),
        (
            "ReplacePrefixMatch without a prefix match",
            vec![Kind::UrlRewrite(pb::Rewrite {
                path: prefix("/x"),
                ..pb::Rewrite::default()
            })],
            false,
            "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch",
        ),
        (
            "a relative full path",
            vec![Kind::UrlRewrite(pb::Rewrite {
                path: full("x"),
                ..pb::Rewrite::default()
            })],
            true,
            "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath",
        ),
        (
            "a hostname with a port",
            vec![Kind::UrlRewrite(pb::Rewrite {
                hostname: "a:80".into(),
                ..pb::Rewrite::default()
            })],
            false,
            "spec.rules[0].filters[0].urlRewrite.hostname",
        ),
        (
            "a bad scheme",
            vec![Kind::RequestRedirect(pb::Redirect {
                scheme: "ftp".into(),
                ..pb::Redirect::default()
            })],
            false,
            "spec.rules[0].filters[0].requestRedirect.scheme",
        ),
        (
            "a mirror over 100%",
            vec![Kind::RequestMirror(pb::Mirror {
                backend: Some(pb::Backend {
                    service: "a/b".into(),
                    port: 1,
                    ..pb::Backend::default()
                }),
                numerator: 3,
                denominator: 2,
            })],
            false,
            "spec.rules[0].filters[0].requestMirror.fraction",
        ),
    ];
    let mut failures = Vec::new();
    for (what, kinds, prefix_only, field) in rows {
        match compile(kinds, prefix_only) {
            Err((got, _)) if got == field => {}
            other => failures.push(format!("{what}: {other:?}, want an error at {field}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        compile(vec![redirect], false)
            .map(|f| f.redirect().map(super::Redirect::status))
            .ok()
            .flatten(),
        Some(StatusCode::FOUND)
    );
}
