//! The listener set of local workloads.
//!
//! Each local workload gets an inbound HBONE listener on its own address (in-pod style:
//! a source proxy reaches the destination's node proxy by connecting to
//! `<workload ip>:15008`). Two ways to get one:
//! - automatic (explicit/loopback mode): [`WorkloadListeners::reconcile`] binds
//!   `<ip>:<hbone port>` for every local workload (or takes it from the proxy it replaces,
//!   and offers it to the next one) and closes listeners of workloads that left or moved;
//! - from a capture component: [`WorkloadListeners::attach`] takes sockets it opened inside
//!   the pod's network namespace ([`PodSockets`]: HBONE, and optionally the 15001 outbound
//!   and 15006 plaintext inbound listeners); [`WorkloadListeners::detach`] removes them.
//!
//! Removing a listener stops accepting on it; connections already open drain normally.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_hbone::{HboneServer, ServerOptions};
use weft_identity::SpiffeId;
use weft_serve::handoff::{Handoff, OfferGuard};

use super::inbound::InboundDestination;
use super::outbound::OutboundTarget;
use super::{Node, NodeInner};
use crate::state::{MeshState, MeshWorkload};

/// Pause between attempts to get a listener's certificate.
const RETRY_CERT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sockets a capture component opened for one pod (inside its network namespace).
#[derive(Debug)]
pub struct PodSockets {
    /// Inbound HBONE (15008).
    pub hbone: TcpListener,
    /// Outbound capture (15001): destinations from `SO_ORIGINAL_DST`.
    pub outbound: Option<TcpListener>,
    /// Plaintext inbound capture (15006): destinations from `SO_ORIGINAL_DST`.
    pub inbound_plaintext: Option<TcpListener>,
}

/// Why sockets could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No local workload has this address.
    #[error("no workload on this node has address {0}")]
    UnknownWorkload(IpAddr),
    /// The proxy is shutting down.
    #[error("the node proxy is shutting down")]
    ShuttingDown,
}

struct Attached {
    identity: SpiffeId,
    uid: String,
    /// Bound by [`WorkloadListeners::reconcile`] (vs. handed in by capture).
    automatic: bool,
    stop: CancellationToken,
    /// Offers an automatic listener to a successor while it is open.
    _offer: Option<OfferGuard>,
    /// A duplicate of an automatic listener's socket, served again (not bound anew) when
    /// its workload changes identity: the closing server, and a predecessor, still hold
    /// the address.
    socket: Option<OwnedFd>,
}

/// Listeners per local workload address.
pub struct WorkloadListeners {
    node: Weak<NodeInner>,
    attached: Mutex<HashMap<IpAddr, Attached>>,
    /// Set once automatic listeners are on: the hand-off they are taken from and offered to.
    automatic: OnceLock<Handoff>,
}

impl std::fmt::Debug for WorkloadListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadListeners")
            .field("addresses", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl WorkloadListeners {
    pub(super) fn new(node: Weak<NodeInner>) -> Self {
        Self {
            node,
            attached: Mutex::default(),
            automatic: OnceLock::new(),
        }
    }

    fn node(&self) -> Option<Node> {
        self.node.upgrade().map(|inner| Node { inner })
    }

    /// Workload addresses that currently have listeners.
    #[must_use]
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut all: Vec<IpAddr> = self.lock().keys().copied().collect();
        all.sort();
        all
    }

    /// Serves a pod's sockets for the local workload owning `workload_ip`, replacing any
    /// listeners it had.
    ///
    /// # Errors
    /// When no local workload has the address or the proxy is shutting down.
    pub fn attach(&self, workload_ip: IpAddr, sockets: PodSockets) -> Result<(), AttachError> {
        let node = self.node().ok_or(AttachError::ShuttingDown)?;
        let state = node.store().snapshot();
        let workload = local_workload(&node, &state, workload_ip)
            .ok_or(AttachError::UnknownWorkload(workload_ip))?;
        let identity = workload.identity().clone();
        let stop = node.inner.stop_accepting.child_token();
        node.serve_hbone_listener(sockets.hbone, workload_ip, identity.clone(), stop.clone());
        if let Some(listener) = sockets.outbound {
            let pod: Arc<[IpAddr]> = workload.addresses().iter().copied().collect();
            node.serve_outbound_scoped(listener, Some(pod), stop.clone());
        }
        if let Some(listener) = sockets.inbound_plaintext {
            node.serve_plaintext_scoped(
                listener,
                InboundDestination::OriginalDst,
                Some(workload_ip),
                stop.clone(),
            );
        }
        self.insert(
            workload_ip,
            Attached {
                identity,
                uid: workload.uid().to_owned(),
                automatic: false,
                stop,
                _offer: None,
                socket: None,
            },
        );
        Ok(())
    }

    /// Stops the listeners of `workload_ip`; returns whether it had any.
    pub fn detach(&self, workload_ip: IpAddr) -> bool {
        match self.lock().remove(&workload_ip) {
            Some(attached) => {
                attached.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Turns automatic listeners on (explicit mode), taking inherited ones from `handoff`
    /// and offering them there, and reconciles now. A proxy taking over calls this once it
    /// is ready, so it never accepts tunnels before.
    pub fn enable_automatic(&self, handoff: Handoff) {
        let _ = self.automatic.set(handoff);
        self.reconcile();
    }

    /// With automatic listeners on: binds `<ip>:<hbone port>` for every local workload
    /// address without a listener (or takes the one inherited), and closes those whose
    /// workload left this node; a workload whose identity changed is served again on the
    /// same socket. Reads the state under the lock, so concurrent calls apply the newest.
    pub fn reconcile(&self) {
        let (Some(node), Some(handoff)) = (self.node(), self.automatic.get()) else {
            return;
        };
        let mut attached = self.lock();
        let state = node.store().snapshot();
        let mut wanted: HashMap<IpAddr, (SpiffeId, String)> = HashMap::new();
        for workload in node.local_workloads(&state) {
            let identity = workload.identity();
            for ip in workload.addresses() {
                wanted.insert(*ip, (identity.clone(), workload.uid().to_owned()));
            }
        }
        let mut reusable: HashMap<IpAddr, OwnedFd> = HashMap::new();
        attached.retain(|ip, current| {
            let keep = !current.automatic
                || wanted
                    .get(ip)
                    .is_some_and(|(id, uid)| *id == current.identity && *uid == current.uid);
            if !keep {
                tracing::info!(%ip, "closing inbound HBONE listener of a workload that left or changed");
                current.stop.cancel();
                if let Some(socket) = current.socket.take().filter(|_| wanted.contains_key(ip)) {
                    reusable.insert(*ip, socket);
                }
            }
            keep
        });
        for (ip, (identity, uid)) in wanted {
            if attached.contains_key(&ip) {
                continue;
            }
            let addr = SocketAddr::new(ip, node.options().hbone_port);
            let name = crate::handoff::workload_listener_name(addr);
            let listener = match reusable.remove(&ip) {
                Some(socket) => from_socket(socket),
                None => take_or_bind(handoff, &name, addr),
            };
            match listener {
                Ok(listener) => {
                    let socket = listener.as_fd().try_clone_to_owned().ok();
                    let offer = handoff.offer(&name, &listener);
                    let stop = node.inner.stop_accepting.child_token();
                    node.serve_hbone_listener(listener, ip, identity.clone(), stop.clone());
                    let entry = Attached {
                        identity,
                        uid,
                        automatic: true,
                        stop,
                        _offer: offer,
                        socket,
                    };
                    attached.insert(ip, entry);
                }
                Err(error) => {
                    tracing::warn!(%addr, %error, "cannot bind inbound HBONE listener; retrying on the next state change");
                }
            }
        }
    }

    fn insert(&self, ip: IpAddr, entry: Attached) {
        if let Some(previous) = self.lock().insert(ip, entry) {
            previous.stop.cancel();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Attached>> {
        self.attached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn local_workload(
    node: &Node,
    state: &MeshState,
    ip: IpAddr,
) -> Option<std::sync::Arc<MeshWorkload>> {
    state
        .workload_by_addr(&node.options().network, ip)
        .filter(|w| node.is_local(w))
        .cloned()
}

/// The listener `handoff` inherited as `name` when it is bound to `addr`, else a new one.
fn take_or_bind(handoff: &Handoff, name: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    match handoff.take_tcp(name, addr) {
        Ok(Some(listener)) => Ok(listener),
        Ok(None) => bind_now(addr),
        Err(error) => {
            tracing::warn!(name, %error, "inherited socket unusable; binding anew");
            bind_now(addr)
        }
    }
}

/// A listening socket kept from a listener, as a listener again.
fn from_socket(socket: OwnedFd) -> std::io::Result<TcpListener> {
    TcpListener::from_std(std::net::TcpListener::from(socket))
}

/// Binds a listener synchronously (reconcile runs outside async context).
fn bind_now(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

impl Node {
    /// Serves inbound HBONE for the workload at `scope` presenting `identity`'s
    /// certificate, until `stop` (then drains its connections).
    fn serve_hbone_listener(
        &self,
        listener: TcpListener,
        scope: IpAddr,
        identity: SpiffeId,
        stop: CancellationToken,
    ) {
        let node = self.clone();
        self.spawn_tracked(async move {
            let Some(config) = node.listener_tls(&identity, scope, &stop).await else {
                return;
            };
            tracing::info!(addr = ?listener.local_addr().ok(), %identity, "serving inbound HBONE");
            let handler = node.hbone_handler(Some(scope));
            let options = ServerOptions {
                limits: Some(std::sync::Arc::clone(&node.inner.inbound_limits)),
                ..ServerOptions::default()
            };
            let server = HboneServer::new(config, handler, options);
            server.serve(listener, stop).await;
        });
    }

    /// Waits (retrying) for the TLS config of `identity`; `None` when stopped first.
    async fn listener_tls(
        &self,
        identity: &SpiffeId,
        scope: IpAddr,
        stop: &CancellationToken,
    ) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        let wait = self.inner.options.cert_wait;
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return None,
                config = self.inner.certs.server_config(identity, wait) => config,
            };
            match attempt {
                Ok(config) => return Some(config),
                Err(error) => {
                    tracing::warn!(%scope, %error, "inbound HBONE listener waits for its certificate");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(RETRY_CERT) => {}
            }
        }
    }

    /// Serves the outbound capture listener (15001) until shutdown: each connection goes
    /// to its `SO_ORIGINAL_DST`.
    pub fn serve_outbound(&self, listener: TcpListener) {
        self.add_own_listener(&listener);
        let stop = self.inner.stop_accepting.clone();
        self.serve_outbound_scoped(listener, None, stop);
    }

    /// Serves an outbound capture listener. `pod`: the addresses of the pod whose network
    /// the listener lives in (`None` for a node-wide listener); a connection from any
    /// other source address is closed, so a pod that adds a neighbour's address to its
    /// interface cannot borrow the neighbour's identity (chosen from the source address).
    fn serve_outbound_scoped(
        &self,
        listener: TcpListener,
        pod: Option<Arc<[IpAddr]>>,
        stop: CancellationToken,
    ) {
        self.serve_accept_loop(listener, stop, move |node, mut stream, peer| {
            let from_pod = pod
                .as_deref()
                .is_none_or(|pod| pod.contains(&peer.ip().to_canonical()));
            async move {
                if !from_pod {
                    tracing::info!(%peer, "outbound connection from an address that is not its pod's; closing");
                    return;
                }
                let Some(destination) = node.outbound_destination(&stream, peer) else {
                    return;
                };
                if !node.await_config("outbound", peer).await {
                    return;
                }
                let target = OutboundTarget {
                    source: peer,
                    destination,
                };
                if let Ok(connection) = node.open_outbound(target).await {
                    let format = node.options().access_log;
                    connection.relay(&mut stream, &[], format).await;
                }
            }
        });
    }

    /// The original destination of a captured outbound connection, `None` (logged) when
    /// it must be closed: not redirected (the connection was made to the listener itself),
    /// or aimed at one of the
    /// proxy's handler ports on a host-local address (a self-call).
    fn outbound_destination(
        &self,
        stream: &tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Option<SocketAddr> {
        match super::original_dst::original_dst(stream) {
            // Not redirected: the original destination is the listener's own address.
            Ok(dst) if stream.local_addr().is_ok_and(|local| local == dst) => {
                tracing::debug!(%peer, %dst, "outbound connection was not redirected; closing");
                None
            }
            Ok(dst)
                if self.is_self_call(dst.port()) && super::admission::is_host_local(dst.ip()) =>
            {
                tracing::info!(%peer, %dst, "outbound connection to a port of the proxy itself refused");
                None
            }
            Ok(dst) => Some(dst),
            Err(error) => {
                tracing::debug!(%peer, %error, "no original destination; closing");
                None
            }
        }
    }
}
