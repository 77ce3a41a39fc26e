//! Compiled matchers: hostnames, paths, header, query parameter and gRPC method matches,
//! and the borrowed request they are evaluated against. Nothing here allocates on the
//! request path except a regex match on a percent-encoded query value or on a header
//! repeated in the request.

use http::{HeaderMap, HeaderName, Method};
use regex::bytes::Regex;

/// A string match: exact, or a regular expression that must match the whole value.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Exact(Box<str>),
    Regex(Regex),
}

impl Text {
    /// Compiles `value` as exact or as an anchored regex.
    pub(crate) fn new(value: &str, regex: bool) -> Result<Self, regex::Error> {
        if regex {
            Ok(Self::Regex(Regex::new(&format!("^(?:{value})$"))?))
        } else {
            Ok(Self::Exact(value.into()))
        }
    }

    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(exact) => exact.as_bytes() == value,
            Self::Regex(regex) => regex.is_match(value),
        }
    }

    /// Matches a percent-encoded value (a query parameter), decoding only if needed.
    fn matches_encoded(&self, raw: &str) -> bool {
        match self {
            Self::Exact(exact) => decode(raw).eq(exact.bytes()),
            Self::Regex(regex) if raw.contains('%') => {
                regex.is_match(&decode(raw).collect::<Vec<_>>())
            }
            Self::Regex(regex) => regex.is_match(raw.as_bytes()),
        }
    }
}

/// A route hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// The route has no hostnames: every host.
    Any,
    /// `foo.example.com` (lowercase).
    Exact(Box<str>),
    /// `*.example.com`, kept as the suffix `.example.com` (lowercase).
    Wildcard(Box<str>),
}

impl HostPattern {
    pub(crate) fn new(hostname: &str) -> Self {
        let hostname = hostname.to_ascii_lowercase();
        match hostname.strip_prefix('*') {
            Some(suffix) => Self::Wildcard(suffix.into()),
            None => Self::Exact(hostname.into()),
        }
    }

    /// Whether `host` (without port) is selected; a wildcard needs at least one label.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => host.eq_ignore_ascii_case(exact),
            Self::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Precedence: (characters of a matching non-wildcard hostname, of a matching hostname).
    pub(crate) fn score(&self) -> (usize, usize) {
        match self {
            Self::Any => (0, 0),
            Self::Exact(exact) => (exact.len(), exact.len()),
            Self::Wildcard(suffix) => (0, suffix.len() + 1),
        }
    }

    /// Whether some host is selected by both patterns.
    pub(crate) fn intersects(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, _) | (_, Self::Any) => true,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(host), wildcard @ Self::Wildcard(_))
            | (wildcard @ Self::Wildcard(_), Self::Exact(host)) => wildcard.matches(host),
            (Self::Wildcard(a), Self::Wildcard(b)) => a.ends_with(&**b) || b.ends_with(&**a),
        }
    }
}

/// An HTTPRoute path match.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    Exact(Box<str>),
    /// The prefix without its trailing `/` (`/` becomes empty and matches every path).
    Prefix(Box<str>),
    Regex(Regex, usize),
}

impl PathMatch {
    pub(crate) fn prefix(value: &str) -> Self {
        Self::Prefix(value.trim_end_matches('/').into())
    }

    pub(crate) fn regex(value: &str) -> Result<Self, regex::Error> {
        let Text::Regex(regex) = Text::new(value, true)? else {
            unreachable!("Text::new with regex=true returns a regex")
        };
        Ok(Self::Regex(regex, value.len()))
    }

    /// Whether `path` (without query) matches; a prefix matches whole segments only.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == &**exact,
            Self::Prefix(prefix) => path
                .strip_prefix(&**prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Self::Regex(regex, _) => regex.is_match(path.as_bytes()),
        }
    }

    /// Precedence: Exact, then the longest prefix, then regex (the longest pattern),
    /// the order Istio's Gateway API translation uses for the implementation-specific regex.
    pub(crate) fn rank(&self) -> [usize; 2] {
        match self {
            Self::Exact(exact) => [3, exact.len()],
            Self::Prefix(prefix) => [2, prefix.len()],
            Self::Regex(_, len) => [1, *len],
        }
    }
}

/// A header match (the name is lowercase, as `HeaderName` keeps it).
#[derive(Debug, Clone)]
pub(crate) struct HeaderMatch {
    pub(crate) name: HeaderName,
    pub(crate) value: Text,
}

impl HeaderMatch {
    /// A header repeated in the request is matched as its values joined by `,` (RFC 9110).
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let mut rest = values.peekable();
        if rest.peek().is_none() {
            return self.value.matches(first.as_bytes());
        }
        let mut joined = first.as_bytes().to_vec();
        for value in rest {
            joined.push(b',');
            joined.extend_from_slice(value.as_bytes());
        }
        self.value.matches(&joined)
    }
}

/// A query parameter match; the name is exact and case-sensitive.
#[derive(Debug, Clone)]
pub(crate) struct QueryMatch {
    pub(crate) name: Box<str>,
    pub(crate) value: Text,
}

impl QueryMatch {
    /// The first occurrence of the parameter in the request is the one matched.
    fn matches(&self, query: &str) -> bool {
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(name, _)| decode(name).eq(self.name.bytes()))
            .is_some_and(|(_, value)| self.value.matches_encoded(value))
    }
}

/// The match of one `HTTPRoute` rule's `matches[]` entry (all parts ANDed).
#[derive(Debug, Clone)]
pub(crate) struct HttpMatch {
    pub(crate) path: PathMatch,
    pub(crate) method: Option<Method>,
    pub(crate) headers: Vec<HeaderMatch>,
    pub(crate) query: Vec<QueryMatch>,
}

impl HttpMatch {
    /// The implicit match of a rule without matches: `PathPrefix /`.
    pub(crate) fn every_path() -> Self {
        HttpMatch {
            path: PathMatch::prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

/// The `method` of one `GRPCRoute` match: service and/or method name.
#[derive(Debug, Clone)]
pub(crate) struct GrpcMethodMatch {
    pub(crate) service: Option<Text>,
    pub(crate) method: Option<Text>,
    /// Characters of the service and method as written, for precedence.
    pub(crate) lengths: [usize; 2],
}

/// The match of one `GRPCRoute` rule's `matches[]` entry (the default matches every call).
#[derive(Debug, Clone, Default)]
pub(crate) struct GrpcMatch {
    pub(crate) method: Option<GrpcMethodMatch>,
    pub(crate) headers: Vec<HeaderMatch>,
}

/// One compiled match of either route kind.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Http(HttpMatch),
    Grpc(GrpcMatch),
}

impl Condition {
    /// The match-level precedence, highest first, compared element by element:
    /// HTTP `[path kind, path length, method, headers, query params]`,
    /// gRPC `[service characters, method characters, headers, 0, 0]`.
    pub(crate) fn specificity(&self) -> [usize; 5] {
        match self {
            Self::Http(m) => {
                let [kind, len] = m.path.rank();
                let method = usize::from(m.method.is_some());
                [kind, len, method, m.headers.len(), m.query.len()]
            }
            Self::Grpc(m) => {
                let [service, method] = m.method.as_ref().map_or([0, 0], |m| m.lengths);
                [service, method, m.headers.len(), 0, 0]
            }
        }
    }

    /// The path prefix of an HTTP prefix match (without trailing `/`).
    pub(crate) fn prefix(&self) -> Option<&str> {
        match self {
            Self::Http(HttpMatch {
                path: PathMatch::Prefix(prefix),
                ..
            }) => Some(prefix),
            _ => None,
        }
    }

    pub(crate) fn matches(&self, request: &Request<'_>) -> bool {
        match self {
            Self::Http(m) => {
                m.path.matches(request.path)
                    && m.method
                        .as_ref()
                        .is_none_or(|method| method == request.method)
                    && m.headers.iter().all(|h| h.matches(request.headers))
                    && m.query.iter().all(|q| q.matches(request.query))
            }
            Self::Grpc(m) => {
                request.grpc.is_some()
                    && m.method
                        .as_ref()
                        .is_none_or(|method| method.matches(request.grpc))
                    && m.headers.iter().all(|h| h.matches(request.headers))
            }
        }
    }
}

impl GrpcMethodMatch {
    fn matches(&self, call: Option<Option<(&str, &str)>>) -> bool {
        let Some(Some((service, method))) = call else {
            return false;
        };
        let part = |text: &Option<Text>, value: &str| {
            text.as_ref().is_none_or(|t| t.matches(value.as_bytes()))
        };
        part(&self.service, service) && part(&self.method, method)
    }
}

/// A request prepared for matching: host without port, path split from its query, and for
/// a gRPC request (a POST with an `application/grpc*` content type) its service and method.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// `Some` for a gRPC request; inside, the service and method if the path has them.
    pub(crate) grpc: Option<Option<(&'a str, &'a str)>>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(view: &super::RequestView<'a>) -> Self {
        let (path, query) = view.path.split_once('?').unwrap_or((view.path, ""));
        let grpc = is_grpc(view.method, view.headers).then(|| grpc_call(path));
        Request {
            method: view.method,
            host: strip_port(view.host),
            path,
            query,
            headers: view.headers,
            grpc,
        }
    }
}

fn is_grpc(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `/<service>/<method>` of a gRPC request path.
fn grpc_call(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let valid = !service.is_empty() && !method.is_empty() && !method.contains('/');
    valid.then_some((service, method))
}

/// The host of a `Host` / `:authority` value: without port, brackets kept for IPv6, and
/// without a trailing dot.
pub(crate) fn strip_port(host: &str) -> &str {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Percent-decodes lazily; a `%` not followed by two hex digits stays as it is.
fn decode(raw: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let byte = *bytes.get(i)?;
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        if byte == b'%'
            && let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2))
        {
            i += 3;
            return Some(u8::try_from(high * 16 + low).unwrap_or(b'%'));
        }
        i += 1;
        Some(byte)
    })
}
