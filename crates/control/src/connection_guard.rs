//! What keeps stalled or greedy peers from holding the secure port's resources: a limit
//! on open connections per source address ([`SourceLimits`]) and one deadline, from
//! accepting the TCP connection, by which the TLS handshake, the HTTP/2 preface and the
//! first request must all be done ([`Guarded`], [`mark_first_request`]).
//!
//! The deadline works at the byte-stream level: [`Guarded`] wraps the TLS stream handed
//! to the gRPC server and fails its reads once the deadline passes unless the server has
//! seen a request on it (the tower layer [`mark_first_request`] records that, through the
//! connection info tonic puts in every request). Past the first request, the server's
//! HTTP/2 keepalive finds peers that vanished.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant as StdInstant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// Shortest time between two log lines about refused connections.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Label set of the refusal counter.
type ReasonLabel = [(&'static str, &'static str); 1];

/// Open connections per source address, capped.
#[derive(Debug)]
pub struct SourceLimits {
    per_source: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: Family<ReasonLabel, Counter>,
    last_warned: Mutex<Option<StdInstant>>,
}

impl SourceLimits {
    /// At most `per_source` open connections from one address.
    #[must_use]
    pub fn new(per_source: usize) -> Self {
        Self {
            per_source,
            open: Mutex::default(),
            refused: Family::default(),
            last_warned: Mutex::default(),
        }
    }

    /// Registers `connections_refused_total{reason}` (under the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_refused",
            "Connections to the secure port closed by a limit (per_source: too many open \
             from one address; deadline: no request by the connection deadline)",
            self.refused.clone(),
        );
    }

    /// A slot for a new connection from `source`, or `None` when it has too many open.
    pub fn admit(self: &Arc<Self>, source: SocketAddr) -> Option<SourceSlot> {
        let ip = source.ip();
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_default();
        if *count >= self.per_source {
            drop(open);
            self.refused
                .get_or_create(&[("reason", "per_source")])
                .inc();
            self.warn(ip);
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Counts a connection closed by the deadline.
    pub fn count_deadline(&self) {
        self.refused.get_or_create(&[("reason", "deadline")]).inc();
    }

    /// Logs a refusal, at most once per [`WARN_EVERY`].
    fn warn(&self, ip: IpAddr) {
        let mut last = lock(&self.last_warned);
        let now = StdInstant::now();
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(source = %ip, limit = self.per_source, "secure port: refusing new connections from a source at its limit of open connections");
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open connection counted against its source; released when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    limits: Arc<SourceLimits>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

/// Whether a connection has carried a request yet.
#[derive(Debug, Default)]
pub struct FirstRequest(AtomicBool);

impl FirstRequest {
    fn seen(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What tonic puts in each request of a [`Guarded`] connection.
#[derive(Debug, Clone)]
pub struct GuardedInfo {
    first_request: Arc<FirstRequest>,
    tls: TlsConnectInfo<TcpConnectInfo>,
}

/// Records that a request arrived on its connection (lifting the connection's deadline)
/// and leaves the TLS connection info where tonic's `remote_addr()` looks for it.
pub fn mark_first_request<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(info) = request.extensions_mut().remove::<GuardedInfo>() {
        info.first_request.0.store(true, Ordering::Release);
        request.extensions_mut().insert(info.tls);
    }
    request
}

/// A connection whose reads fail once `deadline` passes without a request.
pub struct Guarded<IO> {
    io: IO,
    first_request: Arc<FirstRequest>,
    deadline: Option<Pin<Box<Sleep>>>,
    limits: Arc<SourceLimits>,
    _slot: SourceSlot,
}

impl<IO> Guarded<IO> {
    /// Guards `io` (counted by `slot`) with `deadline`.
    pub fn new(io: IO, deadline: Instant, slot: SourceSlot) -> Self {
        Self {
            io,
            first_request: Arc::default(),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            limits: Arc::clone(&slot.limits),
            _slot: slot,
        }
    }

    /// `Err` when the deadline has passed without a request (the connection is then
    /// closed by the server); arms the timer's wake-up otherwise.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        if self.first_request.seen() {
            self.deadline = None;
            return Ok(());
        }
        if deadline.as_mut().poll(cx).is_ready() {
            self.deadline = None;
            self.limits.count_deadline();
            tracing::debug!("secure port: no request by the connection deadline; closing");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request by the connection deadline",
            ));
        }
        Ok(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_deadline(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO> Connected for Guarded<IO>
where
    IO: Connected<ConnectInfo = TlsConnectInfo<TcpConnectInfo>>,
{
    type ConnectInfo = GuardedInfo;

    fn connect_info(&self) -> GuardedInfo {
        GuardedInfo {
            first_request: Arc::clone(&self.first_request),
            tls: self.io.connect_info(),
        }
    }
}
