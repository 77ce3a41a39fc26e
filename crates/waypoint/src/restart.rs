//! Restarting a waypoint or gateway without closing a port (`--handoff-socket PATH`): a new
//! process first takes the listening sockets of the one running on `PATH`
//! (`weft_serve::handoff`), serves on them, and once it is ready tells the old one, which
//! then stops accepting and drains; then it offers its own sockets on `PATH` for the next
//! restart. Without a process on `PATH` it binds as usual.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_serve::handoff::{HandoffServer, OfferGuard, Offered, Takeover};

/// The sockets inherited from a previous process (until ready) and those offered to the
/// next one. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Sockets {
    inherited: Arc<Mutex<Option<Takeover>>>,
    offered: Offered,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("offered", &self.offered)
            .finish_non_exhaustive()
    }
}

impl Sockets {
    /// Takes the sockets of the process offering on `path` (none without a path, or when
    /// nobody offers there).
    ///
    /// # Errors
    /// A process offers on `path` but the exchange failed.
    pub(crate) async fn take_over(path: Option<&Path>) -> io::Result<Self> {
        let inherited = match path {
            Some(path) => Takeover::connect(path).await?,
            None => None,
        };
        if let Some(takeover) = &inherited {
            tracing::info!(path = ?path, sockets = ?takeover.names(), "took over the listeners of the running process");
        }
        Ok(Self {
            inherited: Arc::new(Mutex::new(inherited)),
            offered: Offered::new(),
        })
    }

    /// The TCP listener `name` on `addr`: the inherited one when it listens there, else a
    /// new one; offered to the next process while the guard lives.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub(crate) async fn listen(
        &self,
        name: &str,
        addr: SocketAddr,
    ) -> io::Result<(TcpListener, OfferGuard)> {
        let listener = match self.inherited(name, addr)? {
            Some(listener) => listener,
            None => TcpListener::bind(addr).await?,
        };
        let guard = self.offered.offer(name, &listener)?;
        Ok((listener, guard))
    }

    fn inherited(&self, name: &str, addr: SocketAddr) -> io::Result<Option<TcpListener>> {
        let mut inherited = self
            .inherited
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(takeover) = inherited.as_mut() else {
            return Ok(None);
        };
        let Some(listener) = takeover.take_tcp(name)? else {
            return Ok(None);
        };
        let local = listener.local_addr()?;
        let same = local == addr || (addr.port() == 0 && local.ip() == addr.ip());
        if !same {
            tracing::info!(name, %local, %addr, "inherited listener is on another address: binding anew");
            return Ok(None);
        }
        Ok(Some(listener))
    }

    /// Once `ready` completes: tells the previous process (if any) to stop accepting, then
    /// offers this process's sockets on `path` until a successor is ready, and cancels
    /// `handed_off` then.
    pub(crate) async fn offer_when_ready(
        self,
        path: PathBuf,
        ready: impl Future<Output = ()>,
        handed_off: CancellationToken,
    ) {
        ready.await;
        let previous = self
            .inherited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(takeover) = previous {
            match takeover.ready().await {
                Ok(_) => tracing::info!("the previous process stopped accepting: serving alone"),
                Err(error) => {
                    tracing::warn!(%error, "the previous process did not confirm the hand-off");
                }
            }
        }
        let server = match HandoffServer::bind(&path) {
            Ok(server) => server,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot offer the listeners for a restart");
                return;
            }
        };
        match server.serve(&self.offered).await {
            Ok(successor) => {
                tracing::info!(
                    pid = successor.pid,
                    "a new process took over the listeners: draining"
                );
                handed_off.cancel();
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "listener hand-off stopped");
            }
        }
    }
}
