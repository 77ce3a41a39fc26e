//! [`HboneStream`]: one CONNECT stream as a byte stream (tokio `AsyncRead`/`AsyncWrite`).
//!
//! Reads hand out the `Bytes` chunks h2 received and return their flow-control capacity as
//! they are consumed; writes wait for send capacity, so neither side buffers more than the
//! HTTP/2 windows allow. `poll_shutdown` ends our half of the stream (half-close).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::Slot;
use crate::pool::StreamSlot;

/// The peer's certificate chain as presented in the TLS handshake, leaf first.
pub type PeerCertificates = Arc<[CertificateDer<'static>]>;

/// Initial size of the staging buffer used by `AsyncWrite` (copies are unavoidable there,
/// since the caller lends a slice; the buffer is reused once h2 has sent earlier chunks).
const WRITE_STAGING: usize = 64 * 1024;

/// One HBONE tunnel stream (client or server side).
pub struct HboneStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received bytes not yet handed to the reader; their capacity is not yet released.
    unread: Bytes,
    write_staging: BytesMut,
    write_closed: bool,
    peer: PeerCertificates,
    /// Keeps the pool's per-connection stream count until the stream is dropped.
    _slot: Option<StreamSlot>,
    /// Keeps the server's tunnel counted against its inbound limits until the stream is
    /// dropped, by whoever holds it then (a handler taking the stream over included).
    _counted: Option<Slot>,
}

impl fmt::Debug for HboneStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneStream")
            .field("unread", &self.unread.len())
            .field("write_closed", &self.write_closed)
            .field("peer_certificates", &self.peer.len())
            .finish_non_exhaustive()
    }
}

impl HboneStream {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        peer: PeerCertificates,
        slot: Option<StreamSlot>,
    ) -> Self {
        Self {
            send,
            recv,
            unread: Bytes::new(),
            write_staging: BytesMut::new(),
            write_closed: false,
            peer,
            _slot: slot,
            _counted: None,
        }
    }

    /// The stream, counted in `counted` (the inbound limits) for as long as it lives.
    pub(crate) fn counted_in(mut self, counted: Option<Slot>) -> Self {
        self._counted = counted;
        self
    }

    /// The peer's TLS certificate chain (leaf first); the SPIFFE identity is a URI SAN of
    /// the leaf. Empty only if the peer presented no certificate.
    #[must_use]
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer
    }

    /// Receives the next chunk exactly as h2 delivered it (no copy) and returns its
    /// flow-control capacity to the peer. `None` means the peer ended its half.
    pub fn poll_recv_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.unread.is_empty() {
            let chunk = std::mem::take(&mut self.unread);
            self.release(chunk.len())?;
            return Poll::Ready(Ok(Some(chunk)));
        }
        loop {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(None)),
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    self.release(chunk.len())?;
                    return Poll::Ready(Ok(Some(chunk)));
                }
            }
        }
    }

    /// Sends the front of `chunk` without copying, as much as the peer's flow-control
    /// window allows right now, and advances `chunk` past what was sent.
    pub fn poll_send_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if chunk.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let allowed = ready!(self.poll_send_capacity(cx, chunk.len()))?;
        let part = chunk.split_to(allowed);
        self.send.send_data(part, false).map_err(h2_to_io)?;
        Poll::Ready(Ok(allowed))
    }

    /// Waits until at least one byte (at most `wanted`) may be sent.
    fn poll_send_capacity(
        &mut self,
        cx: &mut Context<'_>,
        wanted: usize,
    ) -> Poll<io::Result<usize>> {
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "HBONE stream already shut down for writing",
            )));
        }
        self.send.reserve_capacity(wanted);
        loop {
            let available = self.send.capacity();
            if available > 0 {
                return Poll::Ready(Ok(available.min(wanted)));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "HBONE stream was closed by the peer",
                    )));
                }
            }
        }
    }

    fn release(&mut self, consumed: usize) -> io::Result<()> {
        self.recv
            .flow_control()
            .release_capacity(consumed)
            .map_err(h2_to_io)
    }

    /// Ends our half of the stream (HTTP/2 END_STREAM); reading continues to work.
    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.write_closed {
            self.write_closed = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
        }
        Ok(())
    }
}

impl AsyncRead for HboneStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
                Some(Ok(chunk)) => this.unread = chunk,
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        this.release(n)?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let allowed = ready!(this.poll_send_capacity(cx, buf.len()))?;
        if this.write_staging.capacity() < allowed {
            this.write_staging.reserve(allowed.max(WRITE_STAGING));
        }
        this.write_staging.extend_from_slice(&buf[..allowed]);
        let chunk = this.write_staging.split().freeze();
        this.send.send_data(chunk, false).map_err(h2_to_io)?;
        Poll::Ready(Ok(allowed))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2's connection task writes queued frames; nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().shutdown_write())
    }
}

pub(crate) fn h2_to_io(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = if error.is_reset() || error.is_go_away() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, error)
}
