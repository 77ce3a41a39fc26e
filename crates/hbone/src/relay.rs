//! Bidirectional relay between two byte streams, in one task, with half-close.
//!
//! Data moves as `Bytes` chunks: a plain socket is read into a [`ReadBuffer`] (allocated
//! while data flows, sized by it) whose filled part is frozen into a chunk, while an [`HboneStream`] hands out the chunks h2
//! received and accepts chunks to send without copying. When one side reaches end of
//! stream, the other side's write half is shut down and the opposite direction goes on.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::read_buffer::ReadBuffer;
use crate::stream::HboneStream;

/// Chunks moved by one direction before yielding to the scheduler (fairness).
const CHUNKS_PER_POLL: usize = 32;

/// A stream the [`relay`] can move chunks through.
pub trait RelayIo: Unpin {
    /// Reads the next chunk, into `buffer` (the direction's read buffer) if a copy is
    /// needed. `Ok(None)` means end of stream.
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuffer,
    ) -> Poll<io::Result<Option<Bytes>>>;

    /// Writes a non-empty prefix of `chunk` and advances it past what was written.
    fn poll_write_chunk(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes)
    -> Poll<io::Result<()>>;

    /// Flushes buffered writes.
    fn poll_flush_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts down the write half (half-close), flushing first.
    fn poll_shutdown_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl RelayIo for HboneStream {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        _buffer: &mut ReadBuffer,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.poll_recv_chunk(cx)
    }

    fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send_chunk(cx, chunk))?;
        Poll::Ready(Ok(()))
    }

    fn poll_flush_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_flush(cx)
    }

    fn poll_shutdown_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_shutdown(cx)
    }
}

/// Adapts any tokio `AsyncRead + AsyncWrite` (TLS streams, Unix sockets, duplex pipes)
/// to [`RelayIo`]; reads go through the relay's reused buffer.
#[derive(Debug)]
pub struct Plain<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Unpin> RelayIo for Plain<T> {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuffer,
    ) -> Poll<io::Result<Option<Bytes>>> {
        buffer.poll_read_from(&mut self.0, cx)
    }

    fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        poll_write_from(&mut self.0, cx, chunk)
    }

    fn poll_flush_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl RelayIo for TcpStream {
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuffer,
    ) -> Poll<io::Result<Option<Bytes>>> {
        buffer.poll_read_tcp(self, cx)
    }

    fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        poll_write_from(self, cx, chunk)
    }

    fn poll_flush_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_flush(cx)
    }

    fn poll_shutdown_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_shutdown(cx)
    }
}

fn poll_write_from<W: AsyncWrite + Unpin>(
    writer: &mut W,
    cx: &mut Context<'_>,
    chunk: &mut Bytes,
) -> Poll<io::Result<()>> {
    let n = ready!(Pin::new(writer).poll_write(cx, chunk))?;
    if n == 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    chunk.advance(n);
    Poll::Ready(Ok(()))
}

/// Limits on a relay.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// Stop when no byte has moved in either direction for this long.
    pub idle_timeout: Option<Duration>,
    /// Stop when this token is cancelled (e.g. a policy change denies the connection).
    pub cancel: Option<CancellationToken>,
}

/// Bytes moved by a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

/// Which relay argument an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "a",
            Side::B => "b",
        })
    }
}

/// Why a relay stopped before both directions finished.
#[derive(Debug, thiserror::Error)]
pub enum RelayCause {
    #[error("no data moved for {0:?}")]
    IdleTimeout(Duration),
    #[error("cancelled by the caller")]
    Cancelled,
    #[error("reading from side {side} failed: {source}")]
    Read { side: Side, source: io::Error },
    #[error("writing to side {side} failed: {source}")]
    Write { side: Side, source: io::Error },
}

/// A relay that stopped early, with the bytes it had moved until then.
#[derive(Debug, thiserror::Error)]
#[error("relay stopped after {} bytes a->b and {} bytes b->a: {cause}", stats.a_to_b, stats.b_to_a)]
pub struct RelayError {
    pub stats: RelayStats,
    pub cause: RelayCause,
}

/// Copies `a -> b` and `b -> a` concurrently in the calling task until both directions
/// reached end of stream; when one side ends, the other side's write half is shut down.
///
/// # Errors
/// Returns a [`RelayError`] (with the bytes moved so far) on an I/O error, the idle
/// timeout, or cancellation.
pub async fn relay<A: RelayIo, B: RelayIo>(
    a: &mut A,
    b: &mut B,
    options: &RelayOptions,
) -> Result<RelayStats, RelayError> {
    let mut a_to_b = Pump::new(Side::A, Side::B);
    let mut b_to_a = Pump::new(Side::B, Side::A);
    let mut idle = options.idle_timeout.map(IdleTimer::new);
    let mut cancelled = options.cancel.as_ref().map(|t| Box::pin(t.cancelled()));
    let result = poll_fn(|cx| {
        if let Some(cancelled) = cancelled.as_mut()
            && cancelled.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(RelayCause::Cancelled));
        }
        let moved_before = a_to_b.bytes + b_to_a.bytes;
        let forward = a_to_b.poll(cx, a, b)?;
        let backward = b_to_a.poll(cx, b, a)?;
        if forward.is_ready() && backward.is_ready() {
            return Poll::Ready(Ok(()));
        }
        match idle.as_mut() {
            Some(timer) => timer.poll(cx, a_to_b.bytes + b_to_a.bytes != moved_before),
            None => Poll::Pending,
        }
    })
    .await;
    let stats = RelayStats {
        a_to_b: a_to_b.bytes,
        b_to_a: b_to_a.bytes,
    };
    match result {
        Ok(()) => Ok(stats),
        Err(cause) => Err(RelayError { stats, cause }),
    }
}

/// Fires when nothing moved for `timeout`; re-arms lazily instead of per chunk.
struct IdleTimer {
    timeout: Duration,
    last_progress: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last_progress: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, progressed: bool) -> Poll<Result<(), RelayCause>> {
        if progressed {
            self.last_progress = Instant::now();
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            let deadline = self.last_progress + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(Err(RelayCause::IdleTimeout(self.timeout)));
            }
            self.sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

/// One direction of the relay.
struct Pump {
    from: Side,
    to: Side,
    buffer: ReadBuffer,
    pending: Bytes,
    needs_flush: bool,
    read_done: bool,
    done: bool,
    bytes: u64,
}

impl Pump {
    fn new(from: Side, to: Side) -> Self {
        Self {
            from,
            to,
            buffer: ReadBuffer::new(),
            pending: Bytes::new(),
            needs_flush: false,
            read_done: false,
            done: false,
            bytes: 0,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut impl RelayIo,
        dst: &mut impl RelayIo,
    ) -> Poll<Result<(), RelayCause>> {
        let mut chunks = 0;
        while !self.done {
            if !self.pending.is_empty() {
                let before = self.pending.len();
                ready!(dst.poll_write_chunk(cx, &mut self.pending))
                    .map_err(|e| self.write_err(e))?;
                self.bytes += (before - self.pending.len()) as u64;
                self.needs_flush = true;
                if self.pending.is_empty() {
                    // Drop the written chunk's hold on the read buffer, so the next read
                    // reuses that allocation instead of making a new one.
                    self.pending = Bytes::new();
                }
                continue;
            }
            if self.read_done {
                ready!(dst.poll_shutdown_writes(cx)).map_err(|e| self.write_err(e))?;
                self.done = true;
                break;
            }
            if chunks == CHUNKS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match src.poll_read_chunk(cx, &mut self.buffer) {
                Poll::Ready(Ok(Some(chunk))) => {
                    self.pending = chunk;
                    chunks += 1;
                }
                Poll::Ready(Ok(None)) => self.read_done = true,
                Poll::Ready(Err(source)) => {
                    return Poll::Ready(Err(RelayCause::Read {
                        side: self.from,
                        source,
                    }));
                }
                Poll::Pending => {
                    if self.needs_flush {
                        ready!(dst.poll_flush_writes(cx)).map_err(|e| self.write_err(e))?;
                        self.needs_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn write_err(&self, source: io::Error) -> RelayCause {
        RelayCause::Write {
            side: self.to,
            source,
        }
    }
}
