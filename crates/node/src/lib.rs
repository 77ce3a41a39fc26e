//! weft-node: the data-plane-independent core of the node proxy (`weft node`).
//!
//! It owns the proxy's view of the mesh ([`state`]: workloads, services, policies as
//! lock-free snapshots, fed by xDS or a local file), L4 authorization (the `weft-policy`
//! engine; [`policy`] lets it look up the state's policies), Istio-compatible metrics and
//! access logs ([`telemetry`]) and the pure `weft x authz check` evaluation
//! ([`authz_check`]). The workload and service records, endpoint selection ([`lb`]) and
//! connecting to the chosen endpoint are `weft-upstream`'s, shared with the waypoint and
//! the gateway; the state implements its `Directory`.
//!
//! Those core modules do no I/O: no sockets, TLS, HBONE or xDS transport, and nothing in
//! them blocks or takes a lock that a connection could contend on. The data path is wired
//! on top of them in [`proxy`] (listeners, explicit SOCKS5/HTTP CONNECT, outbound HBONE
//! client, inbound HBONE/plaintext servers, policy on open connections, admin pages) and
//! [`process`] (the `weft node` process: state source, certificates, listener binding).
//! In-pod capture ([`capture`]: the pod source, listeners opened inside each pod's network
//! namespace with weft-netns, redirect rules) hands sockets to
//! [`proxy::WorkloadListeners::attach`] and registers a [`proxy::PodNetwork`]; [`dns`]
//! is the DNS proxy it serves in each pod. [`handoff`] names the sockets a restarted
//! proxy takes over from the running one. [`cli`] (feature `cli`) is the node proxy's
//! command line, shared by `weft node` and the `weft-node` binary.

pub mod authz_check;
pub mod capture;
#[cfg(feature = "cli")]
pub mod cli;
pub mod dns;
pub mod handoff;
pub mod policy;
pub mod process;
pub mod proxy;
pub mod state;
pub mod telemetry;
mod validation;

pub use weft_upstream::lb;

pub use validation::{Problem, ValidationError};
