//! HTTP/2 PINGs that notice a peer which vanished without closing (node lost, network
//! partition), on both ends of an HBONE connection.

use std::time::Duration;

use h2::{Ping, PingPong};

/// When to PING a connection and how long to wait for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between one answered PING and the next.
    pub interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// PINGs the peer every `interval`; returns when one goes unanswered for `timeout` (or
/// the connection can no longer send PINGs). Never returns when keepalive is off. The
/// HTTP/2 connection must be polled meanwhile (it carries the PONG).
pub(crate) async fn until_peer_silent(pings: Option<(PingPong, Keepalive)>) {
    let Some((mut ping_pong, keepalive)) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(keepalive.interval).await;
        match tokio::time::timeout(keepalive.timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "HBONE keepalive PING failed");
                return;
            }
            Err(_) => {
                tracing::warn!(timeout = ?keepalive.timeout, "HBONE peer did not answer a keepalive PING; closing the connection");
                return;
            }
        }
    }
}
