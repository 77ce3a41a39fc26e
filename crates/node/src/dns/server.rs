//! Serving the DNS proxy on a UDP socket and a TCP listener (RFC 1035 §4.2: UDP datagrams
//! of up to 512 bytes without EDNS, TCP messages prefixed by a two-byte length).
//!
//! Forwarded queries go to the upstream over UDP from a socket made by the pod's
//! [`UdpFactory`] (inside the pod's network, with the bypass mark); a silent or failing
//! upstream turns into SERVFAIL after [`Upstream::timeout`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::{Answer, DnsResolver};

/// Largest message read or written (TCP length prefix limit; UDP reads use it too).
const MAX_MESSAGE: usize = 65_535;
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Makes an unconnected UDP socket for talking to the upstream resolver.
pub type UdpFactory =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<UdpSocket>> + Send>> + Send + Sync>;

/// The upstream resolver for names outside the mesh.
#[derive(Clone)]
pub struct Upstream {
    /// Resolver address.
    pub addr: SocketAddr,
    /// Where the sockets come from.
    pub socket: UdpFactory,
    /// How long to wait for its answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Everything one pod's DNS listeners need.
#[derive(Debug, Clone)]
pub struct DnsScope {
    /// Mesh name resolution.
    pub resolver: DnsResolver,
    /// The pod's namespace (for short names).
    pub namespace: Arc<str>,
    /// Where other names go.
    pub upstream: Option<Upstream>,
}

impl DnsScope {
    /// The bytes to send back for `query`, or `None` to stay silent (garbage in).
    async fn respond(&self, query: &[u8]) -> Option<Vec<u8>> {
        match self.resolver.answer(query, &self.namespace) {
            Ok(Answer::Reply(bytes)) => Some(bytes),
            Ok(Answer::Forward) => match &self.upstream {
                Some(upstream) => match forward(upstream, query).await {
                    Ok(bytes) => Some(bytes),
                    Err(error) => {
                        tracing::debug!(upstream = %upstream.addr, %error, "DNS upstream failed");
                        DnsResolver::server_failure(query)
                    }
                },
                None => DnsResolver::server_failure(query),
            },
            Err(error) => {
                tracing::debug!(%error, "dropping DNS query");
                None
            }
        }
    }
}

async fn forward(upstream: &Upstream, query: &[u8]) -> io::Result<Vec<u8>> {
    let exchange = async {
        let socket = (upstream.socket)().await?;
        socket.connect(upstream.addr).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let len = socket.recv(&mut buf).await?;
        buf.truncate(len);
        Ok(buf)
    };
    tokio::time::timeout(upstream.timeout, exchange)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Answers datagrams on `socket` until `stop`. Forwarded queries are answered from their
/// own task so a slow upstream does not hold up mesh names.
pub fn serve_udp(socket: UdpSocket, scope: DnsScope, stop: CancellationToken) {
    let socket = Arc::new(socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => break,
                received = socket.recv_from(&mut buf) => received,
            };
            let (len, client) = match received {
                Ok(got) => got,
                Err(error) => {
                    tracing::debug!(%error, "DNS UDP receive failed");
                    continue;
                }
            };
            let query = &buf[..len];
            match scope.resolver.answer(query, &scope.namespace) {
                Ok(Answer::Reply(bytes)) => {
                    let _ = socket.send_to(&bytes, client).await;
                }
                Ok(Answer::Forward) => {
                    let (scope, socket, query) =
                        (scope.clone(), Arc::clone(&socket), query.to_vec());
                    tokio::spawn(async move {
                        if let Some(bytes) = scope.respond(&query).await {
                            let _ = socket.send_to(&bytes, client).await;
                        }
                    });
                }
                Err(error) => tracing::debug!(%client, %error, "dropping DNS query"),
            }
        }
    });
}

/// Answers length-prefixed queries on TCP connections accepted from `listener` until
/// `stop`.
pub fn serve_tcp(listener: TcpListener, scope: DnsScope, stop: CancellationToken) {
    tokio::spawn(async move {
        let cancelled = stop.cancelled();
        weft_serve::accept_until(&listener, cancelled, "DNS over TCP", |stream, _| {
            let (scope, stop) = (scope.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = serve_tcp_client(stream, &scope) => {}
                }
            });
        })
        .await;
    });
}

async fn serve_tcp_client(mut stream: TcpStream, scope: &DnsScope) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            // Idle, closed, or broken: done with this client.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        stream.read_exact(&mut buf[..len]).await?;
        let Some(answer) = scope.respond(&buf[..len]).await else {
            return Ok(());
        };
        let Ok(answer_len) = u16::try_from(answer.len()) else {
            return Ok(());
        };
        stream.write_u16(answer_len).await?;
        stream.write_all(&answer).await?;
    }
}
