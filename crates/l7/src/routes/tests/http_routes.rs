//! HTTPRoute rows: the precedence steps in spec order, paths, headers, query parameters,
//! methods and hostnames.

use super::{check, exact, http, http_at, prefix};

#[test]
fn http_precedence_in_spec_order() {
    let foo_with =
        |extra: &str| format!("rules: [{{matches: [{{path: {{value: /foo}}, {extra}}}]}}]");
    check(vec![
        (
            "hostname: an exact hostname beats a wildcard and no hostname",
            vec![
                http("none", &exact("/a")),
                http(
                    "wild",
                    &format!("hostnames: [\"*.example.com\"], {}", prefix("/")),
                ),
                http(
                    "host",
                    &format!("hostnames: [api.example.com], {}", prefix("/")),
                ),
            ],
            "GET api.example.com /a",
            &[],
            "default/host#0.0",
        ),
        (
            "hostname: the longer wildcard wins",
            vec![
                http("short", &format!("hostnames: [\"*.com\"], {}", exact("/a"))),
                http(
                    "long",
                    &format!("hostnames: [\"*.example.com\"], {}", prefix("/")),
                ),
            ],
            "GET api.example.com /a",
            &[],
            "default/long#0.0",
        ),
        (
            "path: Exact beats a prefix of the same path in an older route",
            vec![
                http_at("prefix", "2020-01-01T00:00:00Z", &prefix("/foo/bar")),
                http_at("exact", "2024-01-01T00:00:00Z", &exact("/foo/bar")),
            ],
            "GET svc /foo/bar",
            &[],
            "default/exact#0.0",
        ),
        (
            "path: the longest prefix wins",
            vec![
                http("short", &prefix("/foo")),
                http("long", &prefix("/foo/bar")),
            ],
            "GET svc /foo/bar/baz",
            &[],
            "default/long#0.0",
        ),
        (
            "path: a longer prefix beats a method match",
            vec![
                http("method", &foo_with("method: GET")),
                http("long", &prefix("/foo/b")),
            ],
            "GET svc /foo/b",
            &[],
            "default/long#0.0",
        ),
        (
            "method: a method match beats more header matches",
            vec![
                http(
                    "headers",
                    &foo_with("headers: [{name: a, value: \"1\"}, {name: b, value: \"2\"}]"),
                ),
                http("method", &foo_with("method: GET")),
            ],
            "GET svc /foo",
            &[("a", "1"), ("b", "2")],
            "default/method#0.0",
        ),
        (
            "headers: more header matches beat more query matches",
            vec![
                http(
                    "query",
                    &foo_with(
                        "headers: [{name: a, value: \"1\"}], queryParams: [{name: q, value: x}, {name: r, value: y}]",
                    ),
                ),
                http(
                    "headers",
                    &foo_with("headers: [{name: a, value: \"1\"}, {name: b, value: \"2\"}]"),
                ),
            ],
            "GET svc /foo?q=x&r=y",
            &[("a", "1"), ("b", "2")],
            "default/headers#0.0",
        ),
        (
            "query: more query matches win",
            vec![
                http("one", &foo_with("queryParams: [{name: q, value: x}]")),
                http(
                    "two",
                    &foo_with("queryParams: [{name: q, value: x}, {name: r, value: y}]"),
                ),
            ],
            "GET svc /foo?q=x&r=y",
            &[],
            "default/two#0.0",
        ),
        (
            "tie: the oldest route wins over a first name",
            vec![
                http_at("a", "2024-01-01T00:00:00Z", &prefix("/")),
                http_at("b", "2023-01-01T00:00:00Z", &prefix("/")),
            ],
            "GET svc /",
            &[],
            "default/b#0.0",
        ),
        (
            "tie: a route without creationTimestamp counts as newest",
            vec![
                http("a", &prefix("/")),
                http_at("z", "2024-01-01T00:00:00Z", &prefix("/")),
            ],
            "GET svc /",
            &[],
            "default/z#0.0",
        ),
        (
            "tie: same age, {namespace}/{name} alphabetically",
            vec![
                http_at("b-ns/a", "2024-01-01T00:00:00Z", &prefix("/")),
                http_at("a-ns/z", "2024-01-01T00:00:00Z", &prefix("/")),
            ],
            "GET svc /",
            &[],
            "a-ns/z#0.0",
        ),
        (
            "tie: the first matching rule in list order",
            vec![http(
                "r",
                "rules: [{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /foo}}]}, {matches: [{path: {value: /foo}}]}]",
            )],
            "GET svc /foo",
            &[],
            "default/r#1.0",
        ),
        (
            "tie: the first matching match within a rule",
            vec![http(
                "r",
                "rules: [{matches: [{path: {value: /x}}, {path: {value: /foo}}, {path: {value: /foo}}]}]",
            )],
            "GET svc /foo",
            &[],
            "default/r#0.1",
        ),
        (
            "a less specific match of a rule does not hide a better one of a later rule",
            vec![http(
                "r",
                "rules: [{matches: [{path: {value: /}}]}, {matches: [{path: {type: Exact, value: /foo}}]}]",
            )],
            "GET svc /foo",
            &[],
            "default/r#1.0",
        ),
    ]);
}

#[test]
fn http_paths() {
    let regex = |v: &str| {
        format!("rules: [{{matches: [{{path: {{type: RegularExpression, value: '{v}'}}}}]}}]")
    };
    let foo = || vec![http("foo", &prefix("/foo"))];
    check(vec![
        (
            "prefix matches itself",
            foo(),
            "GET svc /foo",
            &[],
            "default/foo#0.0",
        ),
        (
            "prefix matches with a trailing slash",
            foo(),
            "GET svc /foo/",
            &[],
            "default/foo#0.0",
        ),
        (
            "prefix matches a sub-path",
            foo(),
            "GET svc /foo/bar",
            &[],
            "default/foo#0.0",
        ),
        (
            "prefix matches whole segments only",
            foo(),
            "GET svc /foobar",
            &[],
            "404",
        ),
        (
            "the query is not part of the path",
            foo(),
            "GET svc /foo?x=/",
            &[],
            "default/foo#0.0",
        ),
        (
            "a trailing slash in the prefix is ignored",
            vec![http("slash", &prefix("/foo/"))],
            "GET svc /foo",
            &[],
            "default/slash#0.0",
        ),
        (
            "PathPrefix / matches everything",
            vec![http("root", &prefix("/"))],
            "GET svc /a/b",
            &[],
            "default/root#0.0",
        ),
        (
            "exact does not match a sub-path",
            vec![http("e", &exact("/foo"))],
            "GET svc /foo/",
            &[],
            "404",
        ),
        (
            "exact ignores the query",
            vec![http("e", &exact("/foo"))],
            "GET svc /foo?a=b",
            &[],
            "default/e#0.0",
        ),
        (
            "paths are case-sensitive",
            foo(),
            "GET svc /FOO",
            &[],
            "404",
        ),
        (
            "a rule without matches matches every request",
            vec![http("all", "rules: [{backendRefs: [{name: b, port: 80}]}]")],
            "DELETE other.example /any/thing?x",
            &[],
            "default/all#0.0",
        ),
        (
            "a match without path is PathPrefix /",
            vec![http("m", "rules: [{matches: [{method: PUT}]}]")],
            "PUT svc /x",
            &[],
            "default/m#0.0",
        ),
        (
            "regex matches the whole path",
            vec![http("re", &regex("/items/[0-9]+"))],
            "GET svc /items/42",
            &[],
            "default/re#0.0",
        ),
        (
            "regex is anchored at both ends",
            vec![http("re", &regex("/items/[0-9]+"))],
            "GET svc /items/42/x",
            &[],
            "404",
        ),
        (
            "regex ranks below every prefix (Istio's order)",
            vec![
                http("re", &regex("/items/[0-9]+")),
                http("root", &prefix("/")),
            ],
            "GET svc /items/42",
            &[],
            "default/root#0.0",
        ),
        (
            "the longer regex wins among regexes",
            vec![
                http("short", &regex("/i.*")),
                http("long", &regex("/items/.*")),
            ],
            "GET svc /items/42",
            &[],
            "default/long#0.0",
        ),
    ]);
}

#[test]
fn http_headers_query_and_method() {
    let rule = |m: &str| format!("rules: [{{matches: [{{{m}}}]}}]");
    let header = || vec![http("h", &rule("headers: [{name: X-Version, value: V1}]"))];
    let header_re = || {
        vec![http(
            "h",
            &rule("headers: [{name: x-v, type: RegularExpression, value: 'v[0-9]+'}]"),
        )]
    };
    let query = || vec![http("q", &rule("queryParams: [{name: mode, value: a b}]"))];
    let query_re = || {
        vec![http(
            "q",
            &rule("queryParams: [{name: id, type: RegularExpression, value: '[0-9]{3}'}]"),
        )]
    };
    check(vec![
        (
            "header names are case-insensitive",
            header(),
            "GET svc /",
            &[("x-version", "V1")],
            "default/h#0.0",
        ),
        (
            "header values are case-sensitive",
            header(),
            "GET svc /",
            &[("X-Version", "v1")],
            "404",
        ),
        (
            "a missing header does not match",
            header(),
            "GET svc /",
            &[],
            "404",
        ),
        (
            "a repeated header is matched as its joined values",
            header(),
            "GET svc /",
            &[("x-version", "V1"), ("x-version", "V2")],
            "404",
        ),
        (
            "header regex",
            header_re(),
            "GET svc /",
            &[("x-v", "v12")],
            "default/h#0.0",
        ),
        (
            "header regex is anchored",
            header_re(),
            "GET svc /",
            &[("x-v", "v12x")],
            "404",
        ),
        (
            "only the first of equivalent header names counts",
            vec![http(
                "h",
                &rule("headers: [{name: a, value: \"1\"}, {name: A, value: \"2\"}]"),
            )],
            "GET svc /",
            &[("a", "1")],
            "default/h#0.0",
        ),
        (
            "query exact, percent-decoded",
            query(),
            "GET svc /?mode=a%20b",
            &[],
            "default/q#0.0",
        ),
        (
            "query names are case-sensitive",
            query(),
            "GET svc /?Mode=a%20b",
            &[],
            "404",
        ),
        (
            "the first occurrence of a parameter counts",
            query(),
            "GET svc /?mode=x&mode=a%20b",
            &[],
            "404",
        ),
        (
            "query regex",
            query_re(),
            "GET svc /p?x=1&id=123",
            &[],
            "default/q#0.0",
        ),
        (
            "query regex is anchored",
            query_re(),
            "GET svc /p?id=1234",
            &[],
            "404",
        ),
        (
            "a missing parameter does not match",
            query_re(),
            "GET svc /p?x=123",
            &[],
            "404",
        ),
        (
            "method",
            vec![http("m", &rule("method: POST"))],
            "POST svc /",
            &[],
            "default/m#0.0",
        ),
        (
            "another method does not match",
            vec![http("m", &rule("method: POST"))],
            "GET svc /",
            &[],
            "404",
        ),
    ]);
}

#[test]
fn hostnames() {
    let wild = || {
        vec![http(
            "w",
            &format!("hostnames: [\"*.example.com\"], {}", prefix("/")),
        )]
    };
    let named = || {
        vec![http(
            "n",
            &format!("hostnames: [api.example.com], {}", prefix("/")),
        )]
    };
    check(vec![
        (
            "a wildcard matches one label",
            wild(),
            "GET a.example.com /",
            &[],
            "default/w#0.0",
        ),
        (
            "a wildcard matches several labels",
            wild(),
            "GET a.b.example.com /",
            &[],
            "default/w#0.0",
        ),
        (
            "a wildcard does not match the bare domain",
            wild(),
            "GET example.com /",
            &[],
            "404",
        ),
        (
            "a wildcard does not match another domain",
            wild(),
            "GET a.example.net /",
            &[],
            "404",
        ),
        (
            "the port of Host is ignored",
            named(),
            "GET api.example.com:8080 /",
            &[],
            "default/n#0.0",
        ),
        (
            "Host is case-insensitive",
            named(),
            "GET API.Example.COM /",
            &[],
            "default/n#0.0",
        ),
        (
            "another host does not match",
            named(),
            "GET web.example.com /",
            &[],
            "404",
        ),
        (
            "a route without hostnames matches any host",
            vec![http("any", &prefix("/"))],
            "GET 10.0.0.1:80 /",
            &[],
            "default/any#0.0",
        ),
        (
            "any of several hostnames",
            vec![http(
                "two",
                &format!("hostnames: [a.test, b.test], {}", prefix("/")),
            )],
            "GET b.test /",
            &[],
            "default/two#0.0",
        ),
    ]);
}
