//! The accept loop every weft listener runs: take connections until a stop signal, hand
//! each to the caller (which spawns whatever serves it), and survive accept errors. An
//! accept error is usually the process running out of descriptors (`EMFILE`); retrying at
//! once would spin a core, so the loop pauses briefly and keeps the listener open.

use std::future::Future;
use std::io;
use std::time::Duration;

/// Pause after a failed accept before trying again.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A listening socket (TCP or Unix).
pub trait Listener: Send {
    /// An accepted connection.
    type Stream: Send;
    /// The peer's address.
    type Addr: Send;

    /// Waits for the next connection.
    fn accept_next(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    fn accept_next(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn accept_next(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send {
        self.accept()
    }
}

/// Accepts connections on `listener` until `stop` completes, calling `on_accept` for each
/// (it must not block: spawn the work). `what` names the listener in the warning logged
/// when an accept fails. Returns when stopped; the listener is the caller's to drop.
pub async fn accept_until<L, F>(
    listener: &L,
    stop: impl Future<Output = ()>,
    what: &str,
    mut on_accept: F,
) where
    L: Listener,
    F: FnMut(L::Stream, L::Addr),
{
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept_next() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(error) => {
                tracing::warn!(listener = what, %error, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, oneshot};

    #[tokio::test]
    async fn hands_over_each_connection_and_returns_when_stopped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, mut peers) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            accept_until(&listener, stop, "test", |_, peer| {
                accepted.send(peer).unwrap();
            })
            .await;
        });
        for _ in 0..3 {
            let client = TcpStream::connect(addr).await.unwrap();
            let peer = peers.recv().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
        }
        stop.send(()).unwrap();
        serving.await.unwrap();
    }
}
