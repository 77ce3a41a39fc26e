//! Plain HTTP on a gateway listener port (and HTTP inside TLS the TLS layer terminated):
//! hyper serves the connection — HTTP/2 when ALPN chose it or the client opens with the
//! HTTP/2 preface (h2c prior knowledge), else HTTP/1.1 with upgrades — and every request
//! goes through the one request pipeline with the routes of the listener its Host selects
//! ([`Gateway::listener_key`]: exact hostname, then the longest wildcard, then a listener
//! without hostname; none: 404; over TLS, a Host whose listener is not the SNI's: 421).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Downstream, Gateway};
use crate::detect::{self, Detected, Rewind};
use crate::http::conn::{Conn, GatewayConn};
use crate::http::local::Failure;

/// Serves the HTTP requests of one client connection on listener `port` until the client
/// closes it or the gateway drains.
pub(crate) async fn serve_http<IO>(gateway: Gateway, port: u16, mut io: IO, downstream: Downstream)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (h2, prefix) = if downstream.alpn_h2 {
        (true, Bytes::new())
    } else {
        match detect::sniff(&mut io).await {
            Ok((detected, prefix)) => (detected == Detected::Http2, prefix),
            Err(error) => {
                tracing::debug!(%error, peer = %downstream.peer, "connection closed before its first request");
                return;
            }
        }
    };
    let engine = gateway.engine().clone();
    let own_workload = gateway.own_workload();
    let drain = gateway.drain_token().clone();
    let conn = Conn::Gateway(Arc::new(GatewayConn {
        gateway,
        port,
        downstream,
        own_workload,
    }));
    crate::http::serve(engine, conn, Rewind::new(prefix, io), h2, Some(drain)).await;
}

/// The gateway's own workload record (for the `source_*` labels of L4 connections too).
pub(super) fn own_workload(gateway: &Gateway) -> Option<Arc<weft_upstream::MeshWorkload>> {
    gateway.own_workload()
}

impl Gateway {
    /// Calls `found` with the engine key of the listener of `port` that takes a request for
    /// `host` (borrowed from the listener table: nothing is copied per request).
    ///
    /// # Errors
    /// 404 when no listener of the port covers the host; 421 over TLS when the SNI chose
    /// another listener than the Host does.
    pub(crate) fn with_listener_key<R>(
        &self,
        port: u16,
        host: &str,
        downstream: &Downstream,
        found: impl FnOnce(&str) -> R,
    ) -> Result<R, Failure> {
        let config = self.config();
        let listeners = config.port(port).ok_or_else(Failure::no_route)?;
        let listener = listeners
            .for_host(Some(host))
            .ok_or_else(Failure::no_route)?;
        // Over TLS the handshake chose a listener (without SNI: the one without hostname);
        // a Host naming another one is misdirected.
        let sni = downstream.sni.as_deref();
        if downstream.tls && listeners.for_host(sni).map(|l| &l.name) != Some(&listener.name) {
            tracing::debug!(
                host,
                ?sni,
                port,
                "request for another listener than its SNI"
            );
            return Err(Failure::misdirected());
        }
        Ok(found(&listener.key))
    }
}
