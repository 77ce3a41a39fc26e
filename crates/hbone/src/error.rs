//! Error types: what failed, against which address, and why.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Establishing a tunnel connection (TCP, TLS, HTTP/2 preface) failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("creating a socket for tunnel {tunnel} failed: {source}")]
    Socket {
        tunnel: SocketAddr,
        source: io::Error,
    },
    #[error("binding local address {local_ip} for tunnel {tunnel} failed: {source}")]
    Bind {
        local_ip: IpAddr,
        tunnel: SocketAddr,
        source: io::Error,
    },
    #[error("the socket hook refused the socket for tunnel {tunnel}: {source}")]
    SocketHook {
        tunnel: SocketAddr,
        source: io::Error,
    },
    #[error("TCP connect to tunnel {tunnel} failed: {source}")]
    Tcp {
        tunnel: SocketAddr,
        source: io::Error,
    },
    #[error("TLS handshake with tunnel {tunnel} failed: {source}")]
    Tls {
        tunnel: SocketAddr,
        source: io::Error,
    },
    #[error("tunnel {tunnel} negotiated {negotiated} instead of TLS 1.3")]
    TlsVersion {
        tunnel: SocketAddr,
        negotiated: String,
    },
    #[error("tunnel {tunnel} did not negotiate ALPN h2 (got {negotiated})")]
    Alpn {
        tunnel: SocketAddr,
        negotiated: String,
    },
    #[error("HTTP/2 handshake with tunnel {tunnel} failed: {source}")]
    Http2 {
        tunnel: SocketAddr,
        source: h2::Error,
    },
    #[error("tunnel {tunnel} closed the connection before its HTTP/2 preface")]
    ClosedByPeer { tunnel: SocketAddr },
    #[error("tunnel {tunnel} is shutting down: it answered the new connection with HTTP/2 GOAWAY")]
    GoingAway { tunnel: SocketAddr },
    #[error("handshake with tunnel {tunnel} did not finish within {after:?}")]
    Timeout { tunnel: SocketAddr, after: Duration },
}

impl HandshakeError {
    /// The server ended the new connection before any request was sent on it (it closed
    /// it, or sent GOAWAY because it is draining, e.g. a proxy handing its listeners to a
    /// successor): another connection may be tried safely.
    #[must_use]
    pub fn peer_went_away(&self) -> bool {
        matches!(self, Self::ClosedByPeer { .. } | Self::GoingAway { .. })
    }
}

/// Opening an HBONE stream failed.
#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    /// The connection could not be established. Shared (`Arc`) because one handshake
    /// serves every caller that waited for it during a burst.
    #[error(transparent)]
    Handshake(Arc<HandshakeError>),
    /// The server answered the CONNECT with a non-200 status (400 bad request, 401 denied,
    /// 503 destination unreachable, ...).
    #[error("CONNECT {authority} via tunnel {tunnel} was answered with status {status}")]
    Status {
        status: u16,
        authority: SocketAddr,
        tunnel: SocketAddr,
    },
    /// The HTTP/2 exchange for the CONNECT request failed.
    #[error("CONNECT {authority} via tunnel {tunnel} failed at the HTTP/2 layer: {source}")]
    Http2 {
        authority: SocketAddr,
        tunnel: SocketAddr,
        source: h2::Error,
    },
    /// A caller-provided header value is not a valid HTTP header value.
    #[error("header {name} has an invalid value {value:?}")]
    InvalidHeader { name: &'static str, value: String },
}

impl HboneError {
    /// The HTTP status the server answered with, when that is why the stream failed.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Serving one inbound tunnel connection failed; the connection has been closed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS handshake from {peer} failed: {source}")]
    Tls { peer: SocketAddr, source: io::Error },
    #[error("client {peer} negotiated {negotiated} instead of TLS 1.3")]
    TlsVersion {
        peer: SocketAddr,
        negotiated: String,
    },
    #[error("client {peer} did not negotiate ALPN h2 (got {negotiated})")]
    Alpn {
        peer: SocketAddr,
        negotiated: String,
    },
    #[error("handshake with {peer} did not finish within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
    #[error("HTTP/2 connection with {peer} failed: {source}")]
    Http2 { peer: SocketAddr, source: h2::Error },
    #[error("client {peer} stopped answering keepalive PINGs; connection closed")]
    PeerSilent { peer: SocketAddr },
    #[error("connection from {peer} refused: the {limit} limit of inbound connections is reached")]
    Limit {
        peer: SocketAddr,
        limit: &'static str,
    },
}
