//! weft's L7 engine, the part the waypoint and the ingress gateway share.
//!
//! It owns turning Gateway API routes (`HTTPRoute`, `GRPCRoute`) into a table and choosing
//! the route rule for a request ([`routes`]). It must not do I/O, listen, or know about
//! HBONE or xDS: callers hand it typed routes and a borrowed view of a request.

pub mod jwt;
pub mod routes;
pub mod trace;

pub use routes::{
    AttachedRoute, RequestView, RouteError, RouteKind, RouteName, RouteTable, RuleAction, Selected,
};
