//! The Gateway API filters of a rule and of a backend, on the wire form: header
//! modifiers (set, add, remove), `RequestRedirect` (answered by the waypoint), `URLRewrite`
//! (hostname and path, `ReplaceFullPath` or `ReplacePrefixMatch`). Mirrors are sent by the
//! pipeline, which owns the request.

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use weft_proto::l7::{self as pb, filter::Kind, path_modifier};

use super::{Body, empty};

/// The parts of the request filters may change.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Host, without port.
    pub host: String,
    /// Port from the authority, if any.
    pub port: Option<u16>,
    /// Path with query.
    pub path: String,
}

/// Applies a header modifier (invalid names or values from config are skipped).
pub(crate) fn modify_headers(headers: &mut HeaderMap, modifier: &pb::HeaderModifier) {
    let parse = |h: &pb::Header| {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_str(&h.value).ok()?;
        Some((name, value))
    };
    for (name, value) in modifier.set.iter().filter_map(parse) {
        headers.insert(name, value);
    }
    for (name, value) in modifier.add.iter().filter_map(parse) {
        headers.append(name, value);
    }
    for name in &modifier.remove {
        headers.remove(name.as_str());
    }
}

/// Request-side filters of `filters` applied to `headers` and `target`; a redirect
/// answers instead.
pub(crate) fn apply_request(
    filters: &[pb::Filter],
    headers: &mut HeaderMap,
    target: &mut Target,
    matched_prefix: Option<&str>,
) -> Option<Response<Body>> {
    for filter in filters {
        match &filter.kind {
            Some(Kind::RequestHeaderModifier(m)) => modify_headers(headers, m),
            Some(Kind::RequestRedirect(r)) => return Some(redirect(r, target, matched_prefix)),
            Some(Kind::UrlRewrite(r)) => rewrite(r, target, matched_prefix),
            _ => {}
        }
    }
    None
}

/// Response-side filters of `filters` applied to `headers`.
pub(crate) fn apply_response(filters: &[pb::Filter], headers: &mut HeaderMap) {
    for filter in filters {
        if let Some(Kind::ResponseHeaderModifier(m)) = &filter.kind {
            modify_headers(headers, m);
        }
    }
}

/// The mirrors among `filters`.
pub(crate) fn mirrors(filters: &[pb::Filter]) -> impl Iterator<Item = &pb::Mirror> {
    filters.iter().filter_map(|f| match &f.kind {
        Some(Kind::RequestMirror(m)) => Some(m),
        _ => None,
    })
}

fn rewrite(rewrite: &pb::Rewrite, target: &mut Target, matched_prefix: Option<&str>) {
    if !rewrite.hostname.is_empty() {
        target.hostname_from(&rewrite.hostname);
    }
    if let Some(path) = &rewrite.path {
        target.path = replace_path(path, &target.path, matched_prefix);
    }
}

impl Target {
    fn hostname_from(&mut self, hostname: &str) {
        hostname.clone_into(&mut self.host);
        self.port = None;
    }

    /// `host[:port]`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

fn redirect(
    redirect: &pb::Redirect,
    target: &Target,
    matched_prefix: Option<&str>,
) -> Response<Body> {
    let scheme = if redirect.scheme.is_empty() {
        "http"
    } else {
        redirect.scheme.as_str()
    };
    let host = if redirect.hostname.is_empty() {
        &target.host
    } else {
        &redirect.hostname
    };
    let port = match u16::try_from(redirect.port).ok().filter(|p| *p != 0) {
        Some(port) => Some(port),
        // A scheme change drops the request's port; the scheme's well-known one is implied.
        None if redirect.scheme.is_empty() => target.port,
        None => None,
    };
    let port = port
        .filter(|p| !matches!((scheme, *p), ("http", 80) | ("https", 443)))
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = match &redirect.path {
        Some(modifier) => replace_path(modifier, &target.path, matched_prefix),
        None => target.path.clone(),
    };
    let status = u16::try_from(redirect.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::FOUND);
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    if let Ok(location) = HeaderValue::from_str(&format!("{scheme}://{host}{port}{path}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Applies a path modifier to `path` (its query string is kept).
fn replace_path(modifier: &pb::PathModifier, path: &str, matched_prefix: Option<&str>) -> String {
    let (only, query) = match path.find('?') {
        Some(at) => path.split_at(at),
        None => (path, ""),
    };
    let replaced = match &modifier.kind {
        Some(path_modifier::Kind::ReplaceFullPath(full)) => full.clone(),
        Some(path_modifier::Kind::ReplacePrefixMatch(prefix)) => {
            let matched = matched_prefix.unwrap_or("/").trim_end_matches('/');
            let rest = only.strip_prefix(matched).unwrap_or(only);
            join_path(prefix, rest)
        }
        None => only.to_owned(),
    };
    format!("{replaced}{query}")
}

/// `prefix` + `rest` with exactly one `/` between them (and `/` for an empty result).
fn join_path(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = rest.trim_start_matches('/');
    match (prefix.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> pb::PathModifier {
        pb::PathModifier {
            kind: Some(path_modifier::Kind::ReplacePrefixMatch(p.into())),
        }
    }

    #[test]
    fn prefix_replacement_keeps_the_rest_and_the_query() {
        let cases = [
            ("/v2", "/api/users?x=1", "/api", "/v2/users?x=1"),
            ("/", "/api/users", "/api", "/users"),
            ("/", "/api", "/api", "/"),
            ("/v2/", "/api/", "/api/", "/v2"),
        ];
        for (replacement, path, matched, expected) in cases {
            assert_eq!(
                replace_path(&prefix(replacement), path, Some(matched)),
                expected,
                "{replacement} {path} {matched}"
            );
        }
    }

    #[test]
    fn redirects_build_the_location() {
        let target = Target {
            host: "a.example".into(),
            port: Some(8080),
            path: "/old?q=1".into(),
        };
        let redirect_to = |r: pb::Redirect| {
            let response = redirect(&r, &target, Some("/old"));
            let location = response.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            (response.status().as_u16(), location)
        };
        assert_eq!(
            redirect_to(pb::Redirect::default()),
            (302, "http://a.example:8080/old?q=1".into())
        );
        assert_eq!(
            redirect_to(pb::Redirect {
                scheme: "https".into(),
                hostname: "b.example".into(),
                path: Some(prefix("/new")),
                status_code: 301,
                ..Default::default()
            }),
            (301, "https://b.example/new?q=1".into())
        );
    }

    #[test]
    fn header_modifiers_set_add_remove() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert("x-gone", HeaderValue::from_static("1"));
        let header = |n: &str, v: &str| pb::Header {
            name: n.into(),
            value: v.into(),
        };
        modify_headers(
            &mut headers,
            &pb::HeaderModifier {
                set: vec![header("x-a", "2")],
                add: vec![header("x-a", "3"), header("x-new", "4")],
                remove: vec!["x-gone".into()],
            },
        );
        let values: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["2", "3"]);
        assert_eq!(headers["x-new"], "4");
        assert!(!headers.contains_key("x-gone"));
    }
}
