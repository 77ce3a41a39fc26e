//! Route matching and precedence as tables: each row is a set of routes (YAML parsed by
//! weft-api, converted to the wire form by `from_api`), a request, and the rule expected to
//! win, written `namespace/name#rule.match` (`404` when nothing matches). Rows follow the
//! order of the spec's precedence steps.

use super::{RequestView, RouteError, RouteKind, RouteTable};
use crate::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::path::Path;
use weft_api::Object;

/// One route as YAML: `id` is `name` or `namespace/name`, `spec` the flow-style spec body
/// after `parentRefs`.
pub(crate) fn route(kind: &str, id: &str, created: Option<&str>, spec: &str) -> String {
    let (namespace, name) = id.split_once('/').unwrap_or(("default", id));
    let created = created.map_or(String::new(), |t| format!(", creationTimestamp: \"{t}\""));
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n\
         metadata: {{name: {name}, namespace: {namespace}{created}}}\n\
         spec: {{parentRefs: [{{group: \"\", kind: Service, name: svc}}], {spec}}}\n---\n"
    )
}

pub(crate) fn http(id: &str, spec: &str) -> String {
    route("HTTPRoute", id, None, spec)
}

fn http_at(id: &str, created: &str, spec: &str) -> String {
    route("HTTPRoute", id, Some(created), spec)
}

pub(crate) fn grpc(id: &str, spec: &str) -> String {
    route("GRPCRoute", id, None, spec)
}

fn grpc_at(id: &str, created: &str, spec: &str) -> String {
    route("GRPCRoute", id, Some(created), spec)
}

/// Parses the routes of a row; `strict` fails the test on any finding.
pub(crate) fn parse(routes: &[String], strict: bool) -> Vec<Object> {
    let loaded = weft_api::parse_manifests(&routes.concat(), Path::new("row.yaml"));
    let errors: Vec<_> = loaded.findings.iter().map(ToString::to_string).collect();
    assert!(!strict || errors.is_empty(), "{errors:#?}");
    loaded.objects.into_iter().map(|o| o.object).collect()
}

/// Resolves every reference to `<namespace>/<name>.<namespace>.svc.cluster.local`.
pub(crate) struct ClusterLocal;

impl BackendResolver for ClusterLocal {
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String> {
        let BackendTarget {
            namespace, name, ..
        } = target;
        Ok(format!("{namespace}/{name}.{namespace}.svc.cluster.local"))
    }
}

/// The table of the routes among `objects`, and every error: the converter's (in object
/// order), then the table's.
fn table(objects: &[Object]) -> (RouteTable, Vec<RouteError>) {
    let converted = objects.iter().filter_map(|o| match o {
        Object::HttpRoute(r) => Some(http_route(r, None, &ClusterLocal)),
        Object::GrpcRoute(r) => Some(grpc_route(r, None, &ClusterLocal)),
        _ => None,
    });
    let mut errors = Vec::new();
    let wire: Vec<_> = converted
        .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
        .collect();
    let table = RouteTable::new(&wire);
    errors.extend_from_slice(table.errors());
    (table, errors)
}

/// Selects for `request` (`METHOD host path`, plus headers) and renders the winner.
fn select(table: &RouteTable, request: &str, headers: &[(&str, &str)]) -> String {
    let mut parts = request.splitn(3, ' ');
    let (Some(method), Some(host), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad request line {request:?}")
    };
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        map.append(name, HeaderValue::from_str(value).expect("header value"));
    }
    let view = RequestView {
        method: &method,
        host,
        path,
        headers: &map,
    };
    table.select(&view).map_or("404".to_owned(), |s| {
        format!(
            "{}/{}#{}.{}",
            s.route.namespace,
            s.route.name,
            s.rule.index(),
            s.matched
        )
    })
}

/// A row: what it shows, the routes, the request, its headers, the expected winner.
type Row<'a> = (
    &'a str,
    Vec<String>,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
);

fn check(rows: Vec<Row<'_>>) {
    let mut failures = Vec::new();
    for (what, routes, request, headers, want) in rows {
        let got = select(&table(&parse(&routes, true)).0, request, headers);
        if got != want {
            failures.push(format!("{what}: {request} -> {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc")];

fn prefix(value: &str) -> String {
    format!("rules: [{{matches: [{{path: {{type: PathPrefix, value: \"{value}\"}}}}]}}]")
}

fn exact(value: &str) -> String {
    format!("rules: [{{matches: [{{path: {{type: Exact, value: \"{value}\"}}}}]}}]")
}

mod grpc_routes;
mod http_routes;

#[test]
fn http_and_grpc_routes_with_intersecting_hostnames_keep_the_oldest() {
    let routes = vec![
        http_at("web", "2024-01-01T00:00:00Z", &prefix("/")),
        grpc_at(
            "rpc",
            "2023-01-01T00:00:00Z",
            "hostnames: [\"*.test\"], rules: [{}]",
        ),
    ];
    let (table, errors) = table(&parse(&routes, true));
    assert_eq!(
        select(&table, "POST a.test /x.Y/Z", GRPC),
        "default/rpc#0.0"
    );
    assert_eq!(select(&table, "GET a.test /", &[]), "404");
    let [error] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!(
        (error.route.kind, error.route.name.as_str()),
        (RouteKind::Http, "web")
    );
    assert_eq!(error.field, "spec.hostnames");
}

#[test]
fn an_invalid_regex_rejects_only_its_route_and_names_the_field() {
    let routes = vec![
        http(
            "bad",
            "rules: [{}, {matches: [{path: {value: /}}, {path: {type: RegularExpression, value: '/(unclosed'}}]}]",
        ),
        grpc(
            "badrpc",
            "hostnames: [rpc.test], rules: [{matches: [{method: {type: RegularExpression, method: '*'}}]}]",
        ),
        http("good", &prefix("/ok")),
    ];
    let (table, errors) = table(&parse(&routes, false));
    assert_eq!(select(&table, "GET svc /ok", &[]), "default/good#0.0");
    assert_eq!(select(&table, "GET svc /other", &[]), "404");
    let fields: Vec<_> = errors
        .iter()
        .map(|e| format!("{} {}", e.route, e.field))
        .collect();
    assert_eq!(
        fields,
        [
            "HTTPRoute default/bad spec.rules[1].matches[1].path.value",
            "GRPCRoute default/badrpc spec.rules[0].matches[0].method.method",
        ]
    );
}

#[test]
fn selected_carries_the_rule_through() {
    let routes = vec![http(
        "r",
        "rules: [{name: main, backendRefs: [{name: b, port: 8080, weight: 3}], filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}}]}]",
    )];
    let objects = parse(&routes, true);
    let (table, _) = table(&objects);
    let map = HeaderMap::new();
    let view = RequestView {
        method: &Method::GET,
        host: "svc",
        path: "/",
        headers: &map,
    };
    let selected = table.select(&view).expect("selected");
    assert_eq!(selected.rule.name(), Some("main"));
    let [backend] = selected.rule.backends() else {
        panic!("{:?}", selected.rule.backends())
    };
    assert_eq!(
        (backend.service(), backend.port(), backend.weight()),
        ("default/b.default.svc.cluster.local", 8080, 3)
    );
    let (mut parts, ()) = http::Request::new(()).into_parts();
    let verdict =
        (selected.rule.filters()).apply_request(&mut parts, &selected.context("http", 80));
    assert_eq!(verdict, Ok(crate::RequestVerdict::Forward));
    assert_eq!(parts.headers["x"], "y");
    assert_eq!(selected.route.to_string(), "HTTPRoute default/r");
    assert_eq!(selected.matched_prefix, Some(""));
}
