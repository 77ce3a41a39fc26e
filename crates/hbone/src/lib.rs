//! HBONE, the mesh tunnel: HTTP/2 CONNECT streams over mutually authenticated TLS 1.3.
//!
//! This crate owns the wire side of the tunnel: the client with its connection [`Pool`]
//! (one TLS + HTTP/2 connection carries many CONNECT streams), the server
//! ([`HboneServer`], [`serve_connection`]) that validates CONNECT requests and hands them to
//! an [`InboundHandler`], the [`HboneStream`] byte stream, and the zero-copy [`relay`].
//!
//! It must not know about workloads, policy or certificates issuance: callers pass ready
//! `rustls` client/server configs (whose verifiers check SPIFFE identities), decide what a
//! pool key means, and answer every inbound request through their handler.

mod client;
mod error;
mod headers;
mod pool;
mod relay;
mod server;
mod stream;
mod tls;

pub use client::{ConnectRequest, SocketHook, TunnelTarget};
pub use error::{HandshakeError, HboneError, ServerError};
pub use headers::{format_forwarded_for, parse_forwarded_for};
pub use pool::{Pool, PoolConfig, PoolStats, PoolStatsSnapshot};
pub use relay::{Plain, RelayCause, RelayError, RelayIo, RelayOptions, RelayStats, Side, relay};
pub use server::{
    Accepted, HboneServer, InboundDecision, InboundHandler, InboundRequest, ServerOptions,
    serve_connection,
};
pub use stream::{HboneStream, PeerCertificates};

/// Default port of the inbound HBONE listener.
pub const DEFAULT_HBONE_PORT: u16 = 15008;
/// HTTP/2 stream-level flow-control window used on both sides (4 MiB).
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 connection-level flow-control window used on both sides (16 MiB).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// The ALPN protocol id HBONE negotiates.
pub const ALPN_H2: &[u8] = b"h2";
