//! HBONE request headers: `forwarded` (RFC 7239), `baggage`, `traceparent`, and the
//! `:authority` of a CONNECT request.

use std::net::{IpAddr, SocketAddr};

use http::uri::Authority;

pub(crate) const FORWARDED: &str = "forwarded";
pub(crate) const BAGGAGE: &str = "baggage";
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Formats a `forwarded` header value naming the original source address, following
/// RFC 7239: `for=10.0.0.1`, or `for="[2001:db8::1]"` for IPv6 (bracketed and quoted).
#[must_use]
pub fn format_forwarded_for(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

/// Extracts the `for=` address of the first element of a `forwarded` header value.
/// Accepts quoted and bracketed forms with or without a port; returns `None` for
/// obfuscated identifiers, `unknown`, or anything that is not an IP address.
#[must_use]
pub fn parse_forwarded_for(value: &str) -> Option<IpAddr> {
    let first_element = value.split(',').next()?;
    let node = first_element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    parse_node(node.trim_matches('"'))
}

fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _port) = rest.split_once(']')?;
        return ip.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    node.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

/// Parses a CONNECT `:authority` into a socket address; HBONE requires `ip:port`
/// (IPv6 bracketed), never a host name.
pub(crate) fn parse_authority(authority: Option<&Authority>) -> Option<SocketAddr> {
    authority?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_ipv4_is_bare() {
        assert_eq!(
            format_forwarded_for("10.1.2.3".parse().unwrap()),
            "for=10.1.2.3"
        );
    }

    #[test]
    fn forwarded_ipv6_is_quoted_and_bracketed() {
        assert_eq!(
            format_forwarded_for("2001:db8::7".parse().unwrap()),
            "for=\"[2001:db8::7]\""
        );
    }

    #[test]
    fn forwarded_round_trips() {
        for ip in ["10.1.2.3", "2001:db8::7", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_forwarded_for(&format_forwarded_for(ip)), Some(ip));
        }
    }

    #[test]
    fn forwarded_parses_rfc7239_variants() {
        let cases = [
            (
                "For=\"[2001:db8:cafe::17]:4711\"",
                Some("2001:db8:cafe::17"),
            ),
            (
                "for=192.0.2.60;proto=http;by=203.0.113.43",
                Some("192.0.2.60"),
            ),
            ("proto=https; for=198.51.100.17:8080", Some("198.51.100.17")),
            ("for=192.0.2.43, for=198.51.100.17", Some("192.0.2.43")),
            ("for=unknown", None),
            ("for=_hidden", None),
            ("by=10.0.0.1", None),
            ("", None),
        ];
        for (value, expected) in cases {
            let expected = expected.map(|ip| ip.parse::<IpAddr>().unwrap());
            assert_eq!(parse_forwarded_for(value), expected, "{value}");
        }
    }

    #[test]
    fn authority_must_be_ip_and_port() {
        let parse = |s: &str| parse_authority(Some(&s.parse::<Authority>().unwrap()));
        assert_eq!(
            parse("10.0.0.1:8080"),
            Some("10.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(parse("[::1]:80"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse("example.com:80"), None);
        assert_eq!(parse("10.0.0.1"), None);
        assert_eq!(parse_authority(None), None);
    }
}
