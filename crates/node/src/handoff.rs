//! Restarting the node proxy without dropping a connection: which of its sockets go to
//! the successor and under which names (the passing itself is `weft_serve::handoff`).
//!
//! A running `weft node --handoff PATH` offers every listening socket it owns: the
//! node-level ones ([`NodeSocket`]: explicit, capture, admin, metrics, readiness, the pod
//! socket) and, for each captured pod, the five it opened inside the pod's network
//! namespace ([`pod_socket_name`]: outbound 15001, plaintext inbound 15006, HBONE 15008,
//! DNS 15053 over UDP and TCP). A process started with the same flags finds it there,
//! receives duplicates of those sockets and uses them instead of binding: the listening
//! sockets, and the connections waiting in their queues, never close. [`Handoff`] is that
//! process's view: what it inherited (taken once, by name, checked against the address it
//! would have bound) and what it offers itself (so it can be replaced in turn).

pub use weft_serve::handoff::{Handoff, offer_until_replaced};

/// The node-level sockets a successor takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSocket {
    /// SOCKS5 / HTTP CONNECT (15080).
    Explicit,
    /// Node-wide outbound capture (15001).
    Outbound,
    /// Node-wide plaintext inbound capture (15006).
    InboundPlaintext,
    /// Admin pages (15000).
    Admin,
    /// Prometheus metrics (15020).
    Metrics,
    /// Readiness (15021).
    Readiness,
    /// The pod source's Unix socket (`--pod-socket`).
    PodSource,
}

impl NodeSocket {
    /// Its hand-off name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Explicit => "node:explicit",
            Self::Outbound => "node:outbound",
            Self::InboundPlaintext => "node:inbound-plaintext",
            Self::Admin => "node:admin",
            Self::Metrics => "node:metrics",
            Self::Readiness => "node:readiness",
            Self::PodSource => "node:pod-socket",
        }
    }
}

/// Transport of a pod socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP listener.
    Tcp,
    /// A UDP socket.
    Udp,
}

/// The hand-off name of a workload's inbound HBONE listener bound by the proxy itself
/// (explicit mode): `workload:<ip>:<port>`.
#[must_use]
pub fn workload_listener_name(addr: std::net::SocketAddr) -> String {
    format!("workload:{}:{}", addr.ip(), addr.port())
}

/// The hand-off name of a pod's socket: `pod:<uid>:tcp:15008`.
#[must_use]
pub fn pod_socket_name(uid: &str, transport: Transport, port: u16) -> String {
    let transport = match transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    format!("pod:{uid}:{transport}:{port}")
}
