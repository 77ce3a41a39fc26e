//! HBONE, the mesh tunnel: HTTP/2 CONNECT streams over mutually authenticated TLS 1.3.
//!
//! This crate owns the wire side of the tunnel: the client with its connection [`Pool`]
//! (one TLS + HTTP/2 connection carries many CONNECT streams), the server
//! ([`HboneServer`], [`serve_connection`]) that validates CONNECT requests and hands them to
//! an [`InboundHandler`] (within optional [`limits`] on connections and tunnels per peer
//! identity and in total), the [`HboneStream`] byte stream, and the zero-copy [`relay`].
//!
//! It must not know about workloads, policy or certificates issuance: callers pass ready
//! `rustls` client/server configs (whose verifiers check SPIFFE identities), decide what a
//! pool key means, and answer every inbound request through their handler.
//!
//! ```no_run
//! use std::{net::SocketAddr, sync::Arc};
//! use tokio::net::{TcpListener, TcpStream};
//! use tokio_util::sync::CancellationToken;
//! use weft_hbone::*;
//!
//! # async fn example(
//! #     client_tls: Arc<rustls::ClientConfig>,
//! #     server_tls: Arc<rustls::ServerConfig>,
//! #     mut workload: TcpStream,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // Outbound: key = (source identity, destination identity, source ip, tunnel address).
//! let pool: Pool<(String, String, std::net::IpAddr, SocketAddr)> = Pool::new(PoolConfig::default());
//! let dest: SocketAddr = "10.0.0.7:8080".parse()?;
//! let target = TunnelTarget::new(SocketAddr::new(dest.ip(), DEFAULT_HBONE_PORT), client_tls);
//! let request = ConnectRequest {
//!     forwarded_for: Some("10.0.0.3".parse()?),
//!     baggage: Some("k8s.namespace.name=default".into()),
//!     ..ConnectRequest::new(dest)
//! };
//! let key = ("spiffe://td/ns/a/sa/x".into(), "spiffe://td/ns/b/sa/y".into(), "10.0.0.3".parse()?, target.tunnel_addr);
//! let mut tunnel = pool.connect(key, &target, &request).await?; // Err(HboneError::Status{401,..}) etc.
//! let stats = relay(&mut workload, &mut tunnel, &RelayOptions::default()).await?;
//!
//! // Inbound: authorize each CONNECT, then connect to the workload.
//! let handler = |req: InboundRequest| async move {
//!     // req.peer_certificates -> SPIFFE id; req.authority; req.forwarded_for(); req.baggage()
//!     match TcpStream::connect(req.authority).await {
//!         Ok(upstream) => InboundDecision::Accept(Accepted::new(upstream).on_complete(|result| {
//!             let _ = result; // bytes each way for metrics and the access log
//!         })),
//!         Err(_) => InboundDecision::Reject(http::StatusCode::SERVICE_UNAVAILABLE),
//!     }
//! };
//! let server = HboneServer::new(server_tls, handler, ServerOptions::default());
//! server.serve(TcpListener::bind("0.0.0.0:15008").await?, CancellationToken::new()).await;
//! # Ok(()) }
//! ```

mod client;
mod error;
mod headers;
mod keepalive;
pub mod limits;
mod pool;
mod read_buffer;
mod relay;
mod server;
mod stream;
mod tls;

pub use client::{ConnectRequest, SocketFactory, SocketHook, TunnelTarget};
pub use error::{HandshakeError, HboneError, ServerError};
pub use headers::{format_forwarded_for, parse_forwarded_for};
pub use keepalive::Keepalive;
pub use limits::{InboundLimits, LimitConfig};
pub use pool::{Pool, PoolConfig, PoolStats, PoolStatsSnapshot};
pub use read_buffer::ReadBuffer;
pub use relay::{Plain, RelayCause, RelayError, RelayIo, RelayOptions, RelayStats, Side, relay};
pub use server::{
    Accepted, HboneServer, InboundDecision, InboundHandler, InboundRequest, ServerOptions,
    serve_connection, serve_http2,
};
pub use stream::{HboneStream, PeerCertificates};

/// Default port of the inbound HBONE listener.
pub const DEFAULT_HBONE_PORT: u16 = 15008;
/// HTTP/2 stream-level flow-control window used on both sides (4 MiB).
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 connection-level flow-control window used on both sides (16 MiB).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest header list (decoded) either side accepts on an HBONE connection, advertised in
/// SETTINGS: a CONNECT and its answer carry a few short headers, and h2's default (16 MiB)
/// would let one peer make us buffer that much per stream. A larger request is answered
/// 431, a larger response resets its stream; a header block far larger (about 100 KiB
/// encoded) closes the connection.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// The ALPN protocol id HBONE negotiates.
pub const ALPN_H2: &[u8] = b"h2";
