//! The hand-off channel's framing: a connected Unix stream socket carrying frames of a
//! 4-byte big-endian length and UTF-8 text, each frame optionally with descriptors attached
//! (`SCM_RIGHTS`). The kernel attaches a frame's descriptors to its first byte, so reading
//! in order and queueing every descriptor received keeps them in frame order, however the
//! reads split the bytes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::UnixStream;

/// Largest frame accepted (names of a few thousand listeners).
const MAX_FRAME: usize = 256 * 1024;
/// Bytes asked for per read.
const READ_CHUNK: usize = 16 * 1024;
/// Most descriptors sent with one frame (the kernel's limit per message is 253).
pub(super) const MAX_FDS_PER_FRAME: usize = 200;

/// One end of a hand-off connection.
pub(super) struct Channel {
    stream: UnixStream,
    /// Bytes read but not yet parsed into a frame.
    pending: Vec<u8>,
    /// Descriptors received, in order, not yet claimed by a frame.
    fds: VecDeque<OwnedFd>,
    /// Where reads land (on the heap: futures holding it stay small).
    buf: Box<[u8]>,
}

impl Channel {
    pub(super) fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            fds: VecDeque::new(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Sends `text` as one frame with `fds` attached.
    pub(super) async fn send(&mut self, text: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let length = u32::try_from(text.len())
            .ok()
            .filter(|&n| n as usize <= MAX_FRAME)
            .ok_or_else(|| invalid("hand-off frame too large"))?;
        let mut frame = Vec::with_capacity(4 + text.len());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(text.as_bytes());
        let sent = loop {
            self.stream.writable().await?;
            let attempt = self.stream.try_io(Interest::WRITABLE, || {
                let mut space =
                    vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                    return Err(invalid("too many descriptors for one hand-off frame"));
                }
                let iov = [IoSlice::new(&frame)];
                Ok(sendmsg(
                    &self.stream,
                    &iov,
                    &mut control,
                    SendFlags::NOSIGNAL,
                )?)
            });
            match attempt {
                Ok(sent) => break sent,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        };
        // The descriptors went with the first byte; the rest of a partly sent frame follows.
        self.stream.write_all(&frame[sent..]).await
    }

    /// Receives the next frame: its text and the `expected_fds(text)` descriptors that came
    /// with it. `None` when the peer closed the connection between frames.
    pub(super) async fn recv(
        &mut self,
        expected_fds: impl Fn(&str) -> usize,
    ) -> io::Result<Option<(String, Vec<OwnedFd>)>> {
        loop {
            if let Some(text) = self.take_frame()? {
                let wanted = expected_fds(&text);
                if self.fds.len() < wanted {
                    return Err(invalid("hand-off frame arrived without its descriptors"));
                }
                let fds = self.fds.drain(..wanted).collect();
                return Ok(Some((text, fds)));
            }
            if self.read_some().await? == 0 {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
        }
    }

    /// A complete frame from the bytes read so far.
    fn take_frame(&mut self) -> io::Result<Option<String>> {
        let Some(header) = self.pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*header) as usize;
        if length > MAX_FRAME {
            return Err(invalid("hand-off frame too large"));
        }
        if self.pending.len() < 4 + length {
            return Ok(None);
        }
        let body: Vec<u8> = self.pending.drain(..4 + length).skip(4).collect();
        String::from_utf8(body)
            .map(Some)
            .map_err(|_| invalid("hand-off frame is not UTF-8"))
    }

    /// Reads what is there, queueing the descriptors that came with it; 0 at end of stream.
    async fn read_some(&mut self) -> io::Result<usize> {
        let mut space =
            vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))];
        loop {
            self.stream.readable().await?;
            let (stream, fds, buf) = (&self.stream, &mut self.fds, &mut self.buf);
            let attempt = stream.try_io(Interest::READABLE, || {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let mut iov = [IoSliceMut::new(buf)];
                let message = recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
                for cmsg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = cmsg {
                        fds.extend(received);
                    }
                }
                Ok(message.bytes)
            });
            match attempt {
                Ok(bytes) => {
                    self.pending.extend_from_slice(&self.buf[..bytes]);
                    return Ok(bytes);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
}

pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
