//! Request and response heads as the waypoint and gateway rewrite them: `x-request-id`
//! added when absent, `x-forwarded-proto` added when absent (a tunnel carries plain HTTP)
//! or, at a gateway, set to the client connection's scheme, the client's address appended
//! to `x-forwarded-for` at a gateway,
//! hop-by-hop headers dropped (a WebSocket upgrade keeps only `Connection: upgrade` and
//! `Upgrade: websocket`; an h2c upgrade is forwarded as a plain request), the URI in the upstream's form
//! (origin-form with `Host` for HTTP/1.1, absolute for HTTP/2), the original client address
//! from `X-Forwarded-For` per the trusted hops, and upgraded connections spliced.

use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::conn::Conn;
use super::forward::Head;
use super::target::Target;
use crate::Role;
use crate::telemetry::AccessEntry;

const X_REQUEST_ID: &str = "x-request-id";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const HTTP2_SETTINGS: &str = "http2-settings";

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Adds `x-request-id` when absent and `x-forwarded-proto: <scheme>` when absent, or
/// always at the `edge` (a gateway: the client's claim is replaced by what it spoke).
pub(crate) fn prepare(headers: &mut HeaderMap, scheme: &'static str, edge: bool) {
    if !headers.contains_key(X_REQUEST_ID)
        && let Ok(id) = HeaderValue::from_maybe_shared(Bytes::from(request_id()))
    {
        headers.insert(X_REQUEST_ID, id);
    }
    if edge || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
}

/// Appends `client` to `x-forwarded-for` (a gateway, after reading the original client):
/// one value, the earlier ones joined with `, ` as they came (bytes, so a line with a
/// non-ASCII byte keeps its place and its trusted entries).
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut value = Vec::new();
    for earlier in headers.get_all(X_FORWARDED_FOR) {
        value.extend_from_slice(earlier.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(client.to_string().as_bytes());
    if let Ok(joined) = HeaderValue::from_bytes(&value) {
        headers.insert(X_FORWARDED_FOR, joined);
    }
}

/// A random version-4 UUID, the form `x-request-id` takes.
fn request_id() -> String {
    weft_l7::trace::uuid_v4(&mut rand::rng())
}

/// What an HTTP/1.1 request asks to upgrade to (`Connection: upgrade` + `Upgrade`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// No upgrade (an `Upgrade` header without `Connection: upgrade` is only hop-by-hop).
    None,
    /// `websocket`: forwarded and, on a 101, spliced.
    WebSocket,
    /// `h2c`: its headers are dropped and the request forwarded as a plain one.
    H2c,
    /// Anything else (the `Upgrade` value): refused.
    Other(String),
}

/// What `headers` ask to upgrade to; an h2c upgrade's `Upgrade` and `HTTP2-Settings`
/// headers are removed on the way (the `Connection` tokens go with the hop-by-hop ones).
pub(crate) fn upgrade(headers: &mut HeaderMap) -> Upgrade {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut values = headers.get_all(header::UPGRADE).iter();
    let (Some(value), true) = (values.next(), connection_upgrade) else {
        return Upgrade::None;
    };
    let single = values.next().is_none();
    let value = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
    if single && value.eq_ignore_ascii_case("websocket") {
        Upgrade::WebSocket
    } else if single && value.eq_ignore_ascii_case("h2c") {
        headers.remove(header::UPGRADE);
        headers.remove(HTTP2_SETTINGS);
        Upgrade::H2c
    } else {
        Upgrade::Other(value)
    }
}

/// True for gRPC (`content-type: application/grpc...`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// True for gRPC proper, which needs HTTP/2 (gRPC-Web travels over HTTP/1.1 as well).
pub(crate) fn needs_h2(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    is_grpc(headers) && !content_type.is_some_and(|v| v.starts_with(b"application/grpc-web"))
}

/// The original client: the entry `trusted_hops` from the right of `X-Forwarded-For`
/// (the address the outermost trusted proxy saw); else the caller's own address.
pub(crate) fn client_ip(headers: &HeaderMap, trusted_hops: u32, caller: IpAddr) -> IpAddr {
    if trusted_hops == 0 {
        return caller;
    }
    // Split as bytes: a line with a non-ASCII byte in a client-written entry must not drop
    // the entries trusted proxies appended to it.
    let entries: Vec<&[u8]> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
    entries
        .len()
        .checked_sub(hops)
        .and_then(|index| std::str::from_utf8(entries[index]).ok()?.parse().ok())
        .unwrap_or(caller)
}

/// The access-log fields known when the request arrives.
pub(crate) fn access_entry(
    parts: &Parts,
    target: &Target,
    h2: bool,
    conn: &Conn,
    role: Role,
) -> AccessEntry {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    AccessEntry {
        method: parts.method.as_str().to_owned(),
        authority: target.authority().to_owned(),
        path: target.path.clone(),
        protocol: if h2 { "HTTP/2" } else { "HTTP/1.1" },
        flags: "-",
        request_id: header(X_REQUEST_ID).unwrap_or("-").to_owned(),
        trace_id: header("traceparent").and_then(crate::telemetry::trace_id),
        source_principal: conn.principal(),
        remote_ip: conn.source_ip().to_string(),
        reporter: role.reporter(),
        ..AccessEntry::default()
    }
}

/// The head to send upstream: the request's `method`, `uri` and `headers` (taken, not
/// copied); an HTTP/1.1 request in origin form keeps its URI and a `Host` that already
/// names the authority.
pub(crate) fn head(
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    target: &Target,
    h2: bool,
    upgrade: bool,
) -> Head {
    strip_hop_by_hop(&mut headers);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let authority = target.authority();
    let uri = if h2 {
        headers.remove(header::HOST);
        let absolute = format!("http://{authority}{}", target.path);
        absolute.parse().unwrap_or_else(|_| Uri::from_static("/"))
    } else {
        if !names_only(&headers, authority)
            && let Ok(host) = HeaderValue::from_str(authority)
        {
            headers.insert(header::HOST, host);
        }
        let same_path =
            uri.path_and_query().map(http::uri::PathAndQuery::as_str) == Some(target.path.as_str());
        if uri.authority().is_none() && same_path {
            uri
        } else {
            target
                .path
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"))
        }
    };
    Head {
        method,
        uri,
        headers,
        h2,
        upgrade,
    }
}

/// Whether the request has exactly one `Host` and it is `authority`.
fn names_only(headers: &HeaderMap, authority: &str) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    hosts.next().is_some_and(|host| host == authority) && hosts.next().is_none()
}

/// Drops hop-by-hop headers (and those the `Connection` header names, except `Host`, which
/// is never one).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        if name == "host" || (name == "te" && headers.get("te").is_some_and(|v| v == "trailers")) {
            continue;
        }
        headers.remove(name);
    }
}

/// A mirrored copy carries no body.
pub(crate) fn for_mirror(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
}

/// Copies bytes both ways between the client's and the backend's upgraded connections.
pub(crate) fn splice(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, server) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
            tracing::debug!(%error, "upgraded connection ended");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_up_to_the_trusted_hops() {
        let caller: IpAddr = "10.0.0.9".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("3.3.3.3"));
        let ip = |hops| client_ip(&headers, hops, caller).to_string();
        assert_eq!(ip(0), "10.0.0.9");
        assert_eq!(ip(1), "3.3.3.3");
        assert_eq!(ip(3), "1.1.1.1");
        assert_eq!(ip(4), "10.0.0.9", "fewer entries than hops: the caller");
        // A client-written entry with a non-ASCII byte on the line a trusted balancer
        // appended to: the balancer's entry still counts (the line used to be dropped).
        let mut headers = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"1.1.1.1\xff, 198.51.100.7").unwrap();
        headers.append(X_FORWARDED_FOR, line);
        assert_eq!(client_ip(&headers, 1, caller).to_string(), "198.51.100.7");
        assert_eq!(
            client_ip(&headers, 2, caller),
            caller,
            "unreadable: the caller"
        );
        append_forwarded_for(&mut headers, caller);
        assert_eq!(client_ip(&headers, 2, caller).to_string(), "198.51.100.7");
    }

    #[test]
    fn the_edge_sets_the_scheme_and_appends_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        prepare(&mut headers, "http", true);
        append_forwarded_for(&mut headers, "10.0.0.9".parse().unwrap());
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_FOR], "1.1.1.1, 10.0.0.9");
        let mut inside = HeaderMap::new();
        inside.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        prepare(&mut inside, "http", false);
        assert_eq!(
            inside[X_FORWARDED_PROTO], "https",
            "a tunnel keeps the claim"
        );
    }

    #[test]
    fn request_ids_are_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private, Host"),
        );
        headers.insert("host", HeaderValue::from_static("x.example"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<_> = headers.keys().map(http::HeaderName::as_str).collect();
        assert_eq!(names, ["te", "host", "x-kept"]);
    }
}
