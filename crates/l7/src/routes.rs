//! The route table of one parent (a service bound to a waypoint, or a gateway listener):
//! every `matches[]` entry of every rule of the attached wire routes, once per route
//! hostname, sorted by Gateway API precedence at build time. Choosing a route is then a scan
//! for the first entry whose hostname and match accept the request (see `docs/l7.md` for the
//! order and where each step comes from).

mod compile;
mod matching;
#[cfg(all(test, feature = "api"))]
pub(crate) mod tests;

use crate::filters::FilterContext;
use crate::rule::Rule;
use compile::CompiledRoute;
use http::{HeaderMap, Method};
use matching::{HostPattern, Request};
use std::cmp::Reverse;
use std::fmt;
use weft_proto::l7 as pb;

pub(crate) use compile::{FieldError, compile_route};
pub(crate) use matching::strip_port;

/// The kind of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
}

/// Which route: kind, namespace (`default` when unset) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName {
    /// The route's kind.
    pub kind: RouteKind,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// Why a route is not in the table (the spec's `Accepted=False`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{route}: {field}: {message}")]
pub struct RouteError {
    /// The rejected route.
    pub route: RouteName,
    /// Path of the offending field, e.g. `spec.rules[0].matches[1].path.value`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The parts of a request routing looks at, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// `Host` or `:authority`, a port in it is ignored.
    pub host: &'a str,
    /// Path with its query, as received (normalising it is the caller's choice).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The rule chosen for a request.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'t> {
    /// The route.
    pub route: &'t RouteName,
    /// The rule (its index in the route's rules is [`Rule::index`]).
    pub rule: &'t Rule,
    /// Index of the `matches[]` entry that won (0 for a rule without matches).
    pub matched: usize,
    /// The `PathPrefix` of the winning match without its trailing `/` (`""` for `/`), which
    /// `ReplacePrefixMatch` replaces; `None` when the match is not a prefix.
    pub matched_prefix: Option<&'t str>,
}

impl Selected<'_> {
    /// What the filters of this rule and of its backends need besides the request: the
    /// scheme the client used and the port it addressed (the listener or service port).
    #[must_use]
    pub fn context<'a>(&'a self, scheme: &'a str, port: u16) -> FilterContext<'a> {
        FilterContext {
            scheme,
            port,
            matched_prefix: self.matched_prefix,
        }
    }
}

/// Precedence of an entry, smallest first.
type SortKey = (
    Reverse<(usize, usize)>,
    Reverse<[usize; 5]>,
    usize,
    usize,
    usize,
);

/// One `matches[]` entry under one route hostname.
#[derive(Debug)]
struct Entry {
    host: HostPattern,
    route: usize,
    rule: usize,
    matched: usize,
    key: SortKey,
}

/// The compiled routes of one parent.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Accepted routes, oldest first, then by `{namespace}/{name}`.
    routes: Vec<CompiledRoute>,
    /// Sorted by precedence.
    entries: Vec<Entry>,
    errors: Vec<RouteError>,
}

impl RouteTable {
    /// Compiles the wire routes attached to one parent, whatever their `port`; rejected
    /// routes are left out and listed in [`RouteTable::errors`].
    #[must_use]
    pub fn new(routes: &[pb::Route]) -> Self {
        Self::build(routes.iter())
    }

    /// Compiles the routes that apply to one port of the parent: those whose `port` is 0
    /// (every port) or `port`.
    #[must_use]
    pub fn for_port(routes: &[pb::Route], port: u16) -> Self {
        Self::build(
            routes
                .iter()
                .filter(|r| r.port == 0 || r.port == u32::from(port)),
        )
    }

    fn build<'a>(routes: impl Iterator<Item = &'a pb::Route>) -> Self {
        let mut errors = Vec::new();
        let mut compiled: Vec<CompiledRoute> = routes
            .map(compile_route)
            .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
            .collect();
        compiled.sort_by(|a, b| {
            let age = |r: &CompiledRoute| (r.created.is_none(), r.created);
            let name = |r: &CompiledRoute| (r.name.namespace.clone(), r.name.name.clone());
            (age(a), name(a)).cmp(&(age(b), name(b)))
        });
        let routes = reject_kind_conflicts(compiled, &mut errors);
        let mut entries = entries(&routes);
        entries.sort_by_key(|e| e.key);
        RouteTable {
            routes,
            entries,
            errors,
        }
    }

    /// The rule for a request, or `None` (the spec's 404).
    #[must_use]
    pub fn select(&self, view: &RequestView<'_>) -> Option<Selected<'_>> {
        let request = Request::new(view);
        let entry = self
            .entries
            .iter()
            .find(|e| e.host.matches(request.host) && self.condition(e).matches(&request))?;
        let route = &self.routes[entry.route];
        let rule = &route.rules[entry.rule];
        Some(Selected {
            route: &route.name,
            rule: &rule.rule,
            matched: entry.matched,
            matched_prefix: rule.matches[entry.matched].prefix(),
        })
    }

    /// Routes left out, with the reason.
    #[must_use]
    pub fn errors(&self) -> &[RouteError] {
        &self.errors
    }

    /// Whether no route was accepted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn condition(&self, entry: &Entry) -> &matching::Condition {
        &self.routes[entry.route].rules[entry.rule].matches[entry.matched]
    }
}

/// Every (hostname, match) pair with its precedence key; `routes` is in age/name order.
fn entries(routes: &[CompiledRoute]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (r, route) in routes.iter().enumerate() {
        for (rule, compiled) in route.rules.iter().enumerate() {
            for (matched, condition) in compiled.matches.iter().enumerate() {
                let specificity = Reverse(condition.specificity());
                entries.extend(route.hosts.iter().map(|host| Entry {
                    host: host.clone(),
                    route: r,
                    rule,
                    matched,
                    key: (Reverse(host.score()), specificity, r, rule, matched),
                }));
            }
        }
    }
    entries
}

/// An `HTTPRoute` and a `GRPCRoute` whose hostnames intersect cannot both be accepted on
/// one parent: the older (then first by `{namespace}/{name}`) one wins, the other is
/// rejected. `routes` is in that order, so the first of a conflicting pair is kept.
fn reject_kind_conflicts(
    routes: Vec<CompiledRoute>,
    errors: &mut Vec<RouteError>,
) -> Vec<CompiledRoute> {
    let mut kept: Vec<CompiledRoute> = Vec::with_capacity(routes.len());
    for route in routes {
        let winner = kept.iter().find(|k| {
            k.name.kind != route.name.kind
                && k.hosts
                    .iter()
                    .any(|a| route.hosts.iter().any(|b| a.intersects(b)))
        });
        match winner {
            Some(winner) => errors.push(RouteError {
                route: route.name.clone(),
                field: "spec.hostnames".to_owned(),
                message: format!(
                    "hostnames intersect those of {}, which is older or first by name; \
                     only one of an HTTPRoute and a GRPCRoute can be accepted",
                    winner.name
                ),
            }),
            None => kept.push(route),
        }
    }
    kept
}
