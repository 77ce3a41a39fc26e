//! The waypoint end to end on loopback: a delta xDS server publishing the workload API and
//! the Waypoint resource, the waypoint, backend workloads behind real HBONE listeners, and
//! a client workload whose HBONE tunnels go to the waypoint.

mod backend_tls;
mod config;
mod conformance_mesh;
mod dns_endpoints;
mod harness;
mod http;
mod jwt;
mod limits;
mod logs;
mod otlp;
mod request_head;
mod resilience;
