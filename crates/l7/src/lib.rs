//! weft's L7 engine, the part the waypoint and the ingress gateway share. It does no I/O,
//! opens no listener and knows nothing of HBONE or xDS: callers hand it the wire routes of
//! `weft.l7.v1` and borrowed views of requests.
//!
//! - [`routes`]: [`RouteTable::new`] compiles the wire [`Route`](weft_proto::l7::Route)s of
//!   one parent (regexes once, invalid routes rejected naming the field) and
//!   [`RouteTable::select`] picks the rule for a request by Gateway API precedence.
//! - [`rule`]: the compiled [`Rule`] a selection carries: its [`Filters`], its backends
//!   ([`Rule::pick_backend`], weighted), its [`Timeouts`] and its [`RetryPolicy`].
//! - [`session`]: session persistence: the token a response hands out and the endpoint a
//!   request's token names.
//! - [`filters`]: header modifiers, redirects, URL rewrites and mirrors applied to an
//!   `http` request head or response header map.
//! - [`retry`]: which outcomes are retried and after how long, and the per-service
//!   [`RetryBudget`] that keeps retries from multiplying load.
//! - `from_api` (feature `api`, on by default): Gateway API `HTTPRoute` / `GRPCRoute` to the
//!   wire form, with backend references resolved through a [`from_api::BackendResolver`].
//! - [`jwt`] and [`trace`]: `RequestAuthentication` token validation and W3C / B3 trace
//!   context.
//!
//! A waypoint's request path, in short:
//!
//! ```ignore
//! let table = RouteTable::for_port(&service.routes, port);
//! let selected = table.select(&view)?;                      // None: 404
//! let context = selected.context("http", port);
//! match selected.rule.filters().apply_request(&mut parts, &context)? {
//!     RequestVerdict::Redirect(redirect) => { /* answer redirect.status + Location */ }
//!     RequestVerdict::Forward => {}
//! }
//! let backend = selected.rule.pick_backend(&mut rng)?;     // Err: 500
//! backend.filters().apply_request(&mut parts, &context)?;
//! let (timeouts, retry) = (selected.rule.timeouts(), selected.rule.retry());
//! ```

pub mod filters;
#[cfg(feature = "api")]
pub mod from_api;
pub mod jwt;
pub mod retry;
pub mod routes;
pub mod rule;
pub mod session;
pub mod trace;

pub use filters::{
    FilterContext, FilterError, Filters, HeaderModifier, Mirror, PathModifier, Redirect,
    RedirectResponse, RequestVerdict, Rewrite,
};
pub use retry::{Outcome, RequestGuard, RetryBudget, RetryGuard, RetryPolicy};
pub use routes::{RequestView, RouteError, RouteKind, RouteName, RouteTable, Selected};
pub use rule::{BackendError, RouteBackend, Rule, Timeouts};
pub use session::{SessionPersistence, SessionToken};
