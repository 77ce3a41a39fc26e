//! Explicit mode: local workloads use the node proxy as a SOCKS5 (RFC 1928: no
//! authentication, CONNECT, IPv4/IPv6/domain) or HTTP CONNECT proxy. The first byte tells
//! the two apart (SOCKS5 starts with version 5). The source workload is found by the
//! connection's source IP; a domain must be a service hostname known to the state.
//!
//! Before routing, a request is admitted (see [`super::admission`]): it waits for the
//! first configuration (SOCKS 1 / HTTP 503 when it does not come in time), the caller must
//! be a workload of this node and the destination must not be the node itself (SOCKS 2 /
//! HTTP 403).
//!
//! The answer is sent only once the upstream is open, so a client learns about denials
//! (SOCKS reply 2 / HTTP 403) and unreachable destinations (SOCKS 4-5 / HTTP 502-504).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::outbound::{OutboundError, OutboundTarget};
use super::{ForbiddenReason, Node};
use crate::state::MeshState;

const SOCKS_VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;
/// Largest HTTP CONNECT request head accepted.
const MAX_HTTP_HEAD: usize = 8 * 1024;

/// `request` (reading a client's request head), failed as timed out at `deadline`
/// ([`ProxyOptions::head_timeout`](super::ProxyOptions::head_timeout) after connecting): a
/// connection that sends nothing or half a head must not hold a descriptor and a task for
/// ever.
async fn bounded<T>(
    deadline: Instant,
    request: impl std::future::Future<Output = Result<T, ExplicitError>>,
) -> Result<T, ExplicitError> {
    tokio::time::timeout_at(deadline, request)
        .await
        .unwrap_or_else(|_| {
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "request head too slow");
            Err(ExplicitError::Io(late))
        })
}

/// The SOCKS greeting and request: the command and the destination it names (an address
/// type this proxy cannot read is answered here).
async fn read_socks_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<(u8, Requested), ExplicitError> {
    negotiate_socks(stream).await?;
    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await?;
    let [version, command, _reserved, atyp] = request;
    if version != SOCKS_VERSION {
        return Err(ExplicitError::Malformed(format!("SOCKS version {version}")));
    }
    match read_socks_address(stream, atyp).await {
        Ok(requested) => Ok((command, requested)),
        Err(error) => {
            send_socks_reply(stream, Reply::AddressTypeNotSupported).await?;
            Err(error)
        }
    }
}

/// SOCKS5 reply codes (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// Why an explicit-proxy request was refused before routing.
#[derive(Debug, thiserror::Error)]
pub enum ExplicitError {
    /// Reading or writing the client failed.
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The request is not valid SOCKS5 / HTTP CONNECT.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A domain that is not a known service hostname.
    #[error("unknown host {0:?} (only mesh service hostnames are resolved)")]
    UnknownHost(String),
    /// The first mesh configuration did not arrive in time.
    #[error("no mesh configuration yet")]
    NotReady,
    /// The caller's address is not a workload of this node.
    #[error("source {0} is not a workload on this node")]
    UnknownSource(IpAddr),
    /// The destination is the node itself (see [`ForbiddenReason`]).
    #[error("destination {destination} is {reason}")]
    ForbiddenDestination {
        /// The requested destination.
        destination: SocketAddr,
        /// Why it is refused.
        reason: ForbiddenReason,
    },
}

/// A destination as the client named it.
enum Requested {
    /// An IP address (SOCKS `ATYP` 1 or 4).
    Addr(SocketAddr),
    /// A host name or IP literal (SOCKS domain, HTTP authority) and a port.
    Name(String, u16),
}

impl Node {
    /// Serves SOCKS5 and HTTP CONNECT on `listener` until shutdown.
    pub fn serve_explicit(&self, listener: TcpListener) {
        self.add_own_listener(&listener);
        let stop = self.inner.stop_accepting.clone();
        self.serve_accept_loop(listener, stop, |node, stream, peer| async move {
            if let Err(error) = node.handle_explicit(stream, peer).await {
                node.inner.counters.explicit_refused.inc();
                tracing::debug!(%peer, %error, "explicit proxy request refused");
            }
        });
    }

    async fn handle_explicit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), ExplicitError> {
        let mut first = [0u8; 1];
        let deadline = Instant::now() + self.inner.options.head_timeout;
        if bounded(deadline, async { Ok(stream.peek(&mut first).await?) }).await? == 0 {
            return Ok(());
        }
        if first[0] == SOCKS_VERSION {
            self.handle_socks(stream, peer, deadline).await
        } else {
            self.handle_http_connect(stream, peer, deadline).await
        }
    }

    async fn handle_socks(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(), ExplicitError> {
        let (command, requested) = bounded(deadline, read_socks_request(&mut stream)).await?;
        if command != CMD_CONNECT {
            send_socks_reply(&mut stream, Reply::CommandNotSupported).await?;
            return Err(ExplicitError::Malformed(format!(
                "SOCKS command {command} (only CONNECT)"
            )));
        }
        let destination = match self.admit(peer, requested).await {
            Ok(destination) => destination,
            Err(error) => {
                send_socks_reply(&mut stream, socks_refusal(&error)).await?;
                return Err(error);
            }
        };
        let target = OutboundTarget {
            source: peer,
            destination,
        };
        match self.open_outbound(target).await {
            Ok(connection) => {
                send_socks_reply(&mut stream, Reply::Succeeded).await?;
                connection
                    .relay(&mut stream, &[], self.inner.options.access_log)
                    .await;
            }
            Err(error) => send_socks_reply(&mut stream, socks_reply_for(&error)).await?,
        }
        Ok(())
    }

    /// Admits a request from `peer` for `requested`: waits for the first configuration,
    /// checks the caller, resolves and checks the destination.
    async fn admit(
        &self,
        peer: SocketAddr,
        requested: Requested,
    ) -> Result<SocketAddr, ExplicitError> {
        if !self.await_config("explicit", peer).await {
            return Err(ExplicitError::NotReady);
        }
        let state = self.inner.store.snapshot();
        if !self.is_local_caller(&state, peer.ip()) {
            self.inner.counters.explicit_unknown_source.inc();
            return Err(ExplicitError::UnknownSource(peer.ip()));
        }
        let destination = match requested {
            Requested::Addr(addr) => addr,
            Requested::Name(host, port) => self.resolve_host(&state, &host, port)?,
        };
        if let Some(reason) = self.forbidden_destination(&state, destination) {
            self.inner.counters.explicit_forbidden_destination.inc();
            return Err(ExplicitError::ForbiddenDestination {
                destination,
                reason,
            });
        }
        Ok(destination)
    }

    /// An IP literal, or a mesh service hostname resolved to its VIP on this network.
    fn resolve_host(
        &self,
        state: &MeshState,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, ExplicitError> {
        let host = host.trim_end_matches('.');
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(SocketAddr::new(ip, port));
        }
        let network = self.inner.options.network.as_str();
        state
            .services()
            .filter(|s| s.proto().hostname == host)
            .find_map(|s| {
                s.record()
                    .vips
                    .iter()
                    .find(|(net, _)| net == network)
                    .map(|(_, ip)| SocketAddr::new(*ip, port))
            })
            .ok_or_else(|| ExplicitError::UnknownHost(host.to_owned()))
    }

    async fn handle_http_connect(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(), ExplicitError> {
        let (head, early) = match bounded(deadline, read_http_head(&mut stream)).await {
            Ok(read) => read,
            Err(error) => {
                let _ = stream
                    .write_all(http_status(400, "Bad Request").as_bytes())
                    .await;
                return Err(error);
            }
        };
        let admitted = match parse_connect(&head) {
            Ok(requested) => self.admit(peer, requested).await,
            Err(error) => Err(error),
        };
        let destination = match admitted {
            Ok(destination) => destination,
            Err(error) => {
                let (code, text) = http_refusal(&error);
                stream.write_all(http_status(code, text).as_bytes()).await?;
                return Err(error);
            }
        };
        let target = OutboundTarget {
            source: peer,
            destination,
        };
        match self.open_outbound(target).await {
            Ok(connection) => {
                stream
                    .write_all(http_status(200, "Connection Established").as_bytes())
                    .await?;
                connection
                    .relay(&mut stream, &early, self.inner.options.access_log)
                    .await;
            }
            Err(error) => {
                let (code, text) = http_status_for(&error);
                stream.write_all(http_status(code, text).as_bytes()).await?;
            }
        }
        Ok(())
    }
}

/// Method negotiation: the client must offer "no authentication".
async fn negotiate_socks<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<(), ExplicitError> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        stream
            .write_all(&[SOCKS_VERSION, NO_ACCEPTABLE_METHOD])
            .await?;
        return Err(ExplicitError::Malformed(
            "client offers no 'no authentication' method".into(),
        ));
    }
    stream.write_all(&[SOCKS_VERSION, NO_AUTH]).await?;
    Ok(())
}

/// Reads the destination of a SOCKS request (address type `atyp`).
async fn read_socks_address<S: AsyncRead + Unpin>(
    stream: &mut S,
    atyp: u8,
) -> Result<Requested, ExplicitError> {
    let ip = match atyp {
        ATYP_IPV4 => {
            let mut octets = [0u8; 4];
            stream.read_exact(&mut octets).await?;
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        ATYP_IPV6 => {
            let mut octets = [0u8; 16];
            stream.read_exact(&mut octets).await?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        ATYP_DOMAIN => {
            let len = stream.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            stream.read_exact(&mut name).await?;
            let name = String::from_utf8(name)
                .map_err(|_| ExplicitError::Malformed("domain is not UTF-8".into()))?;
            let port = stream.read_u16().await?;
            return Ok(Requested::Name(name, port));
        }
        other => {
            return Err(ExplicitError::Malformed(format!(
                "SOCKS address type {other}"
            )));
        }
    };
    let port = stream.read_u16().await?;
    Ok(Requested::Addr(SocketAddr::new(ip, port)))
}

/// Reads a whole explicit-mode request from `bytes` the way the proxy reads it from a
/// client (SOCKS5 when the first byte is 5, else an HTTP CONNECT head) and returns the
/// destination it names as `host:port`, before any admission or routing. The proxy's own
/// answers are discarded; bytes that end inside the request are an I/O error. The fuzz
/// target `explicit_request` drives the request decoders through this.
///
/// # Errors
/// What the proxy would refuse the request for.
pub fn decode_explicit_request(bytes: &[u8]) -> Result<String, ExplicitError> {
    let mut client = tokio::io::join(bytes, tokio::io::sink());
    let requested = async {
        if bytes.first() == Some(&SOCKS_VERSION) {
            match read_socks_request(&mut client).await? {
                (CMD_CONNECT, requested) => Ok(requested),
                (command, _) => Err(ExplicitError::Malformed(format!(
                    "SOCKS command {command} (only CONNECT)"
                ))),
            }
        } else {
            parse_connect(&read_http_head(&mut client).await?.0)
        }
    }
    // An in-memory request never waits: the future is ready on its first poll.
    .now_or_never()
    .expect("in-memory reads complete at once")?;
    Ok(match requested {
        Requested::Addr(addr) => addr.to_string(),
        Requested::Name(host, port) => format!("{host}:{port}"),
    })
}

/// The destination of an HTTP CONNECT request head.
fn parse_connect(head: &str) -> Result<Requested, ExplicitError> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_ascii_whitespace();
    let (Some("CONNECT"), Some(authority), Some(version)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(ExplicitError::Malformed(format!(
            "not an HTTP CONNECT request: {line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ExplicitError::Malformed(format!(
            "HTTP version {version:?}"
        )));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| ExplicitError::Malformed(format!("authority {authority:?} has no port")))?;
    let port = port
        .parse()
        .map_err(|_| ExplicitError::Malformed(format!("bad port in {authority:?}")))?;
    Ok(Requested::Name(host.to_owned(), port))
}

/// The SOCKS reply refusing a request before routing.
fn socks_refusal(error: &ExplicitError) -> Reply {
    match error {
        ExplicitError::UnknownHost(_) => Reply::HostUnreachable,
        ExplicitError::UnknownSource(_) | ExplicitError::ForbiddenDestination { .. } => {
            Reply::NotAllowed
        }
        _ => Reply::GeneralFailure,
    }
}

/// The HTTP status refusing a request before routing.
fn http_refusal(error: &ExplicitError) -> (u16, &'static str) {
    match error {
        ExplicitError::UnknownHost(_) => (502, "Bad Gateway"),
        ExplicitError::UnknownSource(_) | ExplicitError::ForbiddenDestination { .. } => {
            (403, "Forbidden")
        }
        ExplicitError::NotReady => (503, "Service Unavailable"),
        ExplicitError::Io(_) | ExplicitError::Malformed(_) => (405, "Method Not Allowed"),
    }
}

async fn send_socks_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: Reply,
) -> std::io::Result<()> {
    // Bound address 0.0.0.0:0: clients do not need it for CONNECT.
    stream
        .write_all(&[SOCKS_VERSION, reply as u8, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
        .await
}

fn socks_reply_for(error: &OutboundError) -> Reply {
    if error.is_denied() || error.is_unknown_source() {
        Reply::NotAllowed
    } else if error.is_unroutable() {
        Reply::HostUnreachable
    } else if error.is_connect_failure() {
        Reply::ConnectionRefused
    } else {
        Reply::GeneralFailure
    }
}

fn http_status_for(error: &OutboundError) -> (u16, &'static str) {
    if error.is_denied() || error.is_unknown_source() {
        (403, "Forbidden")
    } else if error.is_unroutable() {
        (502, "Bad Gateway")
    } else {
        (503, "Service Unavailable")
    }
}

fn http_status(code: u16, text: &str) -> String {
    format!("HTTP/1.1 {code} {text}\r\n\r\n")
}

/// Where a request head ends (just after its empty line), if it does in `bytes`. Lines end
/// in CRLF or, as RFC 9112 §2.2 lets a recipient accept, in a bare LF.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'\n')
        .find_map(|(at, _)| match &bytes[at + 1..] {
            [b'\n', ..] => Some(at + 2),
            [b'\r', b'\n', ..] => Some(at + 3),
            _ => None,
        })
}

/// Reads up to the end of the request head; returns it and any bytes after it.
async fn read_http_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(String, Vec<u8>), ExplicitError> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ExplicitError::Malformed(
                "connection closed inside the request head".into(),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buffer) {
            let early = buffer.split_off(end);
            let head = String::from_utf8(buffer)
                .map_err(|_| ExplicitError::Malformed("request head is not UTF-8".into()))?;
            return Ok((head, early));
        }
        if buffer.len() > MAX_HTTP_HEAD {
            return Err(ExplicitError::Malformed(format!(
                "request head over {MAX_HTTP_HEAD} bytes"
            )));
        }
    }
}
