//! Restarting a waypoint or gateway without closing a port (`--handoff-socket PATH`): a new
//! process first takes the listening sockets of the one running on `PATH`
//! (`weft_serve::handoff`), serves on them, and once it is ready tells the old one, which
//! then stops accepting and drains; then it offers its own sockets on `PATH` for the next
//! restart. Without a process on `PATH` it binds as usual.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_serve::handoff::{Handoff, OfferGuard, Takeover, offer_until_replaced};

/// The sockets inherited from a previous process (until ready) and those offered to the
/// next one. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sockets(Handoff);

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
        let Some(takeover) = inherited else {
            return Ok(Self(Handoff::fresh()));
        };
        tracing::info!(path = ?path, sockets = ?takeover.names(), "took over the listeners of the running process");
        Ok(Self(Handoff::taking_over(takeover)))
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
        let listener = match self.0.take_tcp(name, addr)? {
            Some(listener) => listener,
            None => TcpListener::bind(addr).await?,
        };
        let guard = self.0.offered().offer(name, &listener)?;
        Ok((listener, guard))
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
        if self.0.is_taking_over() {
            match self.0.complete().await {
                Ok(()) => {
                    tracing::info!("took over: the previous process stops accepting and drains");
                }
                Err(error) => {
                    tracing::warn!(%error, "the previous process did not confirm the hand-off");
                }
            }
        }
        match offer_until_replaced(&path, &self.0).await {
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

/// The first step of a waypoint's or gateway's shutdown: a process shutting down never
/// tells a predecessor it is ready (the `offering` task stops), and one replaced
/// (`handed_off`) stops answering its `pages` at once: the successor answers on the same
/// sockets.
pub(crate) fn stop_offering_and_pages(
    offering: Option<&tokio::task::JoinHandle<()>>,
    pages: &[tokio::task::JoinHandle<()>],
    handed_off: &CancellationToken,
) {
    if let Some(offering) = offering {
        offering.abort();
    }
    if handed_off.is_cancelled() {
        pages.iter().for_each(tokio::task::JoinHandle::abort);
    }
}
