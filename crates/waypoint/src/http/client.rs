//! Upstream HTTP connections, pooled per endpoint (`<ip>:<port>` the request goes to) and
//! protocol: HTTP/2 connections are shared by concurrent requests (gRPC multiplexes),
//! HTTP/1.1 connections are kept alive and reused once their previous response was read.
//! Each connection rides one HBONE stream (the HBONE pool shares TLS connections) or a
//! plain TCP connection, wrapped in TLS towards a backend with BackendTLSPolicy settings
//! ([`crate::backend_tls`]); the pool key carries those settings, so a connection is only
//! reused by requests that would have opened the same one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use weft_upstream::UpstreamConnection;

use super::Body;
use crate::backend_tls::{BackendTls, BackendTlsError};

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// What a pooled connection is shared by: the endpoint and the TLS settings towards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    /// `<ip>:<port>` of the endpoint.
    pub endpoint: SocketAddr,
    /// [`BackendTls::key`] of the settings, 0 without TLS.
    pub tls: u64,
}

impl PoolKey {
    /// The key of connections to `endpoint` with `tls`.
    pub fn new(endpoint: SocketAddr, tls: Option<&BackendTls>) -> Self {
        Self {
            endpoint,
            tls: tls.map_or(0, |t| t.key),
        }
    }
}

/// Why a new upstream HTTP connection could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The TLS handshake towards the backend failed.
    #[error(transparent)]
    Tls(#[from] BackendTlsError),
    /// The HTTP handshake failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A connection ready for a request.
pub(crate) enum Sender {
    /// HTTP/1.1 (one request at a time).
    H1(http1::SendRequest<Body>),
    /// HTTP/2 (shared).
    H2(http2::SendRequest<Body>),
}

/// Why a request got no response, and the request when it never left.
pub(crate) type SendError = (hyper::Error, Option<Request<Body>>);

impl Sender {
    /// Sends `request`, resolving at the response headers.
    pub async fn try_send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let result = match self {
            Self::H1(sender) => sender.try_send_request(request).await,
            Self::H2(sender) => sender.try_send_request(request).await,
        };
        result.map_err(|mut error| {
            let unsent = error.take_message();
            (error.into_error(), unsent)
        })
    }
}

/// Open upstream connections by endpoint.
#[derive(Default)]
pub(crate) struct ClientPool {
    h1: Mutex<HashMap<PoolKey, Vec<http1::SendRequest<Body>>>>,
    h2: Mutex<HashMap<PoolKey, http2::SendRequest<Body>>>,
}

impl ClientPool {
    /// A pooled connection to `endpoint` that can take a request now.
    pub fn checkout(&self, endpoint: PoolKey, h2: bool) -> Option<Sender> {
        if h2 {
            let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(&endpoint) {
                Some(sender) if !sender.is_closed() => return Some(Sender::H2(sender.clone())),
                Some(_) => {
                    map.remove(&endpoint);
                }
                None => {}
            }
            return None;
        }
        let mut map = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = map.get_mut(&endpoint)?;
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(Sender::H1(sender));
            }
        }
        None
    }

    /// Shares a new HTTP/2 connection to `endpoint`; closed ones of any endpoint are
    /// dropped meanwhile (endpoints come and go).
    pub fn share_h2(&self, endpoint: PoolKey, sender: &http2::SendRequest<Body>) {
        let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, open| !open.is_closed());
        map.insert(endpoint, sender.clone());
    }

    /// Returns an HTTP/1.1 connection whose response was fully read; closed idle ones of
    /// any endpoint are dropped meanwhile.
    pub fn put_h1(&self, endpoint: PoolKey, sender: http1::SendRequest<Body>) {
        let mut map = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, idle| {
            idle.retain(|s| !s.is_closed());
            !idle.is_empty()
        });
        let idle = map.entry(endpoint).or_default();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(sender);
        }
    }
}

/// Starts an HTTP client connection over an upstream stream (driven by its own task),
/// first wrapped in TLS when the backend has `tls` settings.
///
/// # Errors
/// The TLS or HTTP handshake failed.
pub(crate) async fn handshake(
    connection: UpstreamConnection,
    h2: bool,
    upgrades: bool,
    tls: Option<&BackendTls>,
) -> Result<Sender, HandshakeError> {
    match connection {
        UpstreamConnection::Hbone(stream) => secured(stream, h2, upgrades, tls).await,
        UpstreamConnection::Tcp(stream) => {
            let _ = stream.set_nodelay(true);
            secured(stream, h2, upgrades, tls).await
        }
    }
}

async fn secured<IO>(
    io: IO,
    h2: bool,
    upgrades: bool,
    tls: Option<&BackendTls>,
) -> Result<Sender, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tls {
        Some(tls) => {
            let stream = tls.connect(io, h2).await?;
            Ok(over(stream, h2, upgrades).await?)
        }
        None => Ok(over(io, h2, upgrades).await?),
    }
}

async fn over<IO>(io: IO, h2: bool, upgrades: bool) -> hyper::Result<Sender>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended");
            }
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, connection) = http1::Builder::new().handshake(io).await?;
    tokio::spawn(async move {
        let result = if upgrades {
            connection.with_upgrades().await
        } else {
            connection.await
        };
        if let Err(error) = result {
            tracing::debug!(%error, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(Sender::H1(sender))
}
