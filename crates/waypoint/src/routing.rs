//! Route selection for one bound service: the routes attached to it compiled by weft-l7
//! once per service port (a route's `port` 0 attaches to every port), and the choice for
//! one request: no route on the port means the default route (the original destination),
//! routes that do not match mean 404.

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
    by_port: HashMap<u16, RouteTable>,
    /// Routes for ports the resource does not declare (those with `port` 0).
    other_ports: RouteTable,
}

impl Routes {
    /// Compiles the routes attached to a service with `ports`.
    ///
    /// # Errors
    /// `(field, reason)` for the first route that cannot be used: a route left out would
    /// silently send its traffic elsewhere, so the whole resource is refused instead.
    pub fn compile(routes: &[pb::Route], ports: &[BoundPort]) -> Result<Self, (String, String)> {
        let other_ports = RouteTable::for_port(routes, 0);
        let by_port: HashMap<u16, RouteTable> = ports
            .iter()
            .map(|p| (p.port, RouteTable::for_port(routes, p.port)))
            .collect();
        let first_error = std::iter::once(&other_ports)
            .chain(by_port.values())
            .find_map(|table| table.errors().first());
        if let Some(error) = first_error {
            let at = routes
                .iter()
                .position(|r| r.namespace == error.route.namespace && r.name == error.route.name)
                .map_or_else(String::new, |i| format!("[{i}]"));
            return Err((at, error.to_string()));
        }
        Ok(Self {
            by_port,
            other_ports,
        })
    }

    /// The rule for a request to service port `port`.
    #[must_use]
    pub fn select(&self, port: u16, request: &RequestView<'_>) -> RouteChoice<'_> {
        let table = self.by_port.get(&port).unwrap_or(&self.other_ports);
        if table.is_empty() {
            return RouteChoice::Default;
        }
        table
            .select(request)
            .map_or(RouteChoice::NoMatch, RouteChoice::Rule)
    }
}
