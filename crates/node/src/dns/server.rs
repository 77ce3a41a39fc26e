//! Serving the DNS proxy on a UDP socket and a TCP listener (RFC 1035 §4.2: UDP datagrams
//! of up to 512 bytes without EDNS, TCP messages prefixed by a two-byte length).
//!
//! Forwarded queries go through the pod's [`Forwarder`] (one shared upstream socket,
//! bounded queries in flight); a full forwarder or a failing upstream turns into SERVFAIL.
//! A TCP client must deliver each whole message (length prefix and body) within
//! [`DnsScope::tcp_timeout`] of the previous answer, or it is dropped.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::forward::ReplyTo;
pub use super::forward::{ForwardLimits, Forwarder, UdpFactory, Upstream};
use super::{Answer, DnsResolver};

/// Largest message read or written (TCP length prefix limit; UDP reads use it too).
const MAX_MESSAGE: usize = 65_535;
/// Default for [`DnsScope::tcp_timeout`].
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one pod's DNS listeners need.
#[derive(Debug, Clone)]
pub struct DnsScope {
    /// Mesh name resolution.
    pub resolver: DnsResolver,
    /// The pod's namespace (for short names).
    pub namespace: Arc<str>,
    /// Where other names go.
    pub forwarder: Option<Arc<Forwarder>>,
    /// How long a TCP client may take to send a whole query (and read its answer).
    pub tcp_timeout: Duration,
}

impl DnsScope {
    /// The bytes to send back for `query` on a TCP connection, or `None` to stay silent
    /// (garbage in).
    async fn respond(&self, query: &[u8]) -> Option<Vec<u8>> {
        match self.resolver.answer(query, &self.namespace) {
            Ok(Answer::Reply(bytes)) => Some(bytes),
            Ok(Answer::Forward) => {
                let (sender, receiver) = oneshot::channel();
                self.forward(query, ReplyTo::Waiter(sender)).await;
                // A dropped waiter (refused, or the pod is going away) means SERVFAIL.
                receiver
                    .await
                    .ok()
                    .or_else(|| DnsResolver::server_failure(query))
            }
            Err(error) => {
                tracing::debug!(%error, "dropping DNS query");
                None
            }
        }
    }

    /// Forwards `query`; its answer (possibly SERVFAIL) goes to `reply`.
    async fn forward(&self, query: &[u8], reply: ReplyTo) {
        match &self.forwarder {
            Some(forwarder) => {
                if let Err(error) = forwarder.forward(query, reply).await {
                    tracing::debug!(upstream = %forwarder.upstream(), %error, "DNS query answered SERVFAIL");
                }
            }
            None => reply.fail(query),
        }
    }
}

/// Answers datagrams on `socket` until `stop`. Forwarded queries are answered by the
/// forwarder's reading task, so a slow upstream does not hold up mesh names.
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
                    let socket = Arc::clone(&socket);
                    scope
                        .forward(query, ReplyTo::Datagram { socket, client })
                        .await;
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
        let read = async {
            let len = usize::from(stream.read_u16().await?);
            stream.read_exact(&mut buf[..len]).await
        };
        // Idle, slow, closed, or broken: done with this client.
        let Ok(Ok(len)) = tokio::time::timeout(scope.tcp_timeout, read).await else {
            return Ok(());
        };
        let Some(answer) = scope.respond(&buf[..len]).await else {
            return Ok(());
        };
        let Ok(answer_len) = u16::try_from(answer.len()) else {
            return Ok(());
        };
        let write = async {
            stream.write_u16(answer_len).await?;
            stream.write_all(&answer).await
        };
        if tokio::time::timeout(scope.tcp_timeout, write)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
