//! Route filters applied to a request head or a response's headers: header modifiers,
//! `RequestRedirect` (answered by the proxy), `URLRewrite` (host and path before
//! forwarding), `RequestMirror` (which backend, and whether this request is sampled) and
//! `CORS` (preflights answered by the proxy, response headers for allowed origins).
//! Filters are compiled and validated from the wire form once (see `compile`), so applying
//! them cannot fail except on a request target that cannot be rebuilt.

mod compile;
mod cors;
#[cfg(test)]
mod tests;

pub use cors::Cors;

use crate::routes::strip_port;
use crate::rule::RouteBackend;
use http::header::{HOST, LOCATION, ORIGIN};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use rand::Rng;

/// The filters of a rule or of one backend of a rule.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Request steps in the order written.
    request: Vec<RequestStep>,
    response: Vec<HeaderModifier>,
    mirrors: Vec<Mirror>,
    cors: Option<Cors>,
}

#[derive(Debug, Clone)]
enum RequestStep {
    Headers(HeaderModifier),
    Redirect(Redirect),
    Rewrite(Rewrite),
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`: names are valid header names, each
/// at most once in `set` and in `add`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// How a redirect or a rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// `ReplaceFullPath`: the whole path (the query is kept).
    ReplaceFullPath(String),
    /// `ReplacePrefixMatch`: the matched `PathPrefix`, on path-segment boundaries.
    ReplacePrefixMatch(String),
}

/// `RequestRedirect`: the request is answered with a redirect built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    path: Option<PathModifier>,
    status: StatusCode,
}

/// `URLRewrite`: the host and path the request is forwarded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    hostname: Option<String>,
    path: Option<PathModifier>,
}

/// `RequestMirror`: a copy of a share of the requests goes to another backend, whose
/// answer is dropped.
#[derive(Debug, Clone)]
pub struct Mirror {
    backend: RouteBackend,
    numerator: u32,
    denominator: u32,
}

/// What filters need besides the request.
#[derive(Debug, Clone, Copy)]
pub struct FilterContext<'a> {
    /// The scheme the client used (`http` or `https`), when the URI does not say.
    pub scheme: &'a str,
    /// The port the client addressed: the listener's, or the service port at a waypoint.
    pub port: u16,
    /// The winning `PathPrefix` without trailing `/`, for `ReplacePrefixMatch`.
    pub matched_prefix: Option<&'a str>,
}

/// What to do with the request after its filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Forward it (possibly modified).
    Forward,
    /// Answer it with this redirect.
    Redirect(RedirectResponse),
    /// A CORS preflight: answer it `200` with these headers.
    Preflight(HeaderMap),
}

/// A redirect answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectResponse {
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// The `Location` header.
    pub location: HeaderValue,
}

impl RedirectResponse {
    /// The header to send.
    #[must_use]
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (LOCATION, self.location.clone())
    }
}

/// A request target that cannot be rebuilt after a rewrite (answer 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot rebuild the request target: {0}")]
pub struct FilterError(String);

impl Filters {
    /// Applies the request filters in order: header modifiers and rewrites change `parts`
    /// (the `Host` header, and the URI's authority when it has one); a redirect stops there
    /// and is returned. A CORS preflight is answered before any of them.
    ///
    /// # Errors
    /// [`FilterError`] when the rewritten URI is invalid.
    pub fn apply_request(
        &self,
        parts: &mut Parts,
        context: &FilterContext<'_>,
    ) -> Result<RequestVerdict, FilterError> {
        if let Some(cors) = &self.cors
            && cors::is_preflight(parts)
        {
            return Ok(RequestVerdict::Preflight(cors.preflight(&parts.headers)));
        }
        for step in &self.request {
            match step {
                RequestStep::Headers(modifier) => modifier.apply(&mut parts.headers),
                RequestStep::Rewrite(rewrite) => rewrite.apply(parts, context.matched_prefix)?,
                RequestStep::Redirect(redirect) => {
                    return redirect
                        .response(parts, context)
                        .map(RequestVerdict::Redirect);
                }
            }
        }
        Ok(RequestVerdict::Forward)
    }

    /// Applies the response header modifiers.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        for modifier in &self.response {
            modifier.apply(headers);
        }
    }

    /// The request's `Origin` to keep for [`Filters::apply_cors`], when there is a CORS
    /// filter (else `None`: nothing to keep).
    #[must_use]
    pub fn cors_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        self.cors.as_ref()?;
        request.get(ORIGIN).cloned()
    }

    /// Adds the CORS response headers for a request whose `Origin` was `origin`, when
    /// there is a CORS filter and the origin is allowed.
    pub fn apply_cors(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if let Some(cors) = &self.cors {
            cors.apply_response(origin, response);
        }
    }

    /// The mirrors, in the order written.
    #[must_use]
    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }

    /// The redirect, if any.
    #[must_use]
    pub fn redirect(&self) -> Option<&Redirect> {
        self.request.iter().find_map(|s| match s {
            RequestStep::Redirect(r) => Some(r),
            _ => None,
        })
    }

    /// Whether there is nothing to apply.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.request.is_empty()
            && self.response.is_empty()
            && self.mirrors.is_empty()
            && self.cors.is_none()
    }
}

impl HeaderModifier {
    /// Removes, then sets (replacing every value), then adds (after existing values).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

impl PathModifier {
    /// The new path for `path` (without query). `ReplacePrefixMatch` keeps what follows
    /// the matched prefix (`prefix` without trailing `/`; `None` replaces nothing); a
    /// trailing `/` of the replacement is dropped when the rest starts with one, and an
    /// empty result is `/`.
    #[must_use]
    pub fn apply(&self, path: &str, prefix: Option<&str>) -> String {
        match self {
            Self::ReplaceFullPath(full) => full.clone(),
            Self::ReplacePrefixMatch(replacement) => {
                let Some(rest) = prefix.and_then(|p| path.strip_prefix(p)) else {
                    return path.to_owned();
                };
                let joined = format!("{}{rest}", replacement.trim_end_matches('/'));
                if joined.is_empty() {
                    "/".to_owned()
                } else {
                    joined
                }
            }
        }
    }
}

impl Redirect {
    /// The status of the answer.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Location` for a request to `scheme://host/path?query` on `context.port`:
    /// scheme, hostname and path replaced when set; the port is the redirect's, else the
    /// well-known port of a scheme the redirect sets, else the one the client addressed,
    /// and is left out when it is the scheme's default.
    #[must_use]
    pub fn location(
        &self,
        host: &str,
        path_and_query: &str,
        context: &FilterContext<'_>,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(context.scheme);
        let host = self.hostname.as_deref().unwrap_or_else(|| strip_port(host));
        let port = match (self.port, &self.scheme) {
            (Some(port), _) => port,
            (None, Some(scheme)) => well_known_port(scheme).unwrap_or(context.port),
            (None, None) => context.port,
        };
        let port = if well_known_port(scheme) == Some(port) {
            String::new()
        } else {
            format!(":{port}")
        };
        let (path, query) = split_query(path_and_query);
        let path = self.path.as_ref().map_or_else(
            || path.to_owned(),
            |p| p.apply(path, context.matched_prefix),
        );
        format!("{scheme}://{host}{port}{path}{query}")
    }

    fn response(
        &self,
        parts: &Parts,
        context: &FilterContext<'_>,
    ) -> Result<RedirectResponse, FilterError> {
        let host = request_host(parts).unwrap_or_default();
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let context = FilterContext {
            scheme: parts.uri.scheme_str().unwrap_or(context.scheme),
            ..*context
        };
        let location = self.location(host, path, &context);
        let location = HeaderValue::try_from(location).map_err(|e| FilterError(e.to_string()))?;
        Ok(RedirectResponse {
            status: self.status,
            location,
        })
    }
}

impl Rewrite {
    /// Rewrites the `Host` header (and the URI's authority if it has one) and the path.
    ///
    /// # Errors
    /// [`FilterError`] when the new URI is invalid.
    pub fn apply(&self, parts: &mut Parts, prefix: Option<&str>) -> Result<(), FilterError> {
        let invalid = |e: &dyn std::fmt::Display| FilterError(e.to_string());
        let mut uri = parts.uri.clone().into_parts();
        if let Some(hostname) = &self.hostname {
            let value = HeaderValue::try_from(hostname.as_str()).map_err(|e| invalid(&e))?;
            if uri.authority.is_some() {
                uri.authority =
                    Some(Authority::try_from(hostname.as_str()).map_err(|e| invalid(&e))?);
            }
            parts.headers.insert(HOST, value);
        }
        if let Some(modifier) = &self.path {
            let current = uri
                .path_and_query
                .as_ref()
                .map_or("/", PathAndQuery::as_str);
            let (path, query) = split_query(current);
            let new = format!("{}{query}", modifier.apply(path, prefix));
            uri.path_and_query = Some(PathAndQuery::try_from(new).map_err(|e| invalid(&e))?);
        }
        parts.uri = Uri::from_parts(uri).map_err(|e| invalid(&e))?;
        Ok(())
    }
}

impl Mirror {
    /// Where copies go.
    #[must_use]
    pub fn backend(&self) -> &RouteBackend {
        &self.backend
    }

    /// The mirrored share as (numerator, denominator).
    #[must_use]
    pub fn fraction(&self) -> (u32, u32) {
        (self.numerator, self.denominator)
    }

    /// Whether this request is copied, drawing with `rng`.
    pub fn sampled<R: Rng + ?Sized>(&self, rng: &mut R) -> bool {
        self.sampled_at(rng.random_range(0..self.denominator))
    }

    /// Whether a draw of `roll` in `0..denominator` is copied (the first `numerator` are).
    #[must_use]
    pub fn sampled_at(&self, roll: u32) -> bool {
        roll < self.numerator
    }
}

/// The host of the request: the URI's authority, else the `Host` header (port included).
fn request_host(parts: &Parts) -> Option<&str> {
    (parts.uri.authority().map(Authority::as_str))
        .or_else(|| parts.headers.get(HOST).and_then(|v| v.to_str().ok()))
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `(path, "?query")` (the query part empty when there is none).
fn split_query(path_and_query: &str) -> (&str, &str) {
    match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    }
}
