//! The dashboard's HTTP surface: the page and its assets (compiled into the binary), and
//! the JSON data API the page polls.
//!
//! | path | answer |
//! |---|---|
//! | `/` , `/app.js`, `/traces.js`, `/app.css` | the single-page app |
//! | `/api/view` | everything below in one object (what the page reads) |
//! | `/api/graph` | nodes and edges with rates, success, latency, bytes, mTLS, denials |
//! | `/api/proxies` | proxies with sync state, metrics address, reachability |
//! | `/api/workloads` | workloads with identity, node, enrollment, waypoint, policies |
//! | `/api/findings` | analysis findings, config errors, warnings, status conditions |
//! | `/api/events` | denials per policy and recent events |
//! | `/api/traces` | recent request traces, their spans joined by trace id |
//! | `/api/authz?to=NS/POD&port=N&from=SPIFFE-ID\|plaintext[&method=M&path=P&header=N:V]` | `weft x authz check`'s answer (the waypoint's L7 one too) |

use crate::collector::Collector;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use weft_control::authz::Request;
use weft_serve::{AdminRequest, Page, Router};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const TRACES_JS: &str = include_str!("../assets/traces.js");

/// The page, its assets and the data API over `collector`'s latest view.
#[must_use]
pub fn router(collector: &Arc<Collector>) -> Router {
    let asset = |content_type: &'static str, body: &'static str| {
        move |_: AdminRequest| Page {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
        }
    };
    let view = |part: fn(&crate::View) -> serde_json::Value| {
        let collector = Arc::clone(collector);
        move |_: AdminRequest| Page::json(&part(&collector.view()))
    };
    let authz = Arc::clone(collector);
    Router::new()
        .page("/", asset("text/html; charset=utf-8", INDEX_HTML))
        .page("/app.js", asset("text/javascript; charset=utf-8", APP_JS))
        .page("/app.css", asset("text/css; charset=utf-8", APP_CSS))
        .page(
            "/traces.js",
            asset("text/javascript; charset=utf-8", TRACES_JS),
        )
        .page("/api/view", view(|v| json!(v)))
        .page("/api/graph", view(|v| json!(v.graph)))
        .page(
            "/api/proxies",
            view(|v| json!({"control": v.control, "proxies": v.proxies})),
        )
        .page("/api/workloads", view(|v| json!(v.workloads)))
        .page("/api/findings", view(|v| json!(v.findings)))
        .page(
            "/api/events",
            view(|v| json!({"denials": v.denials, "events": v.events})),
        )
        .page("/api/traces", view(|v| json!(v.traces)))
        .page("/api/authz", move |request| authz_check(&authz, &request))
}

fn authz_check(collector: &Collector, request: &AdminRequest) -> Page {
    let param = |name: &str| percent_decode(request.query.get(name).map_or("", String::as_str));
    let (to, port, from) = (param("to"), param("port"), param("from"));
    let bad = |reason: String| Page::with_status(StatusCode::BAD_REQUEST, format!("{reason}\n"));
    let Ok(port) = port.parse::<u16>() else {
        return bad(format!("port {port:?}: not a port number (0-65535)"));
    };
    let (method, path, header) = (param("method"), param("path"), param("header"));
    let headers = match parse_header(&header) {
        Ok(headers) => headers,
        Err(reason) => return bad(reason),
    };
    let http_request = Request {
        method: if method.is_empty() { "GET" } else { &method },
        path: if path.is_empty() { "/" } else { &path },
        service: None,
        host: None,
        headers: &headers,
        request_principal: None,
    };
    match collector.mesh().check(&to, port, &from, &http_request) {
        Ok(answer) => Page::json(&answer),
        Err(err) => bad(err),
    }
}

/// The `header` parameter, `NAME: VALUE` or `NAME=VALUE` (empty: no header).
fn parse_header(text: &str) -> Result<http::HeaderMap, String> {
    let mut headers = http::HeaderMap::new();
    if text.trim().is_empty() {
        return Ok(headers);
    }
    let (name, value) = text
        .split_once([':', '='])
        .ok_or_else(|| format!("header {text:?}: expected NAME: VALUE"))?;
    let name = http::HeaderName::try_from(name.trim())
        .map_err(|err| format!("header {text:?}: name {name:?}: {err}"))?;
    let value = http::HeaderValue::try_from(value.trim())
        .map_err(|err| format!("header {text:?}: value {value:?}: {err}"))?;
    headers.insert(name, value);
    Ok(headers)
}

/// Decodes `%XX` escapes and `+` (a query string's space); invalid escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_keeps_invalid_ones() {
        assert_eq!(
            percent_decode("spiffe%3A%2F%2Fcluster.local%2Fns%2Fa"),
            "spiffe://cluster.local/ns/a"
        );
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
    }
}
