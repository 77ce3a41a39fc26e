//! Listener hand-off: a restarted process takes the listening sockets of the running one,
//! so no connection waiting in an accept queue is lost and no port is ever closed.
//!
//! The running process registers each listening socket under a name ("gateway:80",
//! "metrics", "pod:<uid>:15001") in an [`Offered`] set and serves a [`HandoffServer`] on a
//! Unix socket path. A new process started with the same path calls [`Takeover::connect`]:
//! it receives duplicates of every offered socket (`SCM_RIGHTS`), uses them instead of
//! binding ([`Takeover::take_tcp`], [`Takeover::take_udp`]), and once it accepts on them
//! calls [`Takeover::ready`]. The old process closes its offer on the path, confirms with
//! "done" (so the new process can offer on the path at once) and its
//! [`HandoffServer::serve`] returns: it stops accepting and drains its open connections,
//! and the sockets stay open because the new process holds them. Until `ready`, both
//! processes may accept from the same queues; a new process that dies before `ready`, or
//! before it hears "done", leaves the old one serving and offering.
//!
//! The exchange, in frames of a length and text ([`wire`]):
//!
//! ```text
//! new -> old  "take"
//! old -> new  "fds\n<name>\n<name>..." with those sockets attached (several frames if many)
//! old -> new  "end"
//! new -> old  "ready"          (new accepts on the sockets now)
//! old -> new  "done"           (old stopped offering; new may offer on the path itself)
//! ```
//!
//! Both ends check that the peer runs as the same user (`SO_PEERCRED`); the socket file is
//! created mode 0600. A connection that closes before asking (a probe of who offers, see
//! [`offerer_pid`]) changes nothing.

mod sockets;
mod wire;

pub use sockets::{Handoff, offer_until_replaced};

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::net::SocketType;
use tokio::net::{TcpListener, UdpSocket, UnixListener, UnixStream};

use wire::{Channel, MAX_FDS_PER_FRAME, invalid};

/// How long a successor may take to ask after connecting, and the old process to answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening sockets a process offers to its successor, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Offered(Arc<Mutex<BTreeMap<String, OwnedFd>>>);

impl std::fmt::Debug for Offered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Offered").field(&self.names()).finish()
    }
}

impl Offered {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers `socket` (a duplicate of it) under `name` until the returned guard is
    /// dropped; keep the guard with the socket, so a closed listener is no longer offered.
    ///
    /// # Errors
    /// A name with a newline, or the descriptor cannot be duplicated.
    pub fn offer(&self, name: impl Into<String>, socket: &impl AsFd) -> io::Result<OfferGuard> {
        let name = name.into();
        if name.is_empty() || name.contains('\n') {
            return Err(invalid("a hand-off name must be one non-empty line"));
        }
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.lock().insert(name.clone(), fd);
        Ok(OfferGuard {
            offered: self.clone(),
            name,
        })
    }

    /// The names offered now.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OwnedFd>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Duplicates of everything offered now (so the lock is not held while sending).
    fn snapshot(&self) -> io::Result<Vec<(String, OwnedFd)>> {
        self.lock()
            .iter()
            .map(|(name, fd)| Ok((name.clone(), fd.try_clone()?)))
            .collect()
    }
}

/// Keeps one socket offered; dropping it withdraws the offer.
#[derive(Debug)]
pub struct OfferGuard {
    offered: Offered,
    name: String,
}

impl Drop for OfferGuard {
    fn drop(&mut self) {
        self.offered.lock().remove(&self.name);
    }
}

/// The old process's side: offers its sockets on a Unix socket path.
#[derive(Debug)]
pub struct HandoffServer {
    listener: UnixListener,
    path: PathBuf,
}

/// The successor that took the sockets over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    /// Its process id.
    pub pid: u32,
}

impl HandoffServer {
    /// Listens on `path` (mode 0600), replacing a socket file nobody serves any more.
    ///
    /// # Errors
    /// The path cannot be bound (its directory is missing, or another process serves it).
    pub fn bind(path: &Path) -> io::Result<Self> {
        if offerer_pid(path)?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{}: another process offers its listeners here",
                    path.display()
                ),
            ));
        }
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands `offered` to each successor that asks, until one says it is ready; returns it.
    /// The caller then stops accepting and drains. The offer on the path is closed before
    /// the successor hears "done", so it can offer there itself at once; the socket file is
    /// left in place for it to replace.
    ///
    /// # Errors
    /// The Unix listener failed, or the path could not be offered on again after a
    /// successor went away between "ready" and "done" (unless that successor offers there:
    /// it is returned).
    pub async fn serve(self, offered: &Offered) -> io::Result<Successor> {
        let Self { listener, path } = self;
        let mut listener = Some(listener);
        loop {
            let serving = match listener.as_ref() {
                Some(serving) => serving,
                None => match Self::bind(&path) {
                    Ok(server) => listener.insert(server.listener),
                    // A successor that gave up waiting for "done" serves and offers.
                    Err(error) => return offering_instead(&path, error),
                },
            };
            let (stream, _) = serving.accept().await?;
            match hand_off(stream, offered).await {
                Ok(Some((successor, channel))) => {
                    // Closed before "done": the successor offers on this path next.
                    listener = None;
                    if confirm(channel, successor).await {
                        return Ok(successor);
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "listener hand-off failed; still serving");
                }
            }
        }
    }
}

/// The process offering on `path` when this one could not offer there again (`error`): a
/// successor that said "ready", missed "done" and went on serving and offering.
fn offering_instead(path: &Path, error: io::Error) -> io::Result<Successor> {
    match offerer_pid(path) {
        Ok(Some(pid)) => Ok(Successor { pid }),
        _ => Err(error),
    }
}

/// Tells a ready successor the hand-off is done; false (logged) when it went away
/// meanwhile, and the old process keeps serving.
async fn confirm(mut channel: Channel, successor: Successor) -> bool {
    match channel.send("done", &[]).await {
        Ok(()) => {
            tracing::info!(
                pid = successor.pid,
                "successor ready: it accepts on the listeners now"
            );
            true
        }
        Err(error) => {
            tracing::warn!(%error, pid = successor.pid, "successor went away before the hand-off was confirmed; still serving");
            false
        }
    }
}

/// One successor's session: `Some` when it took the sockets and said it is ready (it
/// still waits for "done" on the returned channel).
async fn hand_off(
    stream: UnixStream,
    offered: &Offered,
) -> io::Result<Option<(Successor, Channel)>> {
    let pid = same_user_peer(&stream)?;
    let mut channel = Channel::new(stream);
    let asked = tokio::time::timeout(EXCHANGE_TIMEOUT, channel.recv(|_| 0))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "successor did not ask in time"))?;
    match asked?.as_ref().map(|(text, _)| text.as_str()) {
        None => return Ok(None),
        Some("take") => {}
        Some(other) => return Err(invalid(&format!("unexpected hand-off request {other:?}"))),
    }
    let sockets = offered.snapshot()?;
    for chunk in sockets.chunks(MAX_FDS_PER_FRAME) {
        let mut text = String::from("fds");
        for (name, _) in chunk {
            text.push('\n');
            text.push_str(name);
        }
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|(_, fd)| fd.as_fd()).collect();
        channel.send(&text, &fds).await?;
    }
    channel.send("end", &[]).await?;
    tracing::info!(
        pid,
        sockets = sockets.len(),
        "listeners handed to a successor; waiting until it is ready"
    );
    // The successor may take a while (configuration, certificates): no deadline here.
    match channel.recv(|_| 0).await? {
        Some((text, _)) if text == "ready" => Ok(Some((Successor { pid }, channel))),
        Some((text, _)) => Err(invalid(&format!("unexpected hand-off message {text:?}"))),
        None => {
            tracing::warn!(
                pid,
                "successor went away before it was ready; still serving"
            );
            Ok(None)
        }
    }
}

/// The new process's side: the sockets received from the running process.
#[derive(Debug)]
pub struct Takeover {
    channel: ChannelDebug,
    sockets: BTreeMap<String, OwnedFd>,
    path: PathBuf,
}

/// [`Channel`] without a useful `Debug`.
struct ChannelDebug(Channel);

impl std::fmt::Debug for ChannelDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Channel")
    }
}

impl Takeover {
    /// Takes the sockets offered on `path`; `None` when no process offers there (no socket
    /// file, or a stale one).
    ///
    /// # Errors
    /// The offering process runs as another user, or the exchange failed.
    pub async fn connect(path: &Path) -> io::Result<Option<Self>> {
        let stream = match UnixStream::connect(path).await {
            Ok(stream) => stream,
            Err(error) if nobody_offers(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        same_user_peer(&stream)?;
        let mut channel = Channel::new(stream);
        channel.send("take", &[]).await?;
        let sockets = tokio::time::timeout(EXCHANGE_TIMEOUT, receive_sockets(&mut channel))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))??;
        Ok(Some(Self {
            channel: ChannelDebug(channel),
            sockets,
            path: path.to_owned(),
        }))
    }

    /// The names of the sockets received and not taken yet.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.sockets.keys().cloned().collect()
    }

    /// Takes the socket `name` as it came.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        self.sockets.remove(name)
    }

    /// Takes the TCP listener `name` (must be called within a tokio runtime).
    ///
    /// # Errors
    /// The socket `name` is not a listening stream socket.
    pub fn take_tcp(&mut self, name: &str) -> io::Result<Option<TcpListener>> {
        let Some(fd) = self.take_kind(name, SocketType::STREAM)? else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener).map(Some)
    }

    /// Takes the UDP socket `name` (must be called within a tokio runtime).
    ///
    /// # Errors
    /// The socket `name` is not a datagram socket.
    pub fn take_udp(&mut self, name: &str) -> io::Result<Option<UdpSocket>> {
        let Some(fd) = self.take_kind(name, SocketType::DGRAM)? else {
            return Ok(None);
        };
        let socket = std::net::UdpSocket::from(fd);
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket).map(Some)
    }

    fn take_kind(&mut self, name: &str, kind: SocketType) -> io::Result<Option<OwnedFd>> {
        let Some(fd) = self.sockets.get(name) else {
            return Ok(None);
        };
        let found = rustix::net::sockopt::socket_type(fd)?;
        if found != kind {
            return Err(invalid(&format!(
                "handed-off socket {name:?} is {found:?}, expected {kind:?}"
            )));
        }
        Ok(self.sockets.remove(name))
    }

    /// Tells the old process this one accepts on the sockets now, and waits until it
    /// stopped offering. Sockets not taken are closed here (the old process closes its
    /// copies when it drains). Afterwards this process may [`HandoffServer::bind`] the same
    /// path for its own successor.
    ///
    /// # Errors
    /// The old process went away (it then no longer accepts either: the sockets are ours).
    pub async fn ready(self) -> io::Result<PathBuf> {
        let Self {
            channel: ChannelDebug(mut channel),
            sockets,
            path,
        } = self;
        drop(sockets);
        channel.send("ready", &[]).await?;
        let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, channel.recv(|_| 0))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))??;
        match answer {
            Some((text, _)) if text == "done" => Ok(path),
            _ => Err(invalid("the old process did not confirm the hand-off")),
        }
    }
}

/// Reads the socket frames up to "end".
async fn receive_sockets(channel: &mut Channel) -> io::Result<BTreeMap<String, OwnedFd>> {
    let mut sockets = BTreeMap::new();
    let names_in = |text: &str| {
        text.strip_prefix("fds")
            .map_or(0, |rest| rest.lines().count() - 1)
    };
    loop {
        let Some((text, fds)) = channel.recv(|text| names_in(text)).await? else {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        };
        if text == "end" {
            return Ok(sockets);
        }
        let Some(names) = text.strip_prefix("fds\n") else {
            return Err(invalid(&format!("unexpected hand-off frame {text:?}")));
        };
        sockets.extend(names.lines().map(str::to_owned).zip(fds));
    }
}

/// The process offering its listeners on `path`, if any.
///
/// # Errors
/// The socket exists but cannot be asked (permissions).
pub fn offerer_pid(path: &Path) -> io::Result<Option<u32>> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => {
            let credentials = rustix::net::sockopt::socket_peercred(&stream)?;
            Ok(u32::try_from(credentials.pid.as_raw_nonzero().get()).ok())
        }
        Err(error) if nobody_offers(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// No socket file, or one nobody listens on any more.
fn nobody_offers(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// The peer's pid, refusing a peer that runs as another user.
fn same_user_peer(stream: &UnixStream) -> io::Result<u32> {
    let credentials = rustix::net::sockopt::socket_peercred(stream)?;
    if credentials.uid != rustix::process::geteuid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "hand-off peer runs as another user",
        ));
    }
    Ok(u32::try_from(credentials.pid.as_raw_nonzero().get()).unwrap_or(0))
}

#[cfg(test)]
mod tests;
