//! L7 conditions of a compiled match: hosts, methods, paths, headers, request principals
//! and the original client address, evaluated against one request ([`RequestFacts`]) as
//! Istio does. Without request facts they are not evaluated here: the rule decides how to
//! fail safe (see `Rule::matches` in `compile`).

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::compile::{StrMatch, contains, negative, positive};

/// What an L7 proxy knows about one HTTP request, borrowed from it (nothing is copied).
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Method, e.g. `GET` (matched case-sensitively, as Istio does).
    pub method: &'a str,
    /// `:authority` / `Host`, possibly with a port (matched case-insensitively; a host
    /// pattern without a port also matches the host with any port).
    pub host: &'a str,
    /// `:path`; the query string and fragment are ignored when matching paths.
    pub path: &'a str,
    /// Request headers, matched as bytes (several values of one name joined by `,`).
    pub headers: &'a HeaderMap,
    /// `<iss>/<sub>` of the request's validated JWT, if any (`None`: positive
    /// `requestPrincipals` cannot match, and their `not` form holds).
    pub request_principal: Option<&'a str>,
    /// Original client address: from `X-Forwarded-For` (per the proxy's trusted hops) or
    /// the PROXY protocol, else the connection's source.
    pub remote_ip: IpAddr,
}

/// The L7 part of a match; every non-empty list must hold, as for the L4 part.
#[derive(Debug, Default)]
pub(crate) struct L7Match {
    pub hosts: Vec<StrMatch>,
    pub not_hosts: Vec<StrMatch>,
    pub methods: Vec<StrMatch>,
    pub not_methods: Vec<StrMatch>,
    pub paths: Vec<StrMatch>,
    pub not_paths: Vec<StrMatch>,
    pub request_principals: Vec<StrMatch>,
    pub not_request_principals: Vec<StrMatch>,
    pub remote_ips: Vec<IpNet>,
    pub not_remote_ips: Vec<IpNet>,
    pub headers: Vec<HeaderCondition>,
}

/// `request.headers[name]`: `values` need one hit, `not_values` none; a missing header
/// matches no value.
#[derive(Debug)]
pub(crate) struct HeaderCondition {
    pub name: HeaderName,
    pub values: Vec<StrMatch>,
    pub not_values: Vec<StrMatch>,
}

impl L7Match {
    /// True when no L7 condition is set (the match is L4 only).
    pub fn is_empty(&self) -> bool {
        let lists = [
            &self.hosts,
            &self.not_hosts,
            &self.methods,
            &self.not_methods,
            &self.paths,
            &self.not_paths,
            &self.request_principals,
            &self.not_request_principals,
        ];
        lists.iter().all(|l| l.is_empty())
            && self.remote_ips.is_empty()
            && self.not_remote_ips.is_empty()
            && self.headers.is_empty()
    }

    pub fn matches(&self, request: &RequestFacts<'_>) -> bool {
        let host = |m: &StrMatch| host_matches(m, request.host);
        let method = |m: &StrMatch| m.matches(Some(request.method));
        let path = |m: &StrMatch| m.matches(Some(path_only(request.path)));
        let principal = |m: &StrMatch| m.matches(request.request_principal);
        let remote = |net: &IpNet| contains(net, request.remote_ip);
        positive(&self.hosts, host)
            && negative(&self.not_hosts, host)
            && positive(&self.methods, method)
            && negative(&self.not_methods, method)
            && positive(&self.paths, path)
            && negative(&self.not_paths, path)
            && positive(&self.request_principals, principal)
            && negative(&self.not_request_principals, principal)
            && positive(&self.remote_ips, remote)
            && negative(&self.not_remote_ips, remote)
            && self.headers.iter().all(|h| h.matches(request.headers))
    }
}

impl HeaderCondition {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let value = header_value(headers, &self.name);
        let hit = |m: &StrMatch| m.matches_raw(value.as_deref());
        positive(&self.values, hit) && negative(&self.not_values, hit)
    }
}

/// The header's value as bytes (as Envoy matches it: `obs-text` bytes 0x80-0xFF are legal
/// and must not hide the header), several values joined by `,` (allocates only then);
/// `None` only when the header is absent.
fn header_value<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, [u8]>> {
    let mut values = headers.get_all(name).iter().map(HeaderValue::as_bytes);
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = [first, second].join(&b","[..]);
    for value in values {
        joined.push(b',');
        joined.extend_from_slice(value);
    }
    Some(Cow::Owned(joined))
}

/// Hosts compare case-insensitively; a pattern also matches the host without its port. A
/// trailing dot and an empty port are ignored (`a.example.com.:` is `a.example.com`), so
/// no spelling of the same host escapes a rule whatever the caller canonicalized.
fn host_matches(pattern: &StrMatch, host: &str) -> bool {
    let (name, port) = split_host(host);
    let canonical = match port {
        None => Cow::Borrowed(name),
        Some(port) if name.len() + 1 + port.len() == host.len() => Cow::Borrowed(host),
        Some(port) => Cow::Owned(format!("{name}:{port}")),
    };
    pattern.matches_ignore_case(host)
        || pattern.matches_ignore_case(&canonical)
        || port.is_some() && pattern.matches_ignore_case(name)
}

/// `Example.com.:8080` -> (`Example.com`, `8080`), `[::1]:80` -> (`[::1]`, `80`),
/// `example.com:` -> (`example.com`, none): the name without its trailing dot and the
/// port, `None` when absent or empty.
fn split_host(host: &str) -> (&str, Option<&str>) {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port))
            if (!name.contains(':') || name.ends_with(']'))
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (name, (!port.is_empty()).then_some(port))
        }
        _ => (host, None),
    };
    (name.strip_suffix('.').unwrap_or(name), port)
}

/// The path without query string or fragment.
fn path_only(path: &str) -> &str {
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_queries_are_cut_where_istio_cuts_them() {
        assert_eq!(
            split_host("Example.com.:8080"),
            ("Example.com", Some("8080"))
        );
        assert_eq!(split_host("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_host("[::1]:"), ("[::1]", None));
        assert_eq!(split_host("::1"), ("::1", None));
        assert_eq!(split_host("example.com."), ("example.com", None));
        assert_eq!(path_only("/a/b?x=1#f"), "/a/b");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        let name = HeaderName::from_static("x-a");
        headers.append("x-a", "3".parse().unwrap());
        assert_eq!(
            header_value(&headers, &name).as_deref(),
            Some(&b"1,2,3"[..])
        );
        assert_eq!(
            header_value(&headers, &HeaderName::from_static("x-b")),
            None
        );
    }
}
