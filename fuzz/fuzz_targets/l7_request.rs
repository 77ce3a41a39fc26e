//! An HTTP/1.1 request head as it lands at a waypoint or gateway: parsed with the parser
//! hyper uses, then taken through the L7 engine's request path over the routes of
//! `fuzz/routes.yaml` (every match kind and filter): route selection, request filters
//! (rewrites, redirects, header changes, CORS preflights), the weighted backend and its
//! filters, and the response header filters (CORS ones included).

#![no_main]

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;
use weft_api::Object;
use weft_l7::filters::RequestVerdict;
use weft_l7::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use weft_l7::routes::{RequestView, RouteTable};

static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    let loaded =
        weft_api::parse_manifests(include_str!("../routes.yaml"), Path::new("routes.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let wire: Vec<_> = loaded
        .objects
        .iter()
        .filter_map(|loaded| match &loaded.object {
            Object::HttpRoute(route) => Some(http_route(route, None, &ClusterLocal)),
            Object::GrpcRoute(route) => Some(grpc_route(route, None, &ClusterLocal)),
            _ => None,
        })
        .collect::<Result<_, _>>()
        .expect("routes convert");
    let table = RouteTable::new(&wire);
    assert!(table.errors().is_empty(), "{:#?}", table.errors());
    table
});

/// Every backend is `<namespace>/<name>.<namespace>.svc.cluster.local`.
struct ClusterLocal;

impl BackendResolver for ClusterLocal {
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String> {
        let BackendTarget {
            namespace, name, ..
        } = target;
        Ok(format!("{namespace}/{name}.{namespace}.svc.cluster.local"))
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&roll, head)) = bytes.split_first() else {
        return;
    };
    if let Some(mut parts) = parse_head(head) {
        route(&mut parts, u64::from(roll));
    }
});

/// The head as hyper would hand it over, `None` when hyper would answer 400.
fn parse_head(head: &[u8]) -> Option<Parts> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    let mut request = Request::builder()
        .method(Method::from_bytes(parsed.method?.as_bytes()).ok()?)
        .uri(parsed.path?.parse::<Uri>().ok()?);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        request = request.header(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    Some(request.body(()).ok()?.into_parts().0)
}

fn route(parts: &mut Parts, roll: u64) {
    let host = parts
        .uri
        .authority()
        .map(|authority| authority.host().to_owned())
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            Some(
                host.rsplit_once(':')
                    .map_or(host, |(name, _)| name)
                    .to_owned(),
            )
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let view = RequestView {
        method: &parts.method,
        host: &host,
        path: &path,
        headers: &parts.headers,
    };
    let Some(selected) = TABLE.select(&view) else {
        return;
    };
    let context = selected.context("http", 80);
    let rule = selected.rule;
    match rule.filters().apply_request(parts, &context) {
        Ok(RequestVerdict::Forward) => {}
        Ok(RequestVerdict::Redirect(redirect)) => {
            let _ = redirect.header();
            return;
        }
        Ok(RequestVerdict::Preflight(_)) | Err(_) => return,
    }
    if let Ok(backend) = rule.pick_backend_at(roll) {
        let _ = backend.filters().apply_request(parts, &context);
        let mut response = HeaderMap::new();
        backend.filters().apply_response(&mut response);
        rule.filters().apply_response(&mut response);
        let origin = rule.filters().cors_origin(&parts.headers);
        rule.filters().apply_cors(origin.as_ref(), &mut response);
    }
    let _ = (rule.timeouts(), rule.retry());
}
