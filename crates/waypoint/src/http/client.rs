//! Upstream HTTP connections, pooled per endpoint (`<ip>:<port>` the request goes to) and
//! protocol: HTTP/2 connections are shared by concurrent requests (gRPC multiplexes),
//! HTTP/1.1 connections are kept alive and reused once their previous response was read.
//! Each connection rides one HBONE stream (the HBONE pool shares TLS connections).

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

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

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
    h1: Mutex<HashMap<SocketAddr, Vec<http1::SendRequest<Body>>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<Body>>>,
}

impl ClientPool {
    /// A pooled connection to `endpoint` that can take a request now.
    pub fn checkout(&self, endpoint: SocketAddr, h2: bool) -> Option<Sender> {
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
    pub fn share_h2(&self, endpoint: SocketAddr, sender: &http2::SendRequest<Body>) {
        let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, open| !open.is_closed());
        map.insert(endpoint, sender.clone());
    }

    /// Returns an HTTP/1.1 connection whose response was fully read; closed idle ones of
    /// any endpoint are dropped meanwhile.
    pub fn put_h1(&self, endpoint: SocketAddr, sender: http1::SendRequest<Body>) {
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

/// Starts an HTTP client connection over an upstream stream (driven by its own task).
///
/// # Errors
/// The HTTP handshake failed.
pub(crate) async fn handshake(
    connection: UpstreamConnection,
    h2: bool,
    upgrades: bool,
) -> hyper::Result<Sender> {
    match connection {
        UpstreamConnection::Hbone(stream) => over(stream, h2, upgrades).await,
        UpstreamConnection::Tcp(stream) => {
            let _ = stream.set_nodelay(true);
            over(stream, h2, upgrades).await
        }
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
