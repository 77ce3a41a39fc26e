//! The converter: a route written with every part becomes the expected wire route, and
//! routes the spec rejects (or weft does not support) are errors naming the field.

use super::{BackendResolver, BackendTarget, grpc_route, http_route};
use crate::routes::tests::{grpc, http, parse};
use weft_api::Object;
use weft_proto::l7::{self as pb, MatchType, filter::Kind};

/// Resolves Services in `default` and `shop`; anything else is unresolved.
struct Resolver;

impl BackendResolver for Resolver {
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String> {
        match (target.group, target.kind, target.namespace) {
            ("", "Service", ns @ ("default" | "shop")) => {
                Ok(format!("{ns}/{}.{ns}.svc.cluster.local", target.name))
            }
            (group, kind, ns) => Err(format!("{group}/{kind} {ns}/{} not found", target.name)),
        }
    }
}

fn convert(yaml: &str) -> Result<pb::Route, super::RouteError> {
    let objects = parse(&[yaml.to_owned()], false);
    match &objects[0] {
        Object::HttpRoute(route) => http_route(route, Some(9080), &Resolver),
        Object::GrpcRoute(route) => grpc_route(route, None, &Resolver),
        other => panic!("not a route: {other:?}"),
    }
}

#[test]
fn an_http_route_becomes_its_wire_form() {
    let route = convert(&http(
        "shop/reviews",
        "hostnames: [reviews.shop], rules: [\
         {name: split, backendRefs: [{name: v1, port: 9080, weight: 90}, {name: v2, namespace: other, port: 9080}], \
          filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}, percent: 5}}], \
          timeouts: {request: 2s, backendRequest: 500ms}, retry: {codes: [503]}}, \
         {matches: [{path: {type: Exact, value: /x}, method: POST, headers: [{name: a, value: b}], \
          queryParams: [{type: RegularExpression, name: q, value: '[0-9]+'}]}]}]",
    ))
    .expect("converted");
    assert_eq!(
        (route.namespace.as_str(), route.name.as_str(), route.port),
        ("shop", "reviews", 9080)
    );
    assert_eq!(route.hostnames, ["reviews.shop"]);
    let [split, exact] = route.rules.as_slice() else {
        panic!("{:?}", route.rules)
    };
    assert_eq!(split.name, "split");
    assert!(
        split.matches.is_empty(),
        "a rule without matches stays without"
    );
    let backends: Vec<_> = split
        .backends
        .iter()
        .map(|b| (b.service.as_str(), b.port, b.weight, b.unresolved.as_str()))
        .collect();
    assert_eq!(
        backends,
        [
            ("shop/v1.shop.svc.cluster.local", 9080, 90, ""),
            ("other/v2", 9080, 1, "/Service other/v2 not found"),
        ]
    );
    let Some(Kind::RequestMirror(mirror)) = &split.filters[0].kind else {
        panic!("{:?}", split.filters)
    };
    assert_eq!((mirror.numerator, mirror.denominator), (5, 100));
    assert_eq!(
        mirror.backend.as_ref().map(|b| b.service.as_str()),
        Some("shop/shadow.shop.svc.cluster.local")
    );
    assert_eq!(
        (split.request_timeout_ms, split.backend_request_timeout_ms),
        (2_000, 500)
    );
    let retry = split.retry.as_ref().expect("retry");
    assert_eq!(
        (retry.attempts, retry.codes.as_slice(), retry.backoff_ms),
        (2, [503].as_slice(), 25)
    );
    let m = &exact.matches[0];
    assert_eq!(
        m.path,
        Some(pb::PathMatch {
            r#type: MatchType::Exact.into(),
            value: "/x".into()
        })
    );
    assert_eq!(m.method, "POST");
    assert_eq!(
        (m.headers[0].name.as_str(), m.headers[0].r#type()),
        ("a", MatchType::Exact)
    );
    assert_eq!(
        (m.query_params[0].value.as_str(), m.query_params[0].r#type()),
        ("[0-9]+", MatchType::Regex)
    );
}

#[test]
fn a_grpc_route_becomes_its_wire_form() {
    let route = convert(&grpc(
        "rpc",
        "rules: [{matches: [{method: {service: shop.Cart, method: Add}}, {headers: [{name: x, value: y}]}], \
         backendRefs: [{name: cart, port: 50051}]}]",
    ))
    .expect("converted");
    assert_eq!(route.kind(), pb::route::Kind::Grpc);
    let rule = &route.rules[0];
    let grpc = rule.matches[0].grpc.as_ref().expect("method match");
    assert_eq!(
        (grpc.service.as_str(), grpc.method.as_str(), grpc.r#type()),
        ("shop.Cart", "Add", MatchType::Exact)
    );
    assert_eq!(
        (rule.matches[1].grpc.as_ref(), rule.matches[1].headers.len()),
        (None, 1)
    );
    assert_eq!(
        rule.backends[0].service,
        "default/cart.default.svc.cluster.local"
    );
}

#[test]
fn invalid_or_unsupported_routes_are_errors_naming_the_field() {
    let rule = |body: &str| http("bad", &format!("rules: [{body}]"));
    let backend = "backendRefs: [{name: b, port: 80}]";
    let rows = [
        (
            rule("{timeouts: {request: soon}}"),
            "spec.rules[0].timeouts.request",
        ),
        (
            rule("{timeouts: {request: 1s, backendRequest: 2s}}"),
            "spec.rules[0].timeouts.backendRequest",
        ),
        (
            rule("{retry: {codes: [200]}}"),
            "spec.rules[0].retry.codes[0]",
        ),
        (
            rule("{retry: {backoff: later}}"),
            "spec.rules[0].retry.backoff",
        ),
        (
            rule("{backendRefs: [{name: b}]}"),
            "spec.rules[0].backendRefs[0].port",
        ),
        (
            rule("{sessionPersistence: {sessionName: s, idleTimeout: 0s}}"),
            "spec.rules[0].sessionPersistence.idleTimeout",
        ),
        (
            rule("{sessionPersistence: {cookieConfig: {lifetimeType: Permanent}}}"),
            "spec.rules[0].sessionPersistence.absoluteTimeout",
        ),
        (
            rule(
                "{sessionPersistence: {type: Header, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}}",
            ),
            "spec.rules[0].sessionPersistence.cookieConfig",
        ),
        (
            rule("{sessionPersistence: {sessionName: 'a b'}}"),
            "spec.rules[0].sessionPersistence.sessionName",
        ),
        (
            rule(
                "{filters: [{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, urlRewrite: {}}]}",
            ),
            "spec.rules[0].filters[1]",
        ),
        (
            rule("{filters: [{type: RequestHeaderModifier, requestRedirect: {}}]}"),
            "spec.rules[0].filters[0].requestRedirect",
        ),
        (
            rule("{filters: [{type: RequestHeaderModifier}]}"),
            "spec.rules[0].filters[0].requestHeaderModifier",
        ),
        (
            rule("{filters: [{type: CORS, cors: {maxAge: 0}}]}"),
            "spec.rules[0].filters[0].cors.maxAge",
        ),
        (
            rule("{filters: [{type: CORS, cors: {allowOrigins: ['ftp://a.example']}}]}"),
            "spec.rules[0].filters[0].cors.allowOrigins[0]",
        ),
        (
            rule("{filters: [{type: CORS, cors: {}}, {type: CORS, cors: {}}]}"),
            "spec.rules[0].filters[1]",
        ),
        (
            rule(
                "{filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: a}}}]}",
            ),
            "spec.rules[0].filters[0].type",
        ),
        (
            rule(
                "{matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}",
            ),
            "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch",
        ),
        (
            rule(
                "{matches: [{path: {value: /a}}, {path: {value: /c}}], filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}",
            ),
            "spec.rules[0].filters[0].requestRedirect.path.replacePrefixMatch",
        ),
        (
            rule("{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath}}}]}"),
            "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath",
        ),
        (
            rule("{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 200}}]}"),
            "spec.rules[0].filters[0].requestRedirect.statusCode",
        ),
        (
            rule(
                "{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, percent: 5, fraction: {numerator: 1}}}]}",
            ),
            "spec.rules[0].filters[0].requestMirror.fraction",
        ),
        (
            rule(&format!(
                "{{{backend}}}, {{{backend}, filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: 'bad name', value: x}}]}}}}]}}"
            )),
            "spec.rules[1].filters[0].responseHeaderModifier.set[0].name",
        ),
        (
            rule(
                "{backendRefs: [{name: b, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: a, value: x}, {name: A, value: y}]}}]}]}",
            ),
            "spec.rules[0].backendRefs[0].filters[0].requestHeaderModifier.add[1].name",
        ),
        (
            grpc("rpc", "rules: [{matches: [{method: {type: Exact}}]}]"),
            "spec.rules[0].matches[0].method",
        ),
    ];
    let mut failures = Vec::new();
    for (yaml, field) in rows {
        match convert(&yaml) {
            Err(error) if error.field == field => {}
            other => failures.push(format!(
                "{yaml}\n  -> {other:?}\n  want an error at {field}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
