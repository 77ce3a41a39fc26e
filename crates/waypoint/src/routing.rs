//! Route selection for one bound service: the routes attached to it, per service port
//! (a route's `port` 0 attaches to every port), and the choice for one request: no route
//! on the port means the default route (the original destination), routes that do not
//! match mean 404.
//!
//! Matching and precedence are weft-l7's job; this module keeps the per-port split and the
//! link back to the wire rule (filters, backends, timeouts, retry) the pipeline executes.

use http::{HeaderMap, Method};
use weft_proto::l7::{self as pb, MatchType};

use crate::config::BoundPort;

/// The parts of a request routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Host without port.
    pub host: &'a str,
    /// Path with query.
    pub path: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
}

/// The rule chosen for a request.
#[derive(Debug, Clone, Copy)]
pub struct SelectedRule<'a> {
    /// The route it belongs to.
    pub route: &'a pb::Route,
    /// The rule.
    pub rule: &'a pb::Rule,
    /// The path prefix that matched, for `ReplacePrefixMatch` rewrites.
    pub matched_prefix: Option<&'a str>,
}

/// What routing decided.
#[derive(Debug, Clone, Copy)]
pub enum RouteChoice<'a> {
    /// No route on this port: forward to the original destination.
    Default,
    /// A rule matched.
    Rule(SelectedRule<'a>),
    /// Routes exist but none matches (404).
    NoMatch,
}

/// The routes of one bound service.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<pb::Route>,
}

impl Routes {
    /// Compiles the routes attached to a service with `ports`.
    ///
    /// # Errors
    /// `([index].field, reason)` for a route that cannot be used.
    pub fn compile(routes: &[pb::Route], _ports: &[BoundPort]) -> Result<Self, (String, String)> {
        for (index, route) in routes.iter().enumerate() {
            if u16::try_from(route.port).is_err() {
                return Err((
                    format!("[{index}].port"),
                    format!("{} is not a port", route.port),
                ));
            }
        }
        Ok(Self {
            routes: routes.to_vec(),
        })
    }

    /// True when no route is attached at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rule for a request to service port `port`.
    #[must_use]
    pub fn select(&self, port: u16, request: &RequestView<'_>) -> RouteChoice<'_> {
        let mut on_port = self
            .routes
            .iter()
            .filter(|r| r.port == 0 || r.port == u32::from(port))
            .peekable();
        if on_port.peek().is_none() {
            return RouteChoice::Default;
        }
        for route in on_port {
            if !host_matches(&route.hostnames, request.host) {
                continue;
            }
            for rule in &route.rules {
                if rule.matches.is_empty() {
                    return RouteChoice::Rule(SelectedRule {
                        route,
                        rule,
                        matched_prefix: Some("/"),
                    });
                }
                if let Some(m) = rule.matches.iter().find(|m| match_holds(m, request)) {
                    let matched_prefix = m
                        .path
                        .as_ref()
                        .filter(|p| p.r#type == MatchType::Prefix as i32)
                        .map(|p| p.value.as_str());
                    return RouteChoice::Rule(SelectedRule {
                        route,
                        rule,
                        matched_prefix,
                    });
                }
            }
        }
        RouteChoice::NoMatch
    }
}

fn host_matches(hostnames: &[String], host: &str) -> bool {
    hostnames.is_empty()
        || hostnames.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => h.eq_ignore_ascii_case(host),
        })
}

fn match_holds(m: &pb::Match, request: &RequestView<'_>) -> bool {
    let path = request.path.split(['?', '#']).next().unwrap_or("/");
    let path_ok = m
        .path
        .as_ref()
        .is_none_or(|p| match MatchType::try_from(p.r#type) {
            Ok(MatchType::Exact) => path == p.value,
            Ok(MatchType::Prefix) => prefix_matches(&p.value, path),
            _ => false,
        });
    let method_ok = m.method.is_empty() || m.method == request.method.as_str();
    let headers_ok = m.headers.iter().all(|h| {
        h.r#type == MatchType::Exact as i32
            && request
                .headers
                .get(h.name.as_str())
                .is_some_and(|v| v.as_bytes() == h.value.as_bytes())
    });
    path_ok && method_ok && headers_ok
}

/// Gateway API prefixes match whole path segments.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
