//! The gateway's listener ports: once the first complete configuration is in, each port of
//! the configuration is bound once on the listen address; when the configuration changes, new ports are bound, removed ports stop
//! accepting and close, and unchanged ports keep their socket and open connections. Every
//! accepted connection is served by the kind of its port in the configuration in force:
//! plain HTTP here, HTTPS / TLS / TCP by the TLS layer. Connection tasks are tracked so a
//! drain can wait for them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use weft_serve::handoff::OfferGuard;

use super::config::PortKind;
use super::{Downstream, Gateway, GatewayConfig};
use crate::restart::Sockets;

/// Ports bound now, with their local addresses.
pub type BoundPorts = BTreeMap<u16, SocketAddr>;

/// Keeps the bound ports in line with the configuration until `stop`, publishing them on
/// `bound`. A port is taken from `sockets` (a previous process's) when it has it, and
/// offered for the next process while open.
pub(crate) async fn follow(
    gateway: Gateway,
    ip: IpAddr,
    sockets: Sockets,
    bound: watch::Sender<BoundPorts>,
    stop: CancellationToken,
) {
    // Fail closed: no port opens before both the mesh state and the Gateway resource are
    // in (a port served on an empty mesh state would answer every request 500).
    tokio::select! {
        () = gateway.engine().loaded() => {}
        () = stop.cancelled() => return,
    }
    let mut changes = gateway.watch_config();
    let mut open: HashMap<u16, Accepting> = HashMap::new();
    let mut config = changes.borrow_and_update().clone();
    loop {
        let complete = sync(&gateway, ip, &sockets, &config, &mut open, &bound).await;
        // A port that could not be bound (still held by a previous process, say) is tried
        // again until it binds or leaves the configuration.
        let retry = async {
            if complete {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(BIND_RETRY).await;
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                config = changes.borrow_and_update().clone();
            }
            () = retry => {}
            () = stop.cancelled() => break,
        }
    }
    for (_, accepting) in open.drain() {
        accepting.close().await;
    }
    bound.send_replace(BoundPorts::new());
}

/// How long to wait before binding a port that failed again.
const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes the ports the configuration dropped and binds the ones it added; false when a
/// port could not be bound.
async fn sync(
    gateway: &Gateway,
    ip: IpAddr,
    sockets: &Sockets,
    config: &GatewayConfig,
    open: &mut HashMap<u16, Accepting>,
    bound: &watch::Sender<BoundPorts>,
) -> bool {
    let mut complete = true;
    let removed: Vec<u16> = open
        .keys()
        .filter(|port| !config.ports.contains_key(port))
        .copied()
        .collect();
    for port in removed {
        if let Some(accepting) = open.remove(&port) {
            tracing::info!(port, "listener removed: closing its port");
            accepting.close().await;
            bound.send_modify(|ports| {
                ports.remove(&port);
            });
        }
    }
    for &port in config.ports.keys() {
        if open.contains_key(&port) {
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        match sockets.listen(&format!("gateway:{port}"), addr).await {
            Ok((listener, offer)) => {
                let local = listener.local_addr().unwrap_or(addr);
                tracing::info!(%local, "listening");
                let stop = CancellationToken::new();
                let task = tokio::spawn(accept(gateway.clone(), port, listener, stop.clone()));
                open.insert(
                    port,
                    Accepting {
                        stop,
                        task,
                        _offer: offer,
                    },
                );
                bound.send_modify(|ports| {
                    ports.insert(port, local);
                });
            }
            Err(error) => {
                tracing::warn!(%addr, %error, "cannot listen on a gateway port; its listeners are not served (retrying)");
                complete = false;
            }
        }
    }
    complete
}

/// The accept task of one bound port.
struct Accepting {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Offered to a successor while the port is open.
    _offer: OfferGuard,
}

impl Accepting {
    /// Stops accepting and waits until the socket is closed.
    async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Accepts on one port until its token is cancelled (the socket closes then).
async fn accept(gateway: Gateway, port: u16, listener: TcpListener, stop: CancellationToken) {
    weft_serve::accept_until(&listener, stop.cancelled(), "gateway", |stream, peer| {
        let task = connection(gateway.clone(), port, stream, peer);
        gateway.connections().spawn(task);
    })
    .await;
}

/// Serves one connection by its port's kind in the configuration in force.
async fn connection(gateway: Gateway, port: u16, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let kind = gateway.config().port(port).map(|p| p.kind);
    match kind {
        Some(PortKind::Http) => {
            let downstream = Downstream {
                peer,
                sni: None,
                tls: false,
                alpn_h2: false,
            };
            super::serve_http(gateway, port, stream, downstream).await;
        }
        Some(PortKind::Tls) => super::tls::serve_connection(gateway, port, stream, peer).await,
        None => tracing::debug!(port, %peer, "connection to a port no longer configured"),
    }
}
