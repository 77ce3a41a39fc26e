//! A generic delta xDS (aggregated discovery service) server and client. It moves versioned,
//! named resources of any type URL between a control plane and proxies; it knows nothing
//! about what the resources mean.
//!
//! It owns the delta protocol state machines: subscriptions (wildcard, by name, by alias),
//! versions and `initial_resource_versions`, nonces, ACK/NACK, debouncing and per-stream
//! coalescing on the server; handlers, NACK of invalid resources, reconnect with backoff and
//! last-good state on the client. It must not translate configuration, open listeners, build
//! TLS configurations or decide who is allowed in (callers supply a [`StreamAuthenticator`]).
//!
//! Control plane side: [`XdsServer::new`] returns the server and a [`ResourcePublisher`];
//! publish [`XdsResource`]s per type URL and mount [`XdsServer::service`] on a tonic router.
//! Proxy side: see [`client`].
//!
//! ```no_run
//! # async fn example(workload_any: prost_types::Any) -> Result<(), Box<dyn std::error::Error>> {
//! use weft_xds::{ServerConfig, XdsResource, XdsServer, bearer_token, AuthError, PeerIdentity};
//!
//! let mut registry = prometheus_client::registry::Registry::default();
//! let auth = |md: &tonic::metadata::MetadataMap| match bearer_token(md) {
//!     Some(token) if token == "expected" => Ok(PeerIdentity { principal: "node-1".into() }),
//!     _ => Err(AuthError::new("unknown bearer token")),
//! };
//! let (server, publisher) = XdsServer::new(ServerConfig::default(), auth, &mut registry);
//! // Initial state of every served type (streams are answered after the first publish).
//! publisher.replace(
//!     weft_proto::ADDRESS_TYPE_URL,
//!     [XdsResource::new("Kubernetes//Pod/default/web-1", vec!["/10.0.0.1".into()], workload_any)],
//! );
//! publisher.replace(weft_proto::AUTHORIZATION_TYPE_URL, []);
//! let router = tonic::transport::Server::builder().add_service(server.service());
//! // ... serve `router` on the TLS listener; `server.sync_status()` backs /debug/syncz.
//! # Ok(()) }
//! ```

mod auth;
mod metrics;
mod publisher;
mod resource;
mod server;
mod status;

pub use auth::{
    AllowAnonymous, AuthError, BoxFuture, PeerIdentity, StreamAuthenticator, bearer_token,
};
pub use publisher::{DebounceConfig, ResourcePublisher};
pub use resource::{Snapshot, TypeResources, XdsResource, content_version};
pub use server::{ServerConfig, XdsServer};
pub use status::{
    METRICS_ADDR_METADATA, NackStatus, ProxyStatus, TypeStatus, VersionNonce, proxy_metadata,
    string_metadata,
};

pub mod client;

/// Ends the `system_version_info` of a response that is one part of a larger update (the
/// server caps response size); the last part carries the plain version. weft's client
/// counts a type as received only once a response without it arrives, so a proxy is not
/// ready with half a mesh. Envoy and Istio do not interpret `system_version_info`.
pub const PARTIAL_VERSION_SUFFIX: &str = "+more";
