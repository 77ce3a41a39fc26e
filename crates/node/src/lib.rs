//! weft-node: the data-plane-independent core of the node proxy (`weft node`).
//!
//! It owns the proxy's view of the mesh ([`state`]: workloads, services, policies as
//! lock-free snapshots, fed by xDS or a local file), L4 authorization ([`policy`]),
//! endpoint selection ([`lb`]), Istio-compatible metrics and access logs ([`telemetry`]) and
//! the pure `weft x authz check` evaluation ([`authz_check`]).
//!
//! It must not do I/O on the connection path beyond what it is handed: no sockets, TLS,
//! HBONE, xDS transport or capture live here (those are weft-hbone, weft-identity,
//! weft-xds and weft-netns, wired on top of these modules), and nothing here blocks or
//! takes a lock that a connection could contend on.

pub mod authz_check;
mod identity;
pub mod lb;
pub mod policy;
pub mod state;
pub mod telemetry;
mod validation;

pub use identity::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, Identity, IdentityParseError};
pub use validation::{Problem, ValidationError};
