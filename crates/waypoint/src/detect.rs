//! Protocol detection for ports declared `DETECT`: the first bytes the client sends decide.
//! The HTTP/2 connection preface (`PRI * HTTP/2.0`) means h2c with prior knowledge, an
//! HTTP/1 method token followed by a space means HTTP/1.1, anything else (or nothing within
//! [`DETECT_TIMEOUT`], as for a server-first protocol) is opaque TCP. The bytes read are
//! replayed to whoever serves the stream ([`Rewind`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a client may stay silent before its stream is treated as TCP.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// What a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// Anything else.
    Tcp,
}

/// Classifies `prefix`; `None` while more bytes could still change the answer.
#[must_use]
pub fn classify(prefix: &[u8]) -> Option<Detected> {
    let could_be = |pattern: &[u8]| {
        let n = prefix.len().min(pattern.len());
        prefix[..n] == pattern[..n]
    };
    if prefix.starts_with(H2_PREFACE) {
        return Some(Detected::Http2);
    }
    if METHODS.iter().any(|m| prefix.starts_with(m)) {
        return Some(Detected::Http1);
    }
    let undecided = could_be(H2_PREFACE) || METHODS.iter().any(|m| could_be(m));
    (!undecided).then_some(Detected::Tcp)
}

/// Reads from `io` until the protocol is known (or EOF / timeout: TCP); returns it with
/// the bytes read.
///
/// # Errors
/// A read error.
pub async fn sniff<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(64);
    let read = async {
        loop {
            if let Some(found) = classify(&buf) {
                return Ok::<_, io::Error>(found);
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Ok(Detected::Tcp);
            }
        }
    };
    let detected = match tokio::time::timeout(DETECT_TIMEOUT, read).await {
        Ok(result) => result?,
        Err(_) => Detected::Tcp,
    };
    Ok((detected, buf.freeze()))
}

/// A stream whose first bytes were already read: they are served again first.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_decide() {
        let cases: [(&[u8], Option<Detected>); 9] = [
            (b"", None),
            (b"G", None),
            (b"GET / HTTP/1.1\r\n", Some(Detected::Http1)),
            (b"OPTIONS ", Some(Detected::Http1)),
            (b"PRI * HTTP/2.0\r\n", None),
            (H2_PREFACE, Some(Detected::Http2)),
            (b"\x16\x03\x01", Some(Detected::Tcp)),
            (b"GETX", Some(Detected::Tcp)),
            (b"hello", Some(Detected::Tcp)),
        ];
        for (prefix, expected) in cases {
            assert_eq!(classify(prefix), expected, "{prefix:?}");
        }
    }

    #[tokio::test]
    async fn sniffed_bytes_are_replayed() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"POST /x HTTP/1.1\r\n")
            .await
            .unwrap();
        drop(client);
        let mut server = server;
        let (detected, prefix) = sniff(&mut server).await.unwrap();
        assert_eq!(detected, Detected::Http1);
        let mut all = Vec::new();
        Rewind::new(prefix, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"POST /x HTTP/1.1\r\n");
    }
}
