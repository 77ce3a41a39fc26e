//! Where the data path's own sockets come from, per local pod.
//!
//! In explicit/loopback mode the proxy connects from its own network namespace. With
//! in-pod capture, a capture component registers a [`PodNetwork`] for each enrolled pod's
//! addresses, and the proxy then makes every connection that belongs to that pod from
//! inside the pod's namespace, with the capture bypass mark:
//! - outbound passthrough and HBONE tunnels of a source pod (so they leave with the pod's
//!   own IP, and the tunnel to `<peer>:15008` needs no node address);
//! - inbound connects to a destination pod's workload, bound transparently to the
//!   caller's IP so the workload sees the real caller.
//!
//! Lookups are lock-free (one `ArcSwap` load per connection); registration copies the map.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpSocket, TcpStream};
use weft_hbone::SocketFactory;

use super::Node;

/// A socket being created (the creation may hop to a thread inside another namespace).
pub type SocketFuture = Pin<Box<dyn Future<Output = io::Result<TcpSocket>> + Send>>;

/// Creates the proxy's sockets inside one pod's network.
pub trait PodNetwork: Send + Sync + 'static {
    /// An unconnected TCP socket for connecting to `peer` from the pod, never captured
    /// by the pod's redirect rules; bound (transparently) to `transparent_source` with an
    /// ephemeral port when given.
    fn tcp_socket(&self, peer: SocketAddr, transparent_source: Option<IpAddr>) -> SocketFuture;
}

type NetworkMap = HashMap<IpAddr, Arc<dyn PodNetwork>>;

/// Registered pod networks by pod address.
#[derive(Default)]
pub struct PodNetworks {
    by_ip: ArcSwap<NetworkMap>,
}

impl std::fmt::Debug for PodNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ips: Vec<IpAddr> = self.by_ip.load().keys().copied().collect();
        ips.sort();
        f.debug_struct("PodNetworks").field("ips", &ips).finish()
    }
}

impl PodNetworks {
    /// Makes connections of the pod with addresses `ips` go through `network`.
    pub fn insert(&self, ips: &[IpAddr], network: &Arc<dyn PodNetwork>) {
        self.by_ip.rcu(|current| {
            let mut next = NetworkMap::clone(current);
            for ip in ips {
                next.insert(*ip, Arc::clone(network));
            }
            next
        });
    }

    /// Connections of `ips` go back to the proxy's own namespace.
    pub fn remove(&self, ips: &[IpAddr]) {
        self.by_ip.rcu(|current| {
            let mut next = NetworkMap::clone(current);
            for ip in ips {
                next.remove(ip);
            }
            next
        });
    }

    /// The network registered for `ip`.
    #[must_use]
    pub fn get(&self, ip: IpAddr) -> Option<Arc<dyn PodNetwork>> {
        self.by_ip.load().get(&ip).cloned()
    }
}

impl Node {
    /// Pod networks registered by a capture component.
    #[must_use]
    pub fn pod_networks(&self) -> &PodNetworks {
        &self.inner.pod_networks
    }

    /// Connects to `peer` on behalf of the local pod with address `pod_ip`: from inside
    /// its network when one is registered (bound to `transparent_source` if given), else
    /// from the proxy's namespace. Bounded by the connect timeout.
    pub(crate) async fn connect_for_pod(
        &self,
        pod_ip: IpAddr,
        peer: SocketAddr,
        transparent_source: Option<IpAddr>,
    ) -> io::Result<TcpStream> {
        let timeout = self.inner.options.connect_timeout;
        let network = self.pod_networks().get(pod_ip);
        let connect = async {
            match network {
                Some(network) => {
                    let socket = network.tcp_socket(peer, transparent_source).await?;
                    socket.connect(peer).await
                }
                None => TcpStream::connect(peer).await,
            }
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The tunnel socket factory for HBONE connections of the pod at `pod_ip`, when its
    /// network is registered.
    pub(crate) fn tunnel_socket_factory(&self, pod_ip: IpAddr) -> Option<SocketFactory> {
        let network = self.pod_networks().get(pod_ip)?;
        Some(Arc::new(move |peer: SocketAddr| {
            network.tcp_socket(peer, None)
        }))
    }
}
