//! weft-upstream: the one upstream connector of the node proxy, the waypoint and the
//! gateway — from a destination (service VIP:port, service hostname, workload address) to
//! an open connection to one endpoint.
//!
//! It owns:
//! - the records of workloads and services the workload xDS API (`istio.workload.Address`)
//!   describes, validated ([`records`]), and the shared forms a state snapshot indexes
//!   ([`MeshWorkload`] with its live connection counter, [`MeshService`] with its
//!   [`Endpoint`]s, and each endpoint's [`EndpointKey`], computed once per endpoint set,
//!   by which session persistence finds it);
//! - endpoint choice ([`lb`]: health, locality preference, power of two choices);
//! - routing a destination ([`Upstream::route`]: load-balanced endpoint, direct workload,
//!   waypoint, or passthrough) and connecting to it ([`Upstream::connect`]): HBONE to
//!   `<endpoint>:15008` with authority `<endpoint>:<target port>`, presenting the caller's
//!   certificate and expecting the endpoint's identity, or plain TCP for an endpoint
//!   outside the mesh.
//!
//! It must not make policy decisions, open listeners, record telemetry, or know where the
//! state comes from (xDS, a file): callers look the state up through [`Directory`] and
//! supply the identity to present and the sockets to use through [`Client`]. Routing reads
//! the snapshot without locks or allocation beyond the route itself.

mod connect;
mod endpoint_keys;
pub mod lb;
mod mesh;
mod names;
pub mod records;
mod resolve;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use connect::{
    Client, ClientError, PoolKey, Route, Upstream, UpstreamConnection, UpstreamError, ip_from_bytes,
};
pub use endpoint_keys::{EndpointKey, KeyFn};
pub use mesh::{ActiveConnection, Destination, Directory, Endpoint, MeshService, MeshWorkload};
pub use names::WorkloadNames;
pub use records::{AddressRecord, PortMapping, ServiceRecord, WorkloadRecord};
pub use resolve::NameResolver;
