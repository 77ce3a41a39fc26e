//! The `CORS` filter (Gateway API's GEP-1767): the proxy answers a preflight request itself
//! and adds the CORS response headers to the answer of a request from an allowed origin.
//!
//! - A *preflight* is an `OPTIONS` request carrying `Origin` and
//!   `Access-Control-Request-Method` (the Fetch standard's definition). It never reaches a
//!   backend: it is answered `200` with `Access-Control-Allow-Origin` (the request's origin),
//!   `-Allow-Credentials`, `-Allow-Methods`, `-Allow-Headers` and `-Max-Age` when the origin
//!   is allowed, and without any CORS header when it is not (the browser then refuses the
//!   actual request).
//! - Any other request with an allowed `Origin` is forwarded, and its answer gets
//!   `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`.
//! - The allowed origin is always echoed (never `*`), with `Vary: Origin`, which the spec
//!   allows in every case and requires when credentials are allowed. A `*` among methods,
//!   request headers or exposed headers is sent as `*` unless credentials are allowed: then
//!   browsers read `*` literally, so the request's method and headers are echoed and the
//!   exposed headers are the names the answer carries.
//! - Origins compare by scheme, host (case-insensitively) and port, a missing port being
//!   the scheme's (80 for `http`, 443 for `https`). A `*` in an allowed host stands for one
//!   or more characters, dots included: `https://*.example.com` allows
//!   `https://a.b.example.com`, not `https://example.com`.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use weft_proto::l7 as pb;

use crate::routes::FieldError;

/// A compiled `CORS` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    credentials: bool,
    methods: Allowed,
    headers: Allowed,
    expose: Allowed,
    max_age: HeaderValue,
}

/// A configured list of names: none, the wildcard, or the names joined by `, `.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Unset,
    Any,
    List(HeaderValue),
}

/// One `allowOrigins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    /// `*`: every origin.
    Any,
    /// `scheme://host[:port]`; `host_suffix` is set when the host had a `*` between
    /// `host` (the part before it) and the suffix.
    Origin {
        scheme: String,
        host: String,
        host_suffix: Option<String>,
        port: u16,
    },
}

/// An origin as sent: scheme, host and port (the scheme's default when absent).
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

/// Whether `request` is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub(super) fn is_preflight(request: &http::request::Parts) -> bool {
    request.method == Method::OPTIONS
        && request.headers.contains_key(ORIGIN)
        && request.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

impl Cors {
    /// Compiles the wire filter at `at` (e.g. `spec.rules[0].filters[0].cors`).
    pub(crate) fn compile(wire: &pb::Cors, at: &str) -> Result<Self, FieldError> {
        let origins = (wire.allow_origins.iter().enumerate())
            .map(|(i, origin)| {
                OriginPattern::parse(origin).ok_or_else(|| {
                    (
                        format!("{at}.allowOrigins[{i}]"),
                        format!("{origin:?} is not `*` nor an origin scheme://host[:port]"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let method = |m: &str| Method::from_bytes(m.as_bytes()).is_ok();
        let header = |h: &str| HeaderName::from_bytes(h.as_bytes()).is_ok();
        Ok(Cors {
            origins,
            credentials: wire.allow_credentials,
            methods: Allowed::compile(&wire.allow_methods, method, &format!("{at}.allowMethods"))?,
            headers: Allowed::compile(&wire.allow_headers, header, &format!("{at}.allowHeaders"))?,
            expose: Allowed::compile(&wire.expose_headers, header, &format!("{at}.exposeHeaders"))?,
            max_age: HeaderValue::from(wire.max_age_seconds),
        })
    }

    /// The headers of the answer to a preflight `request` (none when its origin is not
    /// allowed).
    #[must_use]
    pub fn preflight(&self, request: &HeaderMap) -> HeaderMap {
        let mut answer = HeaderMap::new();
        let Some(origin) = self.allowed_origin(request.get(ORIGIN)) else {
            return answer;
        };
        self.origin_headers(origin, &mut answer);
        let echo = |name| request.get(name).cloned();
        let methods = self
            .methods
            .value(self.credentials, || echo(ACCESS_CONTROL_REQUEST_METHOD));
        let headers = self
            .headers
            .value(self.credentials, || echo(ACCESS_CONTROL_REQUEST_HEADERS));
        let lists = [
            (ACCESS_CONTROL_ALLOW_METHODS, methods),
            (ACCESS_CONTROL_ALLOW_HEADERS, headers),
        ];
        for (name, value) in lists {
            if let Some(value) = value {
                answer.insert(name, value);
            }
        }
        answer.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        answer
    }

    /// Adds the CORS headers to the answer of an actual request whose `Origin` was
    /// `origin`, when that origin is allowed.
    pub fn apply_response(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = self.allowed_origin(origin) else {
            return;
        };
        // The names the backend's answer carries, before the CORS headers join them.
        let exposed = self.expose.value(self.credentials, || names_of(response));
        self.origin_headers(origin, response);
        if let Some(exposed) = exposed {
            response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
        }
    }

    /// `origin` when it is allowed.
    fn allowed_origin<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let value = origin?;
        let parsed = Origin::parse(value.to_str().ok()?)?;
        let allowed = self.origins.iter().any(|p| p.matches(&parsed));
        allowed.then_some(value)
    }

    fn origin_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let varies = (headers.get_all(VARY).iter()).any(|v| v.to_str().is_ok_and(mentions_origin));
        if !varies {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// Whether a `Vary` value lists `Origin` (or is `*`).
fn mentions_origin(vary: &str) -> bool {
    vary.split(',')
        .map(str::trim)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("origin"))
}

/// The names of `headers`, joined by `, ` (for exposing every header of an answer).
fn names_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    HeaderValue::try_from(names.join(", ")).ok()
}

impl Allowed {
    fn compile(
        list: &[String],
        valid: impl Fn(&str) -> bool,
        at: &str,
    ) -> Result<Self, FieldError> {
        if let Some(i) = list.iter().position(|v| v != "*" && !valid(v)) {
            return Err((
                format!("{at}[{i}]"),
                format!("{:?} is not a valid name", list[i]),
            ));
        }
        if list.is_empty() {
            return Ok(Allowed::Unset);
        }
        if list.iter().any(|v| v == "*") {
            return Ok(Allowed::Any);
        }
        HeaderValue::try_from(list.join(", "))
            .map(Allowed::List)
            .map_err(|e| (at.to_owned(), e.to_string()))
    }

    /// The header value to send: the list, `*`, or with credentials allowed what `echo`
    /// gives in place of `*`.
    fn value(
        &self,
        credentials: bool,
        echo: impl FnOnce() -> Option<HeaderValue>,
    ) -> Option<HeaderValue> {
        match self {
            Allowed::Unset => None,
            Allowed::List(value) => Some(value.clone()),
            Allowed::Any if credentials => echo(),
            Allowed::Any => Some(HeaderValue::from_static("*")),
        }
    }
}

impl OriginPattern {
    fn parse(pattern: &str) -> Option<Self> {
        if pattern == "*" {
            return Some(OriginPattern::Any);
        }
        let origin = Origin::parse(pattern)?;
        let (host, host_suffix) = match origin.host.split_once('*') {
            Some((_, suffix)) if suffix.contains('*') => return None,
            Some((host, suffix)) => (host, Some(suffix.to_ascii_lowercase())),
            None => (origin.host, None),
        };
        Some(OriginPattern::Origin {
            scheme: origin.scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            host_suffix,
            port: origin.port,
        })
    }

    fn matches(&self, origin: &Origin<'_>) -> bool {
        let OriginPattern::Origin {
            scheme,
            host,
            host_suffix,
            port,
        } = self
        else {
            return true;
        };
        if !origin.scheme.eq_ignore_ascii_case(scheme) || origin.port != *port {
            return false;
        }
        match host_suffix {
            None => origin.host.eq_ignore_ascii_case(host),
            Some(suffix) => {
                let sent = origin.host.as_bytes();
                sent.len() > host.len() + suffix.len()
                    && sent[..host.len()].eq_ignore_ascii_case(host.as_bytes())
                    && sent[sent.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

impl<'a> Origin<'a> {
    /// `scheme://host[:port]` with scheme `http` or `https` and nothing after the port.
    fn parse(text: &'a str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let default_port = if scheme.eq_ignore_ascii_case("http") {
            80
        } else if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            return None;
        };
        let invalid = |c: char| matches!(c, '/' | '?' | '#' | '@') || !c.is_ascii_graphic();
        if rest.is_empty() || rest.contains(invalid) {
            return None;
        }
        // An IPv6 host is bracketed: its colons are not the port's.
        let port_at = rest.rfind(':').filter(|at| !rest[*at..].contains(']'));
        let (host, port) = match port_at {
            Some(at) => (
                &rest[..at],
                rest[at + 1..].parse().ok().filter(|p| *p != 0)?,
            ),
            None => (rest, default_port),
        };
        (!host.is_empty()).then_some(Origin { scheme, host, port })
    }
}

#[cfg(test)]
mod tests;
