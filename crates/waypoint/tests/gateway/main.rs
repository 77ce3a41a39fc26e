//! `weft gateway` end to end on loopback: an in-process delta xDS server publishing the
//! workload API and the Gateway resource, the gateway (`weft_waypoint::gateway::run`)
//! listening on its own loopback address, mesh backends behind real HBONE listeners (the
//! waypoint tests' fixtures), a plain backend outside HBONE, and plain HTTP clients.

#[path = "../waypoint/harness.rs"]
mod harness;

mod conformance;
mod conformance_cors;
mod conformance_filters;
mod conformance_grpc;
mod conformance_http;
mod conformance_listener_set;
mod conformance_retry;
mod conformance_session;
mod fixture;
mod http;
mod lifecycle;
