//! Who may use the proxy, and when.
//!
//! - **Fail closed before the first configuration.** Every listener that makes a mesh
//!   decision (explicit, outbound and plaintext-inbound capture, inbound HBONE) holds a
//!   connection accepted before the first complete configuration until it arrives, for at
//!   most [`ProxyOptions::config_wait`](super::ProxyOptions::config_wait), then refuses it:
//!   with an empty state every destination would look "outside the mesh" and be relayed
//!   in plaintext, and no policy would apply. Once loaded, the check is one atomic load.
//! - **The explicit port serves only local workloads**: a caller whose source address is
//!   not a workload scheduled on this node is refused.
//! - **The explicit port is no way into the node**: a destination on one of the proxy's
//!   own ports, or a loopback / link-local / unspecified address that is no mesh
//!   workload or service, is refused (admin pages, the control plane's admin, whatever
//!   else listens on localhost). Explicit mode on loopback puts workloads and services in
//!   `127/8`, so mesh addresses are checked first.
//! - **No self-calls on the data path**: a captured or tunnelled connection whose
//!   destination port is one of the proxy's handler ports (15001, 15006, 15008, 15080) is
//!   refused before policy; otherwise it would be dialled straight back into the proxy,
//!   which would dial it again, until descriptors run out.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::Node;
use crate::state::{Destination, MeshState};

/// Ports of the proxy's listeners at their standard numbers: admin, outbound capture,
/// plaintext inbound, HBONE, metrics, readiness, DNS, explicit. Never a destination of
/// the explicit port, whatever the address (bound ports are added at run time).
const PROXY_PORTS: [u16; 8] = [15000, 15001, 15006, 15008, 15020, 15021, 15053, 15080];

/// Ports of the proxy's connection handlers inside a pod (outbound capture, plaintext
/// inbound, HBONE, explicit): a data-path connection to one of them would come straight
/// back into the proxy, again and again. Refused as a self-call, whatever the address.
const HANDLER_PORTS: [u16; 4] = [15001, 15006, 15008, 15080];

/// Whether the first complete configuration has arrived; connections wait on it.
pub(crate) struct ConfigGate {
    loaded: AtomicBool,
    changes: watch::Sender<bool>,
}

impl ConfigGate {
    pub(crate) fn new() -> Self {
        Self {
            loaded: AtomicBool::new(false),
            changes: watch::Sender::new(false),
        }
    }

    /// Opens the gate for good and wakes every waiting connection.
    pub(crate) fn open(&self) {
        self.loaded.store(true, Ordering::Release);
        self.changes.send_replace(true);
    }

    /// Whether the configuration is loaded.
    pub(crate) fn is_open(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Waits up to `limit` for the configuration; false when it did not arrive in time.
    async fn wait(&self, limit: Duration) -> bool {
        if self.is_open() {
            return true;
        }
        let mut changes = self.changes.subscribe();
        tokio::time::timeout(limit, changes.wait_for(|loaded| *loaded))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

/// The proxy's own listening addresses (admin, metrics, explicit...), as bound.
#[derive(Default)]
pub(crate) struct OwnListeners(RwLock<Vec<SocketAddr>>);

impl OwnListeners {
    fn add(&self, addr: SocketAddr) {
        let mut addrs = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    fn has_port(&self, port: u16) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|addr| addr.port() == port)
    }
}

/// Why the explicit port refused a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenReason {
    /// A port one of the proxy's listeners uses.
    ProxyPort,
    /// A loopback, link-local or unspecified address that is no mesh address.
    HostLocal,
}

impl std::fmt::Display for ForbiddenReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ProxyPort => "a port of the node proxy itself",
            Self::HostLocal => "a loopback or link-local address outside the mesh",
        })
    }
}

impl Node {
    /// Marks the mesh configuration as loaded: readiness needs it, and connections
    /// accepted before it are released.
    pub fn set_config_loaded(&self) {
        self.inner.gate.open();
    }

    /// Whether the first complete configuration has arrived.
    pub(crate) fn config_loaded(&self) -> bool {
        self.inner.gate.is_open()
    }

    /// Waits (bounded) for the first configuration before a connection from `peer` on
    /// the `listener` is served; false (counted and logged) when it must be refused.
    pub(crate) async fn await_config(&self, listener: &'static str, peer: SocketAddr) -> bool {
        if self.inner.gate.wait(self.inner.options.config_wait).await {
            return true;
        }
        self.inner.counters.refused_not_ready.inc();
        tracing::debug!(%peer, listener, "refusing connection: no mesh configuration yet");
        false
    }

    /// Records the address of a node-wide listener of this proxy: its port is never a
    /// destination of the explicit port.
    pub(crate) fn add_own_listener(&self, listener: &tokio::net::TcpListener) {
        if let Ok(addr) = listener.local_addr() {
            self.inner.own_listeners.add(addr);
        }
    }

    /// Whether `source` may use the explicit port: a workload scheduled on this node
    /// (enrolled or not; one outside the mesh is still refused mesh destinations).
    pub(crate) fn is_local_caller(&self, state: &MeshState, source: IpAddr) -> bool {
        let network = self.inner.options.network.as_str();
        state
            .workload_by_addr(network, source.to_canonical())
            .is_some_and(|w| w.proto().node == self.inner.options.node_name)
    }

    /// Why the explicit port must not relay to `dst`, if it must not.
    pub(crate) fn forbidden_destination(
        &self,
        state: &MeshState,
        dst: SocketAddr,
    ) -> Option<ForbiddenReason> {
        let port = dst.port();
        if self.is_proxy_port(port) {
            return Some(ForbiddenReason::ProxyPort);
        }
        let dst = SocketAddr::new(dst.ip().to_canonical(), port);
        let network = self.inner.options.network.as_str();
        let in_mesh = !matches!(state.resolve(network, dst), Destination::Unknown);
        (!in_mesh && is_host_local(dst.ip())).then_some(ForbiddenReason::HostLocal)
    }
}

impl Node {
    /// Why the proxy must not open plain TCP to `endpoint`, whatever the client asked for,
    /// if it must not: a host-local address that is no pod (a ServiceEntry or WorkloadEntry
    /// endpoint on `127.0.0.1` or `169.254.169.254` would otherwise lead into the node or
    /// to its cloud metadata), or a proxy port on a host-local address. Pods themselves
    /// may live on loopback (explicit mode), so their addresses stay reachable.
    pub(crate) fn forbidden_endpoint(
        &self,
        state: &MeshState,
        endpoint: SocketAddr,
    ) -> Option<ForbiddenReason> {
        let ip = endpoint.ip().to_canonical();
        if !is_host_local(ip) {
            return None;
        }
        if self.is_proxy_port(endpoint.port()) {
            return Some(ForbiddenReason::ProxyPort);
        }
        let network = self.inner.options.network.as_str();
        let pod = state
            .workload_by_addr(network, ip)
            .is_some_and(|w| !w.proto().node.is_empty());
        (!pod).then_some(ForbiddenReason::HostLocal)
    }

    /// Whether a data-path destination on `port` would be a call of the proxy to itself
    /// (one of its connection handlers' ports, or its configured HBONE port).
    pub(crate) fn is_self_call(&self, port: u16) -> bool {
        HANDLER_PORTS.contains(&port) || port == self.inner.options.hbone_port
    }

    fn is_proxy_port(&self, port: u16) -> bool {
        PROXY_PORTS.contains(&port)
            || port == self.inner.options.hbone_port
            || self.inner.own_listeners.has_port(port)
    }
}

/// Loopback, link-local or unspecified ("this host"): addresses that reach the node
/// itself or its link rather than a workload.
pub(crate) fn is_host_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.octets()[0] == 0
        }
        IpAddr::V6(ip) => ip.is_loopback() || ip.is_unspecified() || ip.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_addresses() {
        for local in [
            "127.0.0.1",
            "127.9.1.3",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.1.1",
        ] {
            assert!(is_host_local(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
        ] {
            assert!(!is_host_local(remote.parse().unwrap()), "{remote}");
        }
    }

    #[tokio::test]
    async fn gate_releases_waiters_when_opened_and_times_out_otherwise() {
        let gate = std::sync::Arc::new(ConfigGate::new());
        assert!(!gate.wait(Duration::ZERO).await);
        let waiter = {
            let gate = std::sync::Arc::clone(&gate);
            tokio::spawn(async move { gate.wait(Duration::from_secs(60)).await })
        };
        gate.open();
        assert!(waiter.await.unwrap());
        assert!(gate.is_open());
    }
}
