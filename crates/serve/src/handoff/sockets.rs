//! A process's side of a restart: the sockets it inherited from its predecessor (each taken
//! once, by name, and only when bound where this process would bind it) and the ones it
//! offers to its successor. The node proxy, waypoints and gateways all restart through it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{HandoffServer, OfferGuard, Offered, Successor, Takeover};

/// The sockets this process inherited from its predecessor and the ones it offers to its
/// successor. Cheap to clone.
#[derive(Clone, Default)]
pub struct Handoff {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    offered: Offered,
    /// Until the predecessor is told we are ready.
    inherited: Mutex<Option<Takeover>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("offered", &self.inner.offered)
            .field("inheriting", &self.is_taking_over())
            .finish()
    }
}

impl Handoff {
    /// A process that binds its own sockets (and offers them).
    #[must_use]
    pub fn fresh() -> Self {
        Self::default()
    }

    /// A process taking over the sockets received in `takeover`.
    #[must_use]
    pub fn taking_over(takeover: Takeover) -> Self {
        let handoff = Self::default();
        *handoff.inherited() = Some(takeover);
        handoff
    }

    /// Whether sockets of a predecessor are still waiting to be taken (before
    /// [`Handoff::complete`]).
    #[must_use]
    pub fn is_taking_over(&self) -> bool {
        self.inherited().is_some()
    }

    /// What this process offers to its successor.
    #[must_use]
    pub fn offered(&self) -> &Offered {
        &self.inner.offered
    }

    /// Offers `socket` under `name`; the offer ends when the guard drops (keep it with
    /// the socket). A socket that cannot be offered only makes a later restart bind anew.
    pub fn offer(&self, name: &str, socket: &impl AsFd) -> Option<OfferGuard> {
        match self.inner.offered.offer(name, socket) {
            Ok(guard) => Some(guard),
            Err(error) => {
                tracing::warn!(name, %error, "cannot offer a socket for hand-off");
                None
            }
        }
    }

    /// The inherited TCP listener `name`, when there is one bound to `expected` (a
    /// listener bound elsewhere, e.g. after a flag change, is dropped: the caller binds).
    ///
    /// # Errors
    /// The socket under that name is not a TCP listener.
    pub fn take_tcp(
        &self,
        name: &str,
        expected: SocketAddr,
    ) -> io::Result<Option<tokio::net::TcpListener>> {
        let taken = self.with_takeover(|t| t.take_tcp(name))?;
        Ok(taken.filter(|listener| matches_address(name, listener.local_addr(), expected)))
    }

    /// The inherited UDP socket `name`, when there is one bound to `expected`.
    ///
    /// # Errors
    /// The socket under that name is not a UDP socket.
    pub fn take_udp(
        &self,
        name: &str,
        expected: SocketAddr,
    ) -> io::Result<Option<tokio::net::UdpSocket>> {
        let taken = self.with_takeover(|t| t.take_udp(name))?;
        Ok(taken.filter(|socket| matches_address(name, socket.local_addr(), expected)))
    }

    /// The inherited Unix listener `name`.
    ///
    /// # Errors
    /// The socket cannot be used by the runtime.
    pub fn take_unix(&self, name: &str) -> io::Result<Option<tokio::net::UnixListener>> {
        let Some(fd) = self.with_takeover(|t| Ok(t.take(name)))? else {
            return Ok(None);
        };
        let listener = std::os::unix::net::UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener).map(Some)
    }

    /// Tells the predecessor that this process accepts on the sockets now and waits until
    /// it confirms (it stopped offering them and stops accepting). Inherited sockets not
    /// taken by then are closed. Does nothing
    /// for a fresh process.
    ///
    /// # Errors
    /// The predecessor went away before confirming (it no longer accepts either).
    pub async fn complete(&self) -> io::Result<()> {
        let takeover = self.inherited().take();
        if let Some(takeover) = takeover {
            takeover.ready().await?;
        }
        Ok(())
    }

    fn with_takeover<T>(
        &self,
        take: impl FnOnce(&mut Takeover) -> io::Result<Option<T>>,
    ) -> io::Result<Option<T>> {
        match self.inherited().as_mut() {
            Some(takeover) => take(takeover),
            None => Ok(None),
        }
    }

    fn inherited(&self) -> MutexGuard<'_, Option<Takeover>> {
        self.inner
            .inherited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Offers `handoff`'s sockets on the Unix socket `path` (its directory is created) until
/// a successor took them and is ready; returns it. The caller then stops accepting and
/// drains.
///
/// # Errors
/// The path cannot be bound, or the Unix listener failed.
pub async fn offer_until_replaced(path: &Path, handoff: &Handoff) -> io::Result<Successor> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let server = HandoffServer::bind(path)?;
    tracing::info!(path = %path.display(), sockets = handoff.offered().names().len(), "offering the listeners to a successor");
    server.serve(handoff.offered()).await
}

/// Whether an inherited socket is bound where this process would bind it.
fn matches_address(name: &str, bound: io::Result<SocketAddr>, expected: SocketAddr) -> bool {
    let matches = bound.as_ref().is_ok_and(|addr| {
        addr.ip() == expected.ip() && (expected.port() == 0 || addr.port() == expected.port())
    });
    if !matches {
        tracing::warn!(name, ?bound, %expected, "inherited socket is bound elsewhere; binding anew");
    }
    matches
}
