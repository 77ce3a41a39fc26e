//! Route selection for one bound service: the routes attached to it compiled by weft-l7
//! once per service port (a route's `port` 0 attaches to every port), and the choice for
//! one request: no route on the port means the default route (the original destination),
//! routes that do not match mean 404.
//!
//! A waypoint service's routes are split as GAMMA says (GEP-1294): *producer* routes live in
//! the service's namespace and apply to every caller; *consumer* routes live in another
//! namespace and apply only to callers from that namespace, for whom they replace the
//! producer routes. A gateway listener (no service namespace) has producer routes only.

use std::collections::HashMap;

use weft_l7::{RequestView, RouteTable, Selected};
use weft_proto::l7 as pb;

use crate::config::BoundPort;

/// What routing decided.
#[derive(Debug, Clone, Copy)]
pub enum RouteChoice<'a> {
    /// No route on this port: forward to the original destination.
    Default,
    /// A rule matched.
    Rule(Selected<'a>),
    /// Routes exist but none matches (404).
    NoMatch,
}

/// The routes of one bound service.
#[derive(Debug, Default)]
pub struct Routes {
    /// Routes of the service's own namespace, for callers without consumer routes.
    producer: PortTables,
    /// Consumer routes by their namespace, for callers from that namespace.
    consumers: HashMap<String, PortTables>,
}

/// One set of routes compiled per service port.
#[derive(Debug, Default)]
struct PortTables {
    by_port: HashMap<u16, RouteTable>,
    /// Routes for ports the resource does not declare (those with `port` 0).
    other_ports: RouteTable,
}

impl Routes {
    /// Compiles the routes attached to a service of `namespace` (empty: a gateway listener,
    /// whose routes all apply to every caller) with `ports`.
    ///
    /// # Errors
    /// `(field, reason)` for the first route that cannot be used: a route left out would
    /// silently send its traffic elsewhere, so the whole resource is refused instead.
    pub fn compile(
        routes: &[pb::Route],
        namespace: &str,
        ports: &[BoundPort],
    ) -> Result<Self, (String, String)> {
        let is_consumer = |r: &pb::Route| {
            !namespace.is_empty() && !r.namespace.is_empty() && r.namespace != namespace
        };
        let producer: Vec<&pb::Route> = routes.iter().filter(|r| !is_consumer(r)).collect();
        let mut by_namespace: HashMap<&str, Vec<&pb::Route>> = HashMap::new();
        for route in routes.iter().filter(|r| is_consumer(r)) {
            by_namespace
                .entry(&route.namespace)
                .or_default()
                .push(route);
        }
        let compiled = Self {
            producer: PortTables::compile(&producer, ports),
            consumers: by_namespace
                .into_iter()
                .map(|(ns, routes)| (ns.to_owned(), PortTables::compile(&routes, ports)))
                .collect(),
        };
        let first_error = std::iter::once(&compiled.producer)
            .chain(compiled.consumers.values())
            .flat_map(PortTables::tables)
            .find_map(|table| table.errors().first());
        if let Some(error) = first_error {
            let at = routes
                .iter()
                .position(|r| r.namespace == error.route.namespace && r.name == error.route.name)
                .map_or_else(String::new, |i| format!("[{i}]"));
            return Err((at, error.to_string()));
        }
        Ok(compiled)
    }

    /// The rule for a request to service port `port` from a caller of `caller_namespace`
    /// (none for a gateway client).
    #[must_use]
    pub fn select(
        &self,
        caller_namespace: Option<&str>,
        port: u16,
        request: &RequestView<'_>,
    ) -> RouteChoice<'_> {
        let tables = caller_namespace
            .and_then(|ns| self.consumers.get(ns))
            .unwrap_or(&self.producer);
        let table = tables.by_port.get(&port).unwrap_or(&tables.other_ports);
        if table.is_empty() {
            return RouteChoice::Default;
        }
        table
            .select(request)
            .map_or(RouteChoice::NoMatch, RouteChoice::Rule)
    }
}

impl PortTables {
    fn compile(routes: &[&pb::Route], ports: &[BoundPort]) -> Self {
        let owned: Vec<pb::Route> = routes.iter().map(|r| (*r).clone()).collect();
        Self {
            other_ports: RouteTable::for_port(&owned, 0),
            by_port: ports
                .iter()
                .map(|p| (p.port, RouteTable::for_port(&owned, p.port)))
                .collect(),
        }
    }

    fn tables(&self) -> impl Iterator<Item = &RouteTable> {
        std::iter::once(&self.other_ports).chain(self.by_port.values())
    }
}
