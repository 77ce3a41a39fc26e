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

/// HTTP/1.1 connections kept per endpoint (idle ones, and ones whose response is still
/// being read: they are pooled as soon as the response head arrived).
const MAX_POOLED_PER_ENDPOINT: usize = 128;

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
        let pooled = map.get_mut(&endpoint)?;
        // From the most recently pooled: the first that can take a request now; closed
        // ones go, busy ones (a response still being read) stay for later requests.
        let mut index = pooled.len();
        while index > 0 {
            index -= 1;
            if pooled[index].is_ready() {
                return Some(Sender::H1(pooled.swap_remove(index)));
            }
            if pooled[index].is_closed() {
                pooled.swap_remove(index);
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

    /// Pools an HTTP/1.1 connection right after its response head arrived: no task waits
    /// for the response body to be read; [`Self::checkout`] takes it once it is ready again.
    /// When `endpoint` is new, closed connections of any endpoint are dropped meanwhile
    /// (endpoints come and go).
    pub fn put_h1(&self, endpoint: PoolKey, sender: http1::SendRequest<Body>) {
        let mut map = self.h1.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pooled) = map.get_mut(&endpoint) {
            if pooled.len() < MAX_POOLED_PER_ENDPOINT {
                pooled.push(sender);
            } else if let Some(busy) = pooled.iter().position(|s| !s.is_ready()) {
                // Full: the new one replaces one that cannot take a request now (closed, or
                // still reading a response: it closes once that response ends), so
                // long-lived responses (event streams, downloads) do not keep every later
                // connection to the endpoint out of the pool. Full of ready ones: the
                // new one is a surplus and goes.
                pooled[busy] = sender;
            }
            return;
        }
        map.retain(|_, pooled| {
            pooled.retain(|s| !s.is_closed());
            !pooled.is_empty()
        });
        map.insert(endpoint, vec![sender]);
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
            .max_header_list_size(super::MAX_HEADER_LIST_BYTES)
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use http_body_util::BodyExt as _;
    use hyper::service::service_fn;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Bytes of each answer: more than the client connection reads ahead, so a response
    /// keeps its connection busy until its body has been read.
    const ANSWER: usize = 1 << 20;

    /// The path the test server answers with a body that never ends.
    const ENDLESS: &str = "/endless";

    /// A response body that never ends (an event stream, say).
    struct Endless;

    impl hyper::body::Body for Endless {
        type Data = bytes::Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    /// An HTTP/1.1 server on loopback answering [`ANSWER`] bytes ([`ENDLESS`]: a body that
    /// never ends); counts the connections it accepted.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = service_fn(|request: Request<Incoming>| async move {
                    let body = if request.uri().path() == ENDLESS {
                        crate::http::boxed(Endless)
                    } else {
                        crate::http::full(vec![b'x'; ANSWER])
                    };
                    Ok::<_, Infallible>(Response::new(body))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer),
                );
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<Body> {
        Request::get("/")
            .body(crate::http::empty())
            .expect("request")
    }

    /// Checks out a pooled connection, polling until one is ready (or `None` at the deadline).
    async fn ready_checkout(pool: &ClientPool, key: PoolKey) -> Option<Sender> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(sender) = pool.checkout(key, false) {
                return Some(sender);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A new HTTP/1.1 connection to `addr`.
    async fn connect(addr: SocketAddr) -> Sender {
        let stream = TcpStream::connect(addr).await.expect("connect");
        handshake(UpstreamConnection::Tcp(stream), false, false, None)
            .await
            .expect("handshake")
    }

    /// Sends `request` on `sender` and pools the connection at the response head.
    async fn send_and_pool(
        pool: &ClientPool,
        key: PoolKey,
        mut sender: Sender,
        request: Request<Body>,
    ) -> Response<Incoming> {
        let response = sender.try_send(request).await.expect("response");
        let Sender::H1(h1) = sender else {
            panic!("an HTTP/1.1 connection")
        };
        pool.put_h1(key, h1);
        response
    }

    #[tokio::test]
    async fn a_connection_pooled_with_its_response_unread_is_reused_once_read() {
        let (addr, accepted) = server().await;
        let pool = ClientPool::default();
        let key = PoolKey::new(addr, None);
        let response = send_and_pool(&pool, key, connect(addr).await, get()).await;
        assert!(
            pool.checkout(key, false).is_none(),
            "a connection whose response is still unread is not handed out"
        );
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes().len(), ANSWER);
        for _ in 0..3 {
            let pooled = ready_checkout(&pool, key)
                .await
                .expect("the pooled connection");
            let response = send_and_pool(&pool, key, pooled, get()).await;
            response.into_body().collect().await.expect("body");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one upstream connection"
        );
    }

    #[tokio::test]
    async fn closed_connections_leave_the_pool() {
        let (addr, _) = server().await;
        let pool = ClientPool::default();
        let key = PoolKey::new(addr, None);
        let mut request = get();
        request.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        let response = send_and_pool(&pool, key, connect(addr).await, request).await;
        response.into_body().collect().await.expect("body");
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.h1.lock().expect("pool")[&key].len() == 1 {
            assert!(
                pool.checkout(key, false).is_none(),
                "a closing connection is not handed out"
            );
            assert!(
                Instant::now() < deadline,
                "the closed connection stayed pooled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn long_lived_responses_do_not_keep_later_connections_out_of_a_full_pool() {
        let (addr, accepted) = server().await;
        let pool = ClientPool::default();
        let key = PoolKey::new(addr, None);
        let mut streams = Vec::new();
        for _ in 0..MAX_POOLED_PER_ENDPOINT {
            let request = Request::get(ENDLESS)
                .body(crate::http::empty())
                .expect("request");
            streams.push(send_and_pool(&pool, key, connect(addr).await, request).await);
        }
        let response = send_and_pool(&pool, key, connect(addr).await, get()).await;
        response.into_body().collect().await.expect("body");
        let reused = ready_checkout(&pool, key).await;
        assert!(
            reused.is_some(),
            "the connection whose response ended is reused"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), MAX_POOLED_PER_ENDPOINT + 1);
        drop(streams);
    }
}
