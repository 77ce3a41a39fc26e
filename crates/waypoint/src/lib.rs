//! weft-waypoint: the waypoint process of weft's ambient mesh (`weft waypoint run`), the
//! L7 proxy between the source's and the destination's node proxies.
//!
//! Data path: a source node proxy opens HBONE to the waypoint with the source workload's
//! certificate and the original destination as CONNECT authority (`tunnel`); the waypoint
//! finds the bound service and its port's protocol, sniffing it when undeclared
//! ([`detect`]); HTTP/1.1 and h2c requests go through the pipeline (authorization with
//! weft-policy, routes from the `weft.l7.v1.Waypoint` resource, filters, weighted backends,
//! timeouts, retries within a budget, passive outlier detection) and out over pooled HTTP
//! connections inside HBONE streams opened with the waypoint's own identity through
//! weft-upstream; opaque TCP gets L4 policy and a relay. Metrics use Istio's names with
//! `reporter="waypoint"`; every request writes an access-log event.
//!
//! Configuration arrives over delta xDS ([`process`]): `istio.workload.Address` (wildcard,
//! into the node proxy's state store) and this waypoint's `weft.l7.v1.Waypoint` by name,
//! compiled by [`config`]. The waypoint fails closed until both have arrived.
//!
//! Restarts lose no connection: a new process takes the listening sockets of the running
//! one over a Unix socket (`restart`, `--handoff-socket`), and the old one drains.
//!
//! See `docs/waypoint.md` for the behaviour in detail (status codes, response flags).

pub mod backend_tls;
mod budget;
pub mod config;
pub mod detect;
pub mod gateway;
mod http;
pub mod otlp;
pub mod outlier;
pub mod process;
pub mod recent_spans;
mod restart;
pub mod reverse_proxy;
pub mod routing;
mod tcp;
pub mod telemetry;
mod tunnel;
mod waypoint;
mod xds;

pub use config::{ConfigError, WaypointConfig};
pub use outlier::OutlierConfig;
pub use process::{BoundAddrs, ListenAddrs, RunningWaypoint, StartError, WaypointProcess, run};
pub use waypoint::Role;
pub use waypoint::{
    DEFAULT_HTTP_IDLE_TIMEOUT, DEFAULT_MIRRORS_IN_FLIGHT, Span, Tracer, Waypoint, WaypointOptions,
};
