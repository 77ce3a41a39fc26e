//! The data path of `weft node`: listeners, outbound routing over HBONE (or plain TCP
//! passthrough), the inbound HBONE and plaintext servers, policy enforcement on open
//! connections, and the admin/metrics/readiness pages.
//!
//! [`Node`] is the shared context every connection task uses (state store, certificates,
//! HBONE pool, metrics, connection table). [`process::run`](crate::process::run) builds one
//! from a [`NodeConfig`](crate::process::NodeConfig), binds the listeners and feeds the state.
//!
//! Listeners can come from elsewhere: [`Node::serve_explicit`], [`Node::serve_outbound`] and
//! [`Node::serve_inbound_plaintext`] take any bound `TcpListener`, and
//! [`WorkloadListeners::attach`] takes the sockets a capture component opened inside a pod's
//! network namespace.
//!
//! Every listener that makes a mesh decision fails closed until the first complete
//! configuration has arrived, and the explicit port serves only local workloads and never
//! relays to the node itself (see `admission`).

mod admin;
mod admission;
mod cert_metrics;
mod certs;
mod connections;
mod egress;
mod explicit;
mod inbound;
mod listeners;
mod original_dst;
mod outbound;
mod pod_network;
mod xds;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_identity::SpiffeId;
use weft_serve::handoff::Handoff;
use weft_upstream::{NameResolver, Upstream};

use crate::state::{MeshState, MeshWorkload, StateStore};
use crate::telemetry::{AccessLogFormat, Metrics};

pub use admission::ForbiddenReason;
pub use cert_metrics::{
    EXPIRY_METRIC, NOT_BEFORE_METRIC, TimeGauge, encode_time_gauges, register_cert_metrics,
    unix_secs,
};
pub use certs::{Certs, CertsError};
pub use connections::{ConnectionInfo, Direction};
pub use egress::{MeshConfigHandler, REGISTRY_ONLY_REASON};
pub use explicit::{ExplicitError, decode_explicit_request};
pub use inbound::{InboundDestination, Refusal, inbound_limits};
pub use listeners::{AttachError, PodSockets, WorkloadListeners};
pub use outbound::{OutboundError, OutboundTarget};
pub use pod_network::{PodNetwork, PodNetworks, SocketFuture};
pub use weft_hbone::{LimitConfig, PoolConfig};
pub(crate) use weft_upstream::ip_from_bytes;
pub use xds::{AddressHandler, AuthorizationHandler};

/// Changes the process log filter at runtime (`/logging?level=...`); returns the new
/// filter text or why it was refused. The binary passes one built on a
/// `tracing_subscriber::reload` handle.
pub type LogControl = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Data path settings.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// This node's name: workloads whose `node` field equals it are local.
    pub node_name: String,
    /// Network of this node (`""` = default network).
    pub network: String,
    /// Port of the inbound HBONE listener on each local workload address, and the port
    /// outbound tunnels connect to (15008).
    pub hbone_port: u16,
    /// HBONE client pool limits.
    pub pool: PoolConfig,
    /// Limit for connecting to a workload (inbound) or a passthrough destination.
    pub connect_timeout: Duration,
    /// Close a relayed connection after this long without a byte either way.
    pub idle_timeout: Option<Duration>,
    /// How long a connection waits for its workload certificate before failing.
    pub cert_wait: Duration,
    /// How long a connection accepted before the first complete configuration waits for
    /// it before being refused.
    pub config_wait: Duration,
    /// How long an explicit-port client may take to send its whole request head (SOCKS5
    /// greeting and CONNECT, or HTTP CONNECT head) before it is closed.
    pub head_timeout: Duration,
    /// Limits on inbound HBONE connections and tunnels, per peer identity and in total
    /// (across every local workload's listener).
    pub inbound_limits: LimitConfig,
    /// Access-log line format.
    pub access_log: AccessLogFormat,
    /// DNS servers for endpoints known by host name only (a `resolution: DNS`
    /// ServiceEntry's hosts); empty: the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Dial loopback addresses a name resolves to (refused by default). For tests that run
    /// everything on loopback.
    pub allow_loopback_answers: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            network: String::new(),
            hbone_port: weft_hbone::DEFAULT_HBONE_PORT,
            pool: PoolConfig::default(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            cert_wait: Duration::from_secs(10),
            config_wait: Duration::from_secs(5),
            head_timeout: Duration::from_secs(10),
            inbound_limits: LimitConfig::default(),
            access_log: AccessLogFormat::Text,
            dns_servers: Vec::new(),
            allow_loopback_answers: false,
        }
    }
}

/// Counters of the data path beyond the Istio metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyCounters {
    /// Open connections closed because a policy update denies them.
    pub(crate) closed_by_policy: Counter,
    /// Malformed or refused requests on the explicit proxy port.
    pub(crate) explicit_refused: Counter,
    /// Explicit-port callers that are not workloads of this node.
    pub(crate) explicit_unknown_source: Counter,
    /// Explicit-port requests for the node's own services or the proxy's ports.
    pub(crate) explicit_forbidden_destination: Counter,
    /// Connections refused because the first configuration did not arrive in time.
    pub(crate) refused_not_ready: Counter,
}

impl ProxyCounters {
    fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "weft_connections_closed_by_policy",
                "Open connections closed because a policy update denies them",
                &self.closed_by_policy,
            ),
            (
                "weft_explicit_proxy_refused",
                "Explicit-proxy (SOCKS5 / HTTP CONNECT) requests refused before routing",
                &self.explicit_refused,
            ),
            (
                "weft_explicit_proxy_unknown_source",
                "Explicit-proxy requests refused: the caller is not a workload of this node",
                &self.explicit_unknown_source,
            ),
            (
                "weft_explicit_proxy_forbidden_destination",
                "Explicit-proxy requests refused: a proxy port or a host-local address",
                &self.explicit_forbidden_destination,
            ),
            (
                "weft_connections_refused_not_ready",
                "Connections refused because the first mesh configuration did not arrive in time",
                &self.refused_not_ready,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }
}

/// The shared context of a running node proxy. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    options: ProxyOptions,
    store: Arc<StateStore>,
    certs: Certs,
    /// Routing and connecting to endpoints (with the HBONE client pool).
    upstream: Upstream,
    metrics: Metrics,
    counters: ProxyCounters,
    /// The outbound traffic policy (ALLOW_ANY / REGISTRY_ONLY) and its refusals.
    egress: egress::EgressPolicy,
    registry: Arc<Mutex<Registry>>,
    /// Inbound HBONE connections and tunnels held open, checked against their limits.
    inbound_limits: Arc<weft_hbone::InboundLimits>,
    connections: Arc<connections::ConnectionTable>,
    listeners: WorkloadListeners,
    /// Per-pod socket creation (in-pod capture); empty in explicit mode.
    pod_networks: PodNetworks,
    /// Opened by the first complete configuration; connections wait on it.
    gate: admission::ConfigGate,
    /// Listening addresses of this proxy (never an explicit-port destination).
    own_listeners: admission::OwnListeners,
    /// Cancelled on shutdown: listeners stop accepting.
    stop_accepting: CancellationToken,
    /// Cancelled when the drain deadline passes: open connections are cut.
    kill: CancellationToken,
    tasks: TaskTracker,
    log_control: Option<LogControl>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node proxy context. Registers its metrics in a new registry; spawn nothing yet.
    #[must_use]
    pub fn new(
        options: ProxyOptions,
        store: Arc<StateStore>,
        certs: Certs,
        log_control: Option<LogControl>,
    ) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let counters = ProxyCounters::default();
        counters.register(&mut registry);
        let egress = egress::EgressPolicy::default();
        egress.register(&mut registry);
        admin::register_process_metrics(&mut registry);
        register_cert_metrics(&mut registry, certs.manager().clone());
        let names = NameResolver::new(options.dns_servers.clone(), options.allow_loopback_answers);
        let upstream = Upstream::new(options.pool.clone(), options.hbone_port, &options.network)
            .with_names(names);
        let inbound_limits = inbound_limits(options.inbound_limits, &mut registry);
        let inner = Arc::new_cyclic(|weak| NodeInner {
            listeners: WorkloadListeners::new(weak.clone()),
            upstream,
            options,
            store,
            certs,
            metrics,
            counters,
            egress,
            registry: Arc::new(Mutex::new(registry)),
            inbound_limits,
            connections: Arc::default(),
            pod_networks: PodNetworks::default(),
            gate: admission::ConfigGate::new(),
            own_listeners: admission::OwnListeners::default(),
            stop_accepting: CancellationToken::new(),
            kill: CancellationToken::new(),
            tasks: TaskTracker::new(),
            log_control,
        });
        Self { inner }
    }

    /// The state store the data path reads (and xDS or a local file writes).
    #[must_use]
    pub fn store(&self) -> &Arc<StateStore> {
        &self.inner.store
    }

    /// The settings.
    #[must_use]
    pub fn options(&self) -> &ProxyOptions {
        &self.inner.options
    }

    /// Certificates and trust.
    #[must_use]
    pub fn certs(&self) -> &Certs {
        &self.inner.certs
    }

    /// The metrics registry (for `/metrics`).
    #[must_use]
    pub fn registry(&self) -> &Arc<Mutex<Registry>> {
        &self.inner.registry
    }

    /// HBONE pool counters (handshakes, open connections, streams).
    #[must_use]
    pub fn pool_stats(&self) -> weft_hbone::PoolStatsSnapshot {
        self.inner.upstream.pool_stats()
    }

    /// The per-workload listener set (inbound HBONE on each local workload address).
    #[must_use]
    pub fn workload_listeners(&self) -> &WorkloadListeners {
        &self.inner.listeners
    }

    /// Open connections, for `/connections` and tests.
    #[must_use]
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.inner.connections.list()
    }

    /// Whether the proxy is ready: configuration loaded and a valid certificate for every
    /// local workload. The error says what is missing.
    ///
    /// # Errors
    /// A human-readable reason when not ready.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.config_loaded() {
            return Err("mesh configuration not loaded yet".into());
        }
        let state = self.inner.store.snapshot();
        let missing: Vec<String> = self
            .local_workloads(&state)
            .map(|w| w.identity())
            .filter(|id| self.inner.certs.current(id).is_none())
            .map(ToString::to_string)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no certificate yet for local identities: {}",
                missing.join(", ")
            ))
        }
    }

    /// Mesh-enrolled (HBONE) workloads scheduled on this node: the ones this proxy serves.
    pub fn local_workloads<'a>(
        &'a self,
        state: &'a MeshState,
    ) -> impl Iterator<Item = &'a Arc<MeshWorkload>> + 'a {
        state.workloads().filter(move |w| self.is_local(w))
    }

    /// Whether this proxy serves `workload`: scheduled on this node and enrolled in the mesh.
    /// A workload that does not speak HBONE is outside the mesh even on this node: it gets
    /// no certificate, no inbound listener, and cannot originate mTLS through this proxy.
    fn is_local(&self, workload: &MeshWorkload) -> bool {
        workload.proto().node == self.inner.options.node_name && workload.speaks_hbone()
    }

    /// Turns on the automatic per-workload HBONE listeners (explicit mode), taken from and
    /// offered to `handoff`; call it once ready (before a hand-off completes: that closes
    /// inherited sockets not taken).
    pub fn enable_workload_listeners(&self, handoff: Handoff) {
        self.inner.listeners.enable_automatic(handoff);
    }

    /// Starts managing the certificates of local workloads and forgets those of workloads
    /// that left, so that readiness and the first connection do not wait for a fetch.
    fn prefetch_local_certs(&self, state: &MeshState) {
        let wanted: Vec<SpiffeId> = self
            .local_workloads(state)
            .map(|w| w.identity().clone())
            .collect();
        self.inner.certs.manage_only(&wanted);
    }

    /// Spawns the task that follows state changes: prefetches certificates, reconciles
    /// the automatic per-workload HBONE listeners (once
    /// [`enable_workload_listeners`](Self::enable_workload_listeners)), and re-evaluates
    /// open inbound connections against the new policies.
    pub fn start_state_follower(&self) {
        let node = self.clone();
        let mut changes = self.inner.store.subscribe();
        let stop = self.inner.stop_accepting.clone();
        tokio::spawn(async move {
            loop {
                let state = node.inner.store.snapshot();
                node.prefetch_local_certs(&state);
                node.inner.listeners.reconcile();
                node.recheck_open_connections(&state);
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
        });
    }

    fn recheck_open_connections(&self, state: &MeshState) {
        for (info, decision) in self.inner.connections.recheck(state) {
            tracing::warn!(
                src = %info.src_addr,
                src_identity = info.src_identity.as_deref().unwrap_or("none"),
                dst = %info.dst_addr,
                %decision,
                "closing open connection: policy now denies it"
            );
            let namespace = info.dst_namespace.as_deref().unwrap_or("unknown");
            self.inner.metrics.record_decision(&decision, namespace);
            self.inner.counters.closed_by_policy.inc();
        }
    }

    /// Stops accepting on every listener, waits up to `deadline` for open connections to
    /// finish, then cuts the rest. Returns the number of connections that were cut.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner.stop_accepting.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(deadline, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let cut = self.inner.connections.list().len();
        tracing::warn!(
            open = cut,
            ?deadline,
            "drain deadline passed, closing open connections"
        );
        self.inner.kill.cancel();
        // Cancelled relays return promptly; bound the wait anyway.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.tasks.wait()).await;
        cut
    }

    /// Serves `future` as a tracked task (drained on shutdown).
    fn spawn_tracked<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(future);
    }

    /// Runs an accept loop on `listener` until shutdown, handing each connection to
    /// `handle` in its own tracked task.
    fn serve_accept_loop<H, Fut>(&self, listener: TcpListener, stop: CancellationToken, handle: H)
    where
        H: Fn(Node, tokio::net::TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let node = self.clone();
        self.spawn_tracked(async move {
            let what = match listener.local_addr() {
                Ok(local) => format!("proxy {local}"),
                Err(_) => "proxy".to_owned(),
            };
            weft_serve::accept_until(&listener, stop.cancelled(), &what, |stream, peer| {
                let _ = stream.set_nodelay(true);
                node.spawn_tracked(handle(node.clone(), stream, peer));
            })
            .await;
        });
    }
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
