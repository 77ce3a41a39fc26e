//! [`ReadBuffer`]: the relay's read buffer for one direction, sized by how data flows.
//!
//! A node proxy holds thousands of mostly idle connections, so a buffer per connection
//! allocated up front (or kept after a burst) is most of its memory. This buffer starts
//! small, doubles while reads fill it (a bulk transfer), shrinks again when bursts are
//! short, and is given back while its socket has nothing to read, as long as it is small:
//! an idle connection then holds no read buffer, and a bulk transfer keeps one large
//! buffer instead of allocating one per wake-up.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;

/// The first allocation, and the size below which an idle buffer is given back.
const SMALL: usize = 16 * 1024;
/// The largest buffer a busy direction grows to.
const LARGE: usize = 256 * 1024;

/// The read buffer of one relay direction. Each read's bytes are split off as a `Bytes`
/// chunk (no copy); the allocation is reused once every chunk of it has been dropped.
#[derive(Debug)]
pub struct ReadBuffer {
    buf: BytesMut,
    /// Capacity the next allocation gets.
    size: usize,
    /// Bytes read since the reader last had nothing to read.
    burst: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadBuffer {
    /// A buffer with no memory yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            size: SMALL,
            burst: 0,
        }
    }

    /// Bytes currently allocated (0 while idle and given back).
    #[must_use]
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads once from any `AsyncRead` into the buffer. The buffer stays allocated while
    /// the reader is pending, since a generic reader needs it to poll.
    ///
    /// # Errors
    /// The reader's error.
    pub fn poll_read_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let space = self.make_space();
        let result = tokio_util::io::poll_read_buf(Pin::new(reader), cx, &mut self.buf);
        let n = match result {
            Poll::Pending => {
                self.burst_ended();
                return Poll::Pending;
            }
            Poll::Ready(result) => result?,
        };
        Poll::Ready(Ok(self.take(n, space)))
    }

    /// Reads once from a TCP socket, waiting for readiness first, so an idle socket is
    /// waited on without a buffer: a small buffer is given back whenever the socket has
    /// nothing to read.
    ///
    /// # Errors
    /// The socket's error.
    pub fn poll_read_tcp(
        &mut self,
        socket: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if socket.poll_read_ready(cx)?.is_pending() {
                self.burst_ended();
                self.give_back_if_small();
                return Poll::Pending;
            }
            let space = self.make_space();
            match socket.try_read_buf(&mut self.buf) {
                Ok(n) => return Poll::Ready(Ok(self.take(n, space))),
                // Readiness was stale: poll again, which registers for the next event.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Ensures room for a read; returns the free space.
    fn make_space(&mut self) -> usize {
        if self.buf.capacity() - self.buf.len() < self.size.min(SMALL)
            && !self.buf.try_reclaim(self.size)
        {
            // Earlier chunks still hold the allocation (or it is too small): a fresh one of
            // exactly `size`; the old one goes when its last chunk is dropped.
            debug_assert!(self.buf.is_empty(), "every read is split off whole");
            self.buf = BytesMut::with_capacity(self.size);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// Splits off the `n` bytes just read (`None` at end of stream) and grows the next
    /// allocation when the read filled all of the free space.
    fn take(&mut self, n: usize, space: usize) -> Option<Bytes> {
        if n == 0 {
            return None;
        }
        self.burst += n;
        if n == space && self.size < LARGE {
            self.size *= 2;
        }
        Some(self.buf.split().freeze())
    }

    /// The reader has nothing more for now: a short burst (less than the small size, so
    /// a bulk transfer's wake-ups do not count) halves the next allocation.
    fn burst_ended(&mut self) {
        if self.burst < SMALL {
            self.size = (self.size / 2).max(SMALL);
        }
        self.burst = 0;
    }

    fn give_back_if_small(&mut self) {
        if self.size == SMALL && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    async fn read_chunk(buffer: &mut ReadBuffer, socket: &TcpStream) -> Option<Bytes> {
        poll_fn(|cx| buffer.poll_read_tcp(socket, cx))
            .await
            .unwrap()
    }

    /// True once the socket has nothing to read and the buffer was polled for it.
    fn poll_idle(buffer: &mut ReadBuffer, socket: &TcpStream) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        buffer.poll_read_tcp(socket, &mut cx).is_pending()
    }

    #[tokio::test]
    async fn an_idle_socket_holds_no_buffer_after_a_small_exchange() {
        let (mut writer, reader) = pair().await;
        let mut buffer = ReadBuffer::new();
        assert_eq!(
            buffer.allocated(),
            0,
            "nothing is allocated before data flows"
        );
        writer.write_all(b"hello").await.unwrap();
        let chunk = read_chunk(&mut buffer, &reader).await.unwrap();
        assert_eq!(&chunk[..], b"hello");
        assert!(buffer.allocated() > 0);
        drop(chunk);
        assert!(poll_idle(&mut buffer, &reader));
        assert_eq!(
            buffer.allocated(),
            0,
            "the idle connection gave its buffer back"
        );
    }

    /// Reads from an in-memory reader, which always fills the free space.
    async fn read_full(buffer: &mut ReadBuffer, reader: &mut &[u8]) -> usize {
        let chunk = poll_fn(|cx| buffer.poll_read_from(reader, cx)).await;
        chunk.unwrap().map_or(0, |chunk| chunk.len())
    }

    #[tokio::test]
    async fn reads_that_fill_the_buffer_grow_it_up_to_the_large_size() {
        let data = vec![7u8; 8 * LARGE];
        let mut reader = &data[..];
        let mut buffer = ReadBuffer::new();
        let mut sizes = Vec::new();
        for _ in 0..8 {
            sizes.push(read_full(&mut buffer, &mut reader).await);
        }
        assert_eq!(sizes[0], SMALL, "the first read gets the small buffer");
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
        assert_eq!(*sizes.last().unwrap(), LARGE, "{sizes:?}");
    }

    #[tokio::test]
    async fn a_busy_buffer_is_kept_while_waiting_and_given_back_after_short_bursts() {
        let data = vec![7u8; 4 * LARGE];
        let mut bulk = &data[..];
        let mut buffer = ReadBuffer::new();
        while buffer.size < LARGE {
            read_full(&mut buffer, &mut bulk).await;
        }
        let (mut writer, reader) = pair().await;
        assert!(poll_idle(&mut buffer, &reader));
        assert!(
            buffer.allocated() > 0,
            "a busy direction keeps its buffer between bursts"
        );
        let mut exchanges = 0;
        while buffer.allocated() > 0 {
            writer.write_all(b"ping").await.unwrap();
            assert_eq!(
                &read_chunk(&mut buffer, &reader).await.unwrap()[..],
                b"ping"
            );
            assert!(poll_idle(&mut buffer, &reader));
            exchanges += 1;
            assert!(exchanges <= 8, "short bursts never released the buffer");
        }
    }

    #[tokio::test]
    async fn end_of_stream_is_none() {
        let (writer, reader) = pair().await;
        drop(writer);
        let mut buffer = ReadBuffer::new();
        assert_eq!(read_chunk(&mut buffer, &reader).await, None);
    }
}
