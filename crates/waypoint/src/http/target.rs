//! Where a request is addressed, read once and in one canonical form that listener choice,
//! authorization, routing and the forwarded head all share:
//!
//! - the path is normalized as Istio's default (`pathNormalization: BASE`, Envoy's
//!   `normalize_path`) does it, after RFC 3986 sections 6.2.2 and 5.2.4: percent-encoded
//!   unreserved characters are decoded, the remaining escapes' hex digits uppercased and
//!   dot-segments removed (`%2F` and `%5C` stay encoded, slashes are not merged); the query
//!   is left as it is. A path that does not start with `/` (other than `*` of `OPTIONS`, or
//!   a `CONNECT` authority) is a 400.
//! - the host is lowercased, loses one trailing dot and an empty port (`x.example.:` is
//!   `x.example`); a numeric port is kept as the authority's port, anything else after the
//!   `:` is a 400.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Uri, header};

use super::local::Failure;

/// Where a request is addressed, as the pipeline reads it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Host, canonical, without port.
    pub host: String,
    /// Path with query.
    pub path: String,
    /// `host[:port]`, canonical, built once.
    authority: String,
}

impl Target {
    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request's host and path as they came, for the access log of a request refused
    /// before its target was read.
    pub fn unread(parts: &Parts) -> Self {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        let authority = parts.uri.authority().map(http::uri::Authority::as_str);
        let authority = authority.or(host).unwrap_or("-").to_owned();
        Self {
            host: authority.clone(),
            path: parts.uri.to_string(),
            authority,
        }
    }
}

/// Host, port and path of the request (`:authority` or `Host`, else the destination), the
/// host canonical; a 400 for a port that is not a number.
pub(crate) fn target(parts: &Parts, destination: SocketAddr) -> Result<Target, Failure> {
    let raw = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let host = parts.headers.get(header::HOST)?.to_str().ok()?;
            // An empty Host is how HTTP/1.1 says "no authority": the destination's.
            (!host.is_empty()).then(|| host.to_owned())
        })
        .unwrap_or_else(|| destination.to_string());
    let (host, port) = canonical_host(&raw).ok_or_else(|| {
        Failure::bad_request(&format!(
            "request host {raw:?}: not host[:port] (a port that is not a number, userinfo, or a \
             character no host name has)"
        ))
    })?;
    // The raw authority is kept when it is canonical already (the usual case): one
    // allocation fewer per request.
    let canonical_len = host.len() + port.map_or(0, |port| 1 + decimal_digits(port));
    let authority = if raw.len() == canonical_len && raw.starts_with(host.as_str()) {
        raw
    } else {
        match port {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    Ok(Target {
        host,
        path,
        authority,
    })
}

fn decimal_digits(number: u16) -> usize {
    number.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Lowercase host without one trailing dot, and its port (`None` when absent or empty);
/// `None` when what follows the last `:` of a name (or of `[v6]`) is not a port, when the
/// authority carries userinfo (`user@host`: a spelling policy and routes would not see as
/// the host), or when the host is neither a name (letters, digits, `-`, `.`, `_`, `~`) nor
/// an IP literal: a `/`, `?` or `#` in a Host header would otherwise become part of the
/// upstream request's path when the authority is written into its URI.
fn canonical_host(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = if port.is_empty() {
                None
            } else if port.bytes().all(|b| b.is_ascii_digit()) {
                Some(port.parse().ok()?)
            } else {
                return None;
            };
            (host, port)
        }
        _ => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if !is_host(host) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// A DNS-style name or an IPv4 address (`[A-Za-z0-9._~-]+`), or a bracketed IPv6 literal.
fn is_host(host: &str) -> bool {
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    match host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(literal) => literal.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.bytes().all(name_byte),
    }
}

/// Normalizes the request's path in place (the URI is rebuilt only when it changes); a
/// 400 for a path that is not absolute.
pub(crate) fn normalize(parts: &mut Parts) -> Result<(), Failure> {
    let path = parts.uri.path();
    if parts.method == Method::CONNECT
        || (parts.method == Method::OPTIONS && path == "*" && parts.uri.query().is_none())
    {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(Failure::bad_request(&format!(
            "request path {path:?}: it does not start with '/'"
        )));
    }
    if path.contains("%00") {
        // As Istio: an encoded NUL is refused, never decoded nor passed on.
        return Err(Failure::bad_request(&format!(
            "request path {path:?}: an encoded NUL (%00)"
        )));
    }
    let Cow::Owned(normal) = normalize_path(path) else {
        return Ok(());
    };
    let with_query = match parts.uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = Some(
        PathAndQuery::try_from(with_query)
            .map_err(|e| Failure::bad_request(&format!("request path: {e}")))?,
    );
    parts.uri =
        Uri::from_parts(uri).map_err(|e| Failure::bad_request(&format!("request URI: {e}")))?;
    Ok(())
}

/// `path` decoded where RFC 3986 allows (unreserved characters), its escapes uppercased,
/// a raw backslash taken for a slash (as Istio's BASE does: some servers read it so) and
/// its dot-segments removed; borrowed when already normal.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let mut decoded = decode_unreserved(path);
    if decoded.contains('\\') {
        decoded = Cow::Owned(decoded.replace('\\', "/"));
    }
    let has_dots = decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !has_dots {
        return decoded;
    }
    Cow::Owned(remove_dot_segments(&decoded))
}

/// Decodes `%xx` of unreserved characters, uppercases the other escapes; a `%` without two
/// hex digits stays as it is.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let escapes = bytes.iter().enumerate().filter(|(_, b)| **b == b'%');
    let needs_work = escapes.into_iter().any(|(i, _)| match escape(bytes, i) {
        Some(value) => unreserved(value) || bytes[i + 1..i + 3].iter().any(u8::is_ascii_lowercase),
        None => false,
    });
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape(bytes, i) {
            Some(value) if unreserved(value) => out.push(char::from(value)),
            Some(_) => out.push_str(&path[i..i + 3].to_ascii_uppercase()),
            None => {
                // Up to the next `%` (past this one when it starts a broken escape); `i`
                // is always on a character boundary: escapes are ASCII.
                let from = if bytes[i] == b'%' { i + 1 } else { i };
                let next = path[from..].find('%').map_or(bytes.len(), |at| from + at);
                out.push_str(&path[i..next]);
                i = next;
                continue;
            }
        }
        i += 3;
    }
    Cow::Owned(out)
}

/// The byte `%xx` at `at` encodes.
fn escape(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let hex = |i: usize| bytes.get(i).and_then(|b| char::from(*b).to_digit(16));
    let value = hex(at + 1)? * 16 + hex(at + 2)?;
    u8::try_from(value).ok()
}

/// RFC 3986 `unreserved`: ALPHA / DIGIT / `-` / `.` / `_` / `~`.
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 section 5.2.4 for an absolute path: `.` segments go, `..` removes the segment
/// before it (never above the root); a path ending in `.` or `..` ends with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                if index == last {
                    kept.push("");
                }
            }
            _ => kept.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_as_istio_base_does() {
        let cases = [
            ("/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2e%2E/admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%5cb/../c", "/c"),
            ("//a//b", "//a//b"),
            ("/a%zz%", "/a%zz%"),
            ("/a..b/.c", "/a..b/.c"),
            ("/~%7E%41", "/~~A"),
            // Raw non-ASCII bytes (obs-text in HTTP/1.1, UTF-8 in h2) right after an escape.
            ("/%41é", "/Aé"),
            ("/%e9é/%41", "/%E9é/A"),
            ("/é%zz%4", "/é%zz%4"),
            // A raw backslash is a slash (servers that read it so get no other path).
            ("/a\\b", "/a/b"),
            ("/public\\..\\admin", "/admin"),
            ("\\..\\admin", "/admin"),
        ];
        for (raw, normal) in cases {
            assert_eq!(normalize_path(raw), normal, "{raw}");
        }
        assert!(matches!(normalize_path("/a/b%2F"), Cow::Borrowed(_)));
    }

    #[test]
    fn hosts_are_canonical() {
        let cases = [
            ("X.Example", Some(("x.example", None))),
            ("x.example.", Some(("x.example", None))),
            ("x.example:", Some(("x.example", None))),
            ("x.example.:80", Some(("x.example", Some(80)))),
            ("x.example:0080", Some(("x.example", Some(80)))),
            ("[::1]:8080", Some(("[::1]", Some(8080)))),
            ("[::1]", Some(("[::1]", None))),
            ("x.example:http", None),
            ("x.example:99999", None),
            // RFC 9110 / 9113: no userinfo in an authority a proxy acts on.
            ("x@shop.example", None),
            ("x:y@shop.example:80", None),
            // What would turn into the upstream path once written into its URI.
            ("reviews/admin#", None),
            ("reviews?x=", None),
            ("reviews#frag", None),
            ("re views", None),
            ("reviews\\admin", None),
            ("[::1", None),
            ("[not-v6]:80", None),
            ("", None),
            ("10.0.0.1:8080", Some(("10.0.0.1", Some(8080)))),
        ];
        for (raw, canonical) in cases {
            let got = canonical_host(raw);
            let got = got.as_ref().map(|(h, p)| (h.as_str(), *p));
            assert_eq!(got, canonical, "{raw}");
        }
    }

    #[test]
    fn the_authority_is_canonical_whether_kept_or_rebuilt() {
        let destination: SocketAddr = ([10, 0, 0, 1], 8080).into();
        let authority = |host: Option<&str>| {
            let mut request = http::Request::builder().uri("/x");
            if let Some(host) = host {
                request = request.header(header::HOST, host);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            let target = target(&parts, destination).unwrap();
            (target.host.clone(), target.authority().to_owned())
        };
        let cases = [
            (Some("x.example:80"), ("x.example", "x.example:80")),
            (Some("x.example"), ("x.example", "x.example")),
            (Some("X.Example.:080"), ("x.example", "x.example:80")),
            (Some("x.example:"), ("x.example", "x.example")),
            (Some("x.example.:8"), ("x.example", "x.example:8")),
            (None, ("10.0.0.1", "10.0.0.1:8080")),
            (Some(""), ("10.0.0.1", "10.0.0.1:8080")),
        ];
        for (host, (want_host, want_authority)) in cases {
            let got = authority(host);
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (want_host, want_authority),
                "{host:?}"
            );
        }
    }

    #[test]
    fn relative_paths_are_refused_and_star_and_connect_pass() {
        let parts = |method: Method, uri: &str| {
            let (parts, ()) = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts();
            parts
        };
        let mut relative = parts(Method::GET, "admin");
        assert_eq!(normalize(&mut relative).unwrap_err().status, 400);
        assert!(normalize(&mut parts(Method::OPTIONS, "*")).is_ok());
        assert!(normalize(&mut parts(Method::CONNECT, "x.example:443")).is_ok());
        let mut dotted = parts(Method::GET, "http://x.example/a/../b?q=/../c");
        normalize(&mut dotted).unwrap();
        assert_eq!(dotted.uri.to_string(), "http://x.example/b?q=/../c");
    }
}
