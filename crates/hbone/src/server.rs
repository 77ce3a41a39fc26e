//! Server side of the tunnel: TLS accept, HTTP/2, CONNECT validation, and handing each
//! valid request to the caller's [`InboundHandler`].
//!
//! Every stream runs in its own task, so a slow or failing stream never blocks the other
//! streams of the connection; every handshake has a deadline, so a client that sends
//! garbage or nothing is closed instead of hanging.

use std::fmt;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServerError;
use crate::headers::{BAGGAGE, FORWARDED, TRACEPARENT, parse_authority, parse_forwarded_for};
use crate::keepalive::{self, Keepalive};
use crate::limits::{Held, InboundLimits, Slot};
use crate::relay::{RelayError, RelayIo, RelayOptions, RelayStats, relay};
use crate::stream::{HboneStream, PeerCertificates};
use crate::tls::{SessionProblem, check_session, peer_certificates, server_with_h2};
use crate::{CONNECTION_WINDOW, STREAM_WINDOW};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Deadline for the TLS handshake and, separately, for the HTTP/2 preface (default 10 s).
    pub handshake_timeout: Duration,
    /// Concurrent CONNECT streams a client may open on one connection (default 1000).
    pub max_concurrent_streams: u32,
    /// HTTP/2 PINGs to each client, so the tunnels of a client that vanished without
    /// closing are torn down (default 30 s / 10 s; `None`: off).
    pub keepalive: Option<Keepalive>,
    /// Limits on connections and tunnels per peer identity and in total, usually shared
    /// by every server of the process (default `None`: unlimited).
    pub limits: Option<Arc<InboundLimits>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1000,
            keepalive: Some(Keepalive::default()),
            limits: None,
        }
    }
}

/// A valid CONNECT request, for the caller to authorize.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The client's certificate chain (leaf first); its SPIFFE URI SAN is the identity.
    pub peer_certificates: PeerCertificates,
    /// The client's TCP address.
    pub peer_addr: SocketAddr,
    /// The requested destination (`:authority`).
    pub authority: SocketAddr,
    /// All request headers.
    pub headers: http::HeaderMap,
}

impl InboundRequest {
    /// The original source IP from the `forwarded` header, if present and parseable.
    #[must_use]
    pub fn forwarded_for(&self) -> Option<IpAddr> {
        parse_forwarded_for(self.header(FORWARDED)?)
    }

    /// The `baggage` header.
    #[must_use]
    pub fn baggage(&self) -> Option<&str> {
        self.header(BAGGAGE)
    }

    /// The `traceparent` header.
    #[must_use]
    pub fn traceparent(&self) -> Option<&str> {
        self.header(TRACEPARENT)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Called with the relay result (bytes each way, or why it stopped early).
pub type CompletionCallback = Box<dyn FnOnce(Result<RelayStats, RelayError>) + Send>;

/// An accepted request: the library answers 200 and relays to `upstream`.
pub struct Accepted<U> {
    upstream: U,
    relay: RelayOptions,
    on_complete: Option<CompletionCallback>,
}

impl<U> Accepted<U> {
    /// Relay to `upstream` with no idle timeout and no completion callback.
    pub fn new(upstream: U) -> Self {
        Self {
            upstream,
            relay: RelayOptions::default(),
            on_complete: None,
        }
    }

    /// Idle timeout and cancellation for the relay.
    #[must_use]
    pub fn with_relay_options(mut self, relay: RelayOptions) -> Self {
        self.relay = relay;
        self
    }

    /// Called once the relay ends, e.g. to record bytes and write the access log.
    #[must_use]
    pub fn on_complete(
        mut self,
        callback: impl FnOnce(Result<RelayStats, RelayError>) + Send + 'static,
    ) -> Self {
        self.on_complete = Some(Box::new(callback));
        self
    }
}

impl<U> fmt::Debug for Accepted<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("relay", &self.relay)
            .field("on_complete", &self.on_complete.is_some())
            .finish_non_exhaustive()
    }
}

/// The handler's answer to an [`InboundRequest`].
#[derive(Debug)]
pub enum InboundDecision<U> {
    /// Answer 200 and relay between the stream and the upstream.
    Accept(Accepted<U>),
    /// Answer with this status (401 denied, 503 unreachable, ...) and end the stream.
    /// A 2xx status is replaced by 500, since it would open a tunnel to nowhere.
    Reject(StatusCode),
    /// Answer 200 and give the stream to the caller (e.g. a waypoint terminating HBONE).
    Handoff(oneshot::Sender<HboneStream>),
}

impl<U> InboundDecision<U> {
    /// Shorthand for `Accept(Accepted::new(upstream))`.
    pub fn accept(upstream: U) -> Self {
        Self::Accept(Accepted::new(upstream))
    }
}

/// Decides what to do with each valid CONNECT request. Implemented for any
/// `Fn(InboundRequest) -> impl Future<Output = InboundDecision<U>>`.
pub trait InboundHandler: Send + Sync + 'static {
    /// The stream accepted requests are relayed to (usually a `TcpStream`).
    type Upstream: RelayIo + Send + 'static;

    /// Authorizes the request and, when allowed, connects to the destination.
    fn handle(
        &self,
        request: InboundRequest,
    ) -> impl Future<Output = InboundDecision<Self::Upstream>> + Send;
}

impl<F, Fut, U> InboundHandler for F
where
    F: Fn(InboundRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = InboundDecision<U>> + Send,
    U: RelayIo + Send + 'static,
{
    type Upstream = U;

    fn handle(&self, request: InboundRequest) -> impl Future<Output = InboundDecision<U>> + Send {
        self(request)
    }
}

/// An HBONE listener: TLS accept with a deadline, then [`serve_connection`].
pub struct HboneServer<H> {
    acceptor: TlsAcceptor,
    handler: Arc<H>,
    options: Arc<ServerOptions>,
}

impl<H> Clone for HboneServer<H> {
    fn clone(&self) -> Self {
        Self {
            acceptor: self.acceptor.clone(),
            handler: Arc::clone(&self.handler),
            options: Arc::clone(&self.options),
        }
    }
}

impl<H: InboundHandler> HboneServer<H> {
    /// `tls` must require and verify client certificates (mutual TLS is the caller's
    /// policy); `h2` is added to its ALPN list if missing.
    pub fn new(tls: Arc<rustls::ServerConfig>, handler: H, options: ServerOptions) -> Self {
        Self {
            acceptor: TlsAcceptor::from(server_with_h2(tls)),
            handler: Arc::new(handler),
            options: Arc::new(options),
        }
    }

    /// Accepts connections until `shutdown` is cancelled, then asks every connection to
    /// finish (HTTP/2 GOAWAY) and returns when all have closed. Bound the drain by
    /// wrapping this future in a timeout.
    pub async fn serve(&self, listener: TcpListener, shutdown: CancellationToken) {
        let connections = TaskTracker::new();
        weft_serve::accept_until(&listener, shutdown.cancelled(), "HBONE", |tcp, peer| {
            let server = self.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                if let Err(error) = server.serve_tcp(tcp, peer, shutdown).await {
                    tracing::debug!(%error, "HBONE connection ended with an error");
                }
            });
        })
        .await;
        // Release the port now so new clients are refused while open streams drain.
        drop(listener);
        connections.close();
        connections.wait().await;
    }

    /// Serves one accepted TCP connection: TLS handshake, then [`serve_connection`].
    ///
    /// # Errors
    /// When the handshake fails or times out, or the HTTP/2 connection fails.
    pub async fn serve_tcp(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        // Best effort: latency tuning must not reject a connection.
        let _ = tcp.set_nodelay(true);
        let after = self.options.handshake_timeout;
        let tls = tokio::time::timeout(after, self.acceptor.accept(tcp))
            .await
            .map_err(|_| ServerError::Timeout { peer, after })?
            .map_err(|source| ServerError::Tls { peer, source })?;
        serve_connection(
            tls,
            peer,
            Arc::clone(&self.handler),
            &self.options,
            shutdown,
        )
        .await
    }
}

/// Serves CONNECT streams on an established server-side TLS stream until the client
/// closes it or `shutdown` is cancelled (then: GOAWAY and wait for open streams).
///
/// # Errors
/// When the session is not TLS 1.3 + ALPN h2, or HTTP/2 fails or times out.
pub async fn serve_connection<IO, H>(
    tls: TlsStream<IO>,
    peer: SocketAddr,
    handler: Arc<H>,
    options: &ServerOptions,
    shutdown: CancellationToken,
) -> Result<(), ServerError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: InboundHandler,
{
    let state = tls.get_ref().1;
    check_session(state).map_err(|problem| match problem {
        SessionProblem::Version(negotiated) => ServerError::TlsVersion { peer, negotiated },
        SessionProblem::Alpn(negotiated) => ServerError::Alpn { peer, negotiated },
    })?;
    let peer_certs = peer_certificates(state);
    serve_http2(tls, peer, peer_certs, handler, options, shutdown).await
}

/// The HTTP/2 half of [`serve_connection`]: serves CONNECT streams on `io`, a transport
/// whose peer has already been authenticated as `peer_certs` (mutual TLS). Every request
/// byte a client controls after the TLS handshake is decoded here, which is why it is
/// public: the fuzz target `hbone_connect` drives it over an in-memory pipe. Never serve
/// a transport that was not authenticated with it.
///
/// # Errors
/// When HTTP/2 fails or times out.
pub async fn serve_http2<IO, H>(
    io: IO,
    peer: SocketAddr,
    peer_certs: PeerCertificates,
    handler: Arc<H>,
    options: &ServerOptions,
    shutdown: CancellationToken,
) -> Result<(), ServerError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: InboundHandler,
{
    let (counted, _connection) = count_connection(options, &peer_certs, peer)?;
    let after = options.handshake_timeout;
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(crate::MAX_HEADER_LIST_BYTES)
        .handshake::<_, Bytes>(io);
    let mut conn = tokio::time::timeout(after, handshake)
        .await
        .map_err(|_| ServerError::Timeout { peer, after })?
        .map_err(|source| ServerError::Http2 { peer, source })?;
    let peer_silent = keepalive::until_peer_silent(conn.ping_pong().zip(options.keepalive));
    tokio::pin!(peer_silent);
    let mut draining = false;
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            () = &mut peer_silent => {
                return Err(ServerError::PeerSilent { peer });
            }
            () = shutdown.cancelled(), if !draining => {
                conn.graceful_shutdown();
                draining = true;
                continue;
            }
        };
        match next {
            None => break,
            Some(Err(source)) => return Err(ServerError::Http2 { peer, source }),
            Some(Ok((request, respond))) => {
                let stream = StreamContext {
                    peer_addr: peer,
                    peer_certs: Arc::clone(&peer_certs),
                    handler: Arc::clone(&handler),
                    counted: counted.clone(),
                };
                tokio::spawn(stream.serve(request, respond));
            }
        }
    }
    poll_fn(|cx| conn.poll_closed(cx))
        .await
        .map_err(|source| ServerError::Http2 { peer, source })
}

/// The limits a connection counts against, and its peer's identity there.
type Counted = Option<(Arc<InboundLimits>, Arc<str>)>;

/// Counts a new connection against [`ServerOptions::limits`]: its identity and its slot
/// (held while it is open).
///
/// # Errors
/// A limit is reached: the connection is refused.
fn count_connection(
    options: &ServerOptions,
    peer_certs: &PeerCertificates,
    peer: SocketAddr,
) -> Result<(Counted, Option<Slot>), ServerError> {
    let Some(limits) = &options.limits else {
        return Ok((None, None));
    };
    let identity = limits.identity_of(peer_certs);
    let slot = limits
        .admit(Held::Connection, &identity)
        .map_err(|limit| ServerError::Limit {
            peer,
            limit: limit.as_str(),
        })?;
    Ok((Some((Arc::clone(limits), identity)), Some(slot)))
}

/// What a stream task needs from its connection.
struct StreamContext<H> {
    peer_addr: SocketAddr,
    peer_certs: PeerCertificates,
    handler: Arc<H>,
    counted: Counted,
}

/// A CONNECT request's `:authority`, headers and body; the rest of the request is not
/// kept. `None` (logged) for anything else.
fn connect_parts(
    request: Request<RecvStream>,
    peer: SocketAddr,
) -> Option<(SocketAddr, HeaderMap, RecvStream)> {
    let authority = parse_authority(request.uri().authority());
    let (parts, body) = request.into_parts();
    match (parts.method, authority) {
        (Method::CONNECT, Some(authority)) => Some((authority, parts.headers, body)),
        (method, _) => {
            tracing::debug!(%method, uri = %parts.uri, %peer, "rejecting malformed HBONE request");
            None
        }
    }
}

impl<H: InboundHandler> StreamContext<H> {
    /// Serves one stream. Everything before the relay (the CONNECT request, the limits,
    /// the handler's decision, the answer) runs in a boxed future that is freed once the
    /// tunnel is open, so the stream's task keeps, for the tunnel's whole life, only what
    /// the relay needs.
    fn serve(
        self,
        request: Request<RecvStream>,
        respond: SendResponse<Bytes>,
    ) -> impl Future<Output = ()> + Send {
        let open = Box::pin(self.open(request, respond));
        async move {
            if let Some((stream, accepted, authority)) = open.await {
                relay_accepted(stream, accepted, authority).await;
            }
        }
    }

    /// Answers the request; `Some` when it was accepted and the tunnel is open.
    async fn open(
        self,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) -> Option<(HboneStream, Accepted<H::Upstream>, SocketAddr)> {
        let Some((authority, headers, body)) = connect_parts(request, self.peer_addr) else {
            reply_status(&mut respond, StatusCode::BAD_REQUEST);
            return None;
        };
        // Held by the tunnel's stream: until the relay ends, or (handed over) until the
        // handler drops the stream.
        let tunnel = match &self.counted {
            Some((limits, identity)) => match limits.admit(Held::Tunnel, identity) {
                Ok(slot) => Some(slot),
                Err(_) => {
                    reply_status(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
                    return None;
                }
            },
            None => None,
        };
        let inbound = InboundRequest {
            peer_certificates: Arc::clone(&self.peer_certs),
            peer_addr: self.peer_addr,
            authority,
            headers,
        };
        match self.handler.handle(inbound).await {
            InboundDecision::Reject(status) => {
                reply_status(&mut respond, status);
                None
            }
            InboundDecision::Accept(accepted) => {
                let stream = self.open_tunnel(respond, body, tunnel)?;
                Some((stream, accepted, authority))
            }
            InboundDecision::Handoff(taker) => {
                if let Some(stream) = self.open_tunnel(respond, body, tunnel) {
                    // The taker may have given up; dropping the stream resets it.
                    let _ = taker.send(stream);
                }
                None
            }
        }
    }

    fn open_tunnel(
        &self,
        mut respond: SendResponse<Bytes>,
        body: RecvStream,
        counted: Option<Slot>,
    ) -> Option<HboneStream> {
        match respond.send_response(Response::new(()), false) {
            Ok(send) => Some(
                HboneStream::new(send, body, Arc::clone(&self.peer_certs), None)
                    .counted_in(counted),
            ),
            Err(error) => {
                tracing::debug!(%error, peer = %self.peer_addr, "HBONE stream closed before the 200 answer");
                None
            }
        }
    }
}

/// Relays an accepted tunnel. Not an `async fn`: the parts of `accepted` are taken out
/// before the future is built, so its state holds each of them once.
fn relay_accepted<U: RelayIo>(
    mut stream: HboneStream,
    accepted: Accepted<U>,
    authority: SocketAddr,
) -> impl Future<Output = ()> {
    let Accepted {
        mut upstream,
        relay: options,
        on_complete,
    } = accepted;
    async move {
        let result = relay(&mut stream, &mut upstream, &options).await;
        match on_complete {
            Some(callback) => callback(result),
            None => {
                if let Err(error) = result {
                    tracing::debug!(%error, %authority, "HBONE relay ended early");
                }
            }
        }
    }
}

fn reply_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let status = if status.is_success() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        status
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Err(error) = respond.send_response(response, true) {
        tracing::debug!(%error, %status, "could not answer HBONE request");
    }
}
