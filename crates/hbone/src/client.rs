//! Client side of the tunnel: establishing a TLS + HTTP/2 connection and opening CONNECT
//! streams on it. [`crate::Pool`] decides which connection a stream goes to.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use http::{HeaderValue, Method, Request, StatusCode};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{HandshakeError, HboneError};
use crate::headers::{BAGGAGE, FORWARDED, TRACEPARENT, format_forwarded_for};
use crate::stream::PeerCertificates;
use crate::tls::{SessionProblem, check_session, client_with_h2, peer_certificates};
use crate::{CONNECTION_WINDOW, STREAM_WINDOW};

/// Called on every outbound tunnel socket before it connects, e.g. to set `SO_MARK` so
/// capture rules do not redirect the proxy's own traffic.
pub type SocketHook = Arc<dyn Fn(&TcpSocket, SocketAddr) -> io::Result<()> + Send + Sync>;

/// Creates the (unconnected) socket for a tunnel to the given address, e.g. inside the
/// source pod's network namespace so the tunnel leaves with the pod's own IP.
pub type SocketFactory = Arc<
    dyn Fn(SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<TcpSocket>> + Send>> + Send + Sync,
>;

/// Where and how to reach the tunnel endpoint (the remote node proxy or waypoint).
#[derive(Clone)]
pub struct TunnelTarget {
    /// The HBONE listener, usually `<destination workload ip>:15008`.
    pub tunnel_addr: SocketAddr,
    /// TLS config carrying the source workload's certificate and a verifier that checks
    /// the expected destination identity. `h2` is added to ALPN if missing.
    pub tls: Arc<rustls::ClientConfig>,
    /// Bind the outbound socket to this local address (the source workload's IP).
    pub local_ip: Option<IpAddr>,
    /// Name given to the verifier; defaults to the tunnel IP (which sends no SNI).
    pub server_name: Option<ServerName<'static>>,
    /// Where the TCP socket comes from; `None` creates one in the caller's namespace.
    pub socket_factory: Option<SocketFactory>,
}

impl fmt::Debug for TunnelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelTarget")
            .field("tunnel_addr", &self.tunnel_addr)
            .field("local_ip", &self.local_ip)
            .field("server_name", &self.server_name)
            .field("socket_factory", &self.socket_factory.is_some())
            .finish_non_exhaustive()
    }
}

impl TunnelTarget {
    /// A target with the given address and TLS config, no local bind, default name.
    #[must_use]
    pub fn new(tunnel_addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tunnel_addr,
            tls,
            local_ip: None,
            server_name: None,
            socket_factory: None,
        }
    }
}

/// One CONNECT request: the real destination and the metadata headers.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// `:authority`: the destination workload address (not a service VIP).
    pub authority: SocketAddr,
    /// Original source IP, sent as `forwarded: for=<ip>`.
    pub forwarded_for: Option<IpAddr>,
    /// `baggage` header (workload metadata for telemetry); shared, since a proxy sends
    /// the same value on every connection of a workload.
    pub baggage: Option<Arc<str>>,
    /// `traceparent` header (W3C trace context).
    pub traceparent: Option<String>,
}

impl ConnectRequest {
    /// A request for `authority` with no metadata headers.
    #[must_use]
    pub fn new(authority: SocketAddr) -> Self {
        Self {
            authority,
            forwarded_for: None,
            baggage: None,
            traceparent: None,
        }
    }
}

/// A freshly established tunnel connection; `driver` must be polled (spawned) for any
/// stream on `sender` to make progress.
pub(crate) struct Established {
    pub(crate) sender: SendRequest<Bytes>,
    pub(crate) driver: ClientDriver,
    pub(crate) peer: PeerCertificates,
}

/// TCP connect (optionally bound / hooked), TLS 1.3 with ALPN h2, HTTP/2 preface.
pub(crate) async fn establish(
    target: &TunnelTarget,
    hook: Option<&SocketHook>,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    let tunnel = target.tunnel_addr;
    tokio::time::timeout(timeout, establish_inner(target, hook))
        .await
        .map_err(|_| HandshakeError::Timeout {
            tunnel,
            after: timeout,
        })?
}

async fn establish_inner(
    target: &TunnelTarget,
    hook: Option<&SocketHook>,
) -> Result<Established, HandshakeError> {
    let tunnel = target.tunnel_addr;
    let tcp = connect_tcp(target, hook).await?;
    let name = target
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(tunnel.ip().into()));
    let tls = TlsConnector::from(client_with_h2(&target.tls))
        .connect(name, tcp)
        .await
        .map_err(|source| HandshakeError::Tls { tunnel, source })?;
    let state = tls.get_ref().1;
    check_session(state).map_err(|problem| match problem {
        SessionProblem::Version(negotiated) => HandshakeError::TlsVersion { tunnel, negotiated },
        SessionProblem::Alpn(negotiated) => HandshakeError::Alpn { tunnel, negotiated },
    })?;
    let peer = peer_certificates(state);
    let (first_bytes_tx, first_bytes) = oneshot::channel();
    let io = FirstRead {
        io: tls,
        first_read: Some(first_bytes_tx),
    };
    let (sender, mut driver) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .max_header_list_size(crate::MAX_HEADER_LIST_BYTES)
        .handshake(io)
        .await
        .map_err(|source| HandshakeError::Http2 { tunnel, source })?;
    await_server_preface(&mut driver, first_bytes, tunnel).await?;
    Ok(Established {
        sender,
        driver,
        peer,
    })
}

/// In TLS 1.3 the server checks our certificate after our handshake already finished, so
/// a refused client only learns it from the next read. Drive the connection until the
/// server's HTTP/2 preface arrives: a connection in the pool is one the server accepted.
async fn await_server_preface(
    driver: &mut ClientDriver,
    mut first_bytes: oneshot::Receiver<()>,
    tunnel: SocketAddr,
) -> Result<(), HandshakeError> {
    poll_fn(|cx| {
        if Pin::new(&mut first_bytes).poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let ended = ready!(Pin::new(&mut *driver).poll(cx));
        // Bytes arrived and the connection still ended: the server's preface came with a
        // GOAWAY (a draining server finishing a connection it accepted late).
        let preface_came = first_bytes.try_recv().is_ok();
        Poll::Ready(Err(match ended {
            Err(source) if is_draining(&source) => HandshakeError::GoingAway { tunnel },
            Err(source) => HandshakeError::Http2 { tunnel, source },
            Ok(()) if preface_came => HandshakeError::GoingAway { tunnel },
            Ok(()) => HandshakeError::ClosedByPeer { tunnel },
        }))
    })
    .await
}

/// A GOAWAY the server sent without an error: it finishes its connections (draining).
fn is_draining(error: &h2::Error) -> bool {
    error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR)
}

/// The HTTP/2 client connection as the pool drives it.
pub(crate) type ClientDriver = Connection<FirstRead<TlsStream<TcpStream>>, Bytes>;

/// Passes I/O through, reporting once when the first plaintext bytes arrive.
pub(crate) struct FirstRead<IO> {
    io: IO,
    first_read: Option<oneshot::Sender<()>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstRead<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() > before
            && let Some(first_read) = this.first_read.take()
        {
            let _ = first_read.send(());
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstRead<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

async fn connect_tcp(
    target: &TunnelTarget,
    hook: Option<&SocketHook>,
) -> Result<TcpStream, HandshakeError> {
    let tunnel = target.tunnel_addr;
    let socket = match &target.socket_factory {
        Some(factory) => factory(tunnel).await,
        None if tunnel.is_ipv4() => TcpSocket::new_v4(),
        None => TcpSocket::new_v6(),
    }
    .map_err(|source| HandshakeError::Socket { tunnel, source })?;
    socket
        .set_nodelay(true)
        .map_err(|source| HandshakeError::Socket { tunnel, source })?;
    if let Some(local_ip) = target.local_ip {
        socket
            .bind(SocketAddr::new(local_ip, 0))
            .map_err(|source| HandshakeError::Bind {
                local_ip,
                tunnel,
                source,
            })?;
    }
    if let Some(hook) = hook {
        hook(&socket, tunnel).map_err(|source| HandshakeError::SocketHook { tunnel, source })?;
    }
    socket
        .connect(tunnel)
        .await
        .map_err(|source| HandshakeError::Tcp { tunnel, source })
}

/// How opening a stream on an existing connection failed.
pub(crate) enum OpenFailure {
    /// The connection is closing or dead and the request was not processed: another
    /// connection may be tried.
    ConnectionUnusable(HboneError),
    /// The request reached the server (or is invalid): report it to the caller.
    Final(HboneError),
}

/// Sends the CONNECT request on `sender` and waits for the response headers.
pub(crate) async fn open_stream(
    sender: &SendRequest<Bytes>,
    tunnel: SocketAddr,
    request: &ConnectRequest,
) -> Result<(h2::SendStream<Bytes>, h2::RecvStream), OpenFailure> {
    let authority = request.authority;
    let http2_error = |source| HboneError::Http2 {
        authority,
        tunnel,
        source,
    };
    let connect = build_connect_request(request).map_err(OpenFailure::Final)?;
    let mut ready = sender
        .clone()
        .ready()
        .await
        .map_err(|e| OpenFailure::ConnectionUnusable(http2_error(e)))?;
    let (response, send) = ready
        .send_request(connect, false)
        .map_err(|e| OpenFailure::ConnectionUnusable(http2_error(e)))?;
    let response = response.await.map_err(|e| {
        // No byte of the tunnel has reached the caller yet, so when the connection died
        // under the request (closed, GOAWAY, refused) trying another one is safe.
        if e.is_io() || e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) {
            OpenFailure::ConnectionUnusable(http2_error(e))
        } else {
            OpenFailure::Final(http2_error(e))
        }
    })?;
    if response.status() != StatusCode::OK {
        return Err(OpenFailure::Final(HboneError::Status {
            status: response.status().as_u16(),
            authority,
            tunnel,
        }));
    }
    Ok((send, response.into_body()))
}

fn build_connect_request(request: &ConnectRequest) -> Result<Request<()>, HboneError> {
    let mut connect = Request::new(());
    *connect.method_mut() = Method::CONNECT;
    *connect.uri_mut() = http::Uri::try_from(request.authority.to_string()).map_err(|_| {
        HboneError::InvalidHeader {
            name: ":authority",
            value: request.authority.to_string(),
        }
    })?;
    let headers = connect.headers_mut();
    if let Some(ip) = request.forwarded_for {
        headers.insert(
            FORWARDED,
            header_value(FORWARDED, &format_forwarded_for(ip))?,
        );
    }
    if let Some(baggage) = &request.baggage {
        headers.insert(BAGGAGE, header_value(BAGGAGE, baggage)?);
    }
    if let Some(traceparent) = &request.traceparent {
        headers.insert(TRACEPARENT, header_value(TRACEPARENT, traceparent)?);
    }
    Ok(connect)
}

fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, HboneError> {
    HeaderValue::from_str(value).map_err(|_| HboneError::InvalidHeader {
        name,
        value: value.to_owned(),
    })
}
