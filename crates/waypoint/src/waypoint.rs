//! [`Waypoint`]: the shared context of the L7 engine and of every connection and request —
//! the mesh state (workloads and services from `istio.workload.Address`), the compiled
//! configuration, the proxy's own certificate, the upstream connector and HTTP client pool,
//! outlier detection, retry budgets, metrics and the tracing hook. The same context serves
//! both [`Role`]s: a waypoint (HBONE in) and an ingress/egress gateway (`weft gateway`,
//! whose listeners compile to the same configuration type, see `crate::gateway`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use weft_hbone::{LimitConfig, PoolConfig};
use weft_identity::SpiffeId;
use weft_node::proxy::Certs;
use weft_node::state::{MeshState, StateStore};
use weft_upstream::{ClientError, NameResolver, Upstream};

use crate::budget::RetryBudgets;
use crate::config::WaypointConfig;
use crate::http::client::ClientPool;
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::telemetry::Metrics;

/// Which role the L7 engine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// A waypoint: HBONE tunnels in, metrics with `reporter="waypoint"`.
    #[default]
    Waypoint,
    /// An ingress/egress gateway: plain client connections in, metrics with
    /// `reporter="source"` (the gateway is the mesh client of its backends).
    Gateway,
}

impl Role {
    /// The `reporter` label and access-log field of this role.
    #[must_use]
    pub fn reporter(self) -> &'static str {
        match self {
            Self::Waypoint => "waypoint",
            Self::Gateway => "source",
        }
    }
}

/// Settings of a waypoint (or gateway).
#[derive(Debug, Clone)]
pub struct WaypointOptions {
    /// Namespace of the Gateway.
    pub namespace: String,
    /// Name of the Gateway (a waypoint's is also its service account).
    pub name: String,
    /// Service account of the identity; empty: `name` (a waypoint's). A gateway of class
    /// `<class>` runs as `<name>-<class>`.
    pub service_account: String,
    /// Waypoint or gateway.
    pub role: Role,
    /// Access-log line format (text: structured fields; JSON: one object per line).
    pub access_log: weft_node::telemetry::AccessLogFormat,
    /// Trust domain of its identity.
    pub trust_domain: String,
    /// Network of the waypoint (`""`: the default network).
    pub network: String,
    /// Port of the endpoints' HBONE listeners (15008).
    pub hbone_port: u16,
    /// HBONE client pool limits.
    pub pool: PoolConfig,
    /// Limits on the connections and tunnels the HBONE listener holds, per caller identity
    /// and in total (a waypoint's; a gateway has no HBONE listener).
    pub inbound_limits: LimitConfig,
    /// How long a tunnel opened before the first configuration waits for it (then 503).
    pub config_wait: Duration,
    /// How long a connection waits for the waypoint's certificate.
    pub cert_wait: Duration,
    /// Outlier detection tuning.
    pub outlier: OutlierConfig,
    /// Mirrored request copies in flight at most; a copy beyond that is not sent (and
    /// counted), so a slow mirror backend cannot pile up tasks and connections.
    pub max_mirrors_in_flight: usize,
    /// DNS servers for endpoints known by host name only; empty: the system's
    /// (`/etc/resolv.conf`).
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Dial loopback addresses a name resolves to (refused by default: a DNS record must
    /// not point the proxy at its own ports). For tests that run everything on loopback.
    pub allow_loopback_answers: bool,
    /// How long an HTTP/2 connection from a client may go without a request in flight (a
    /// request is in flight until its answer's body ends) before it is closed with GOAWAY;
    /// zero: never. HTTP/1.1 connections are closed sooner, when no request head arrives
    /// within 30 s.
    pub http_idle_timeout: Duration,
}

/// [`WaypointOptions::max_mirrors_in_flight`] by default.
pub const DEFAULT_MIRRORS_IN_FLIGHT: usize = 1024;

/// [`WaypointOptions::http_idle_timeout`] by default: one hour, as Envoy's HTTP idle
/// timeout (Istio's waypoints and gateways).
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for WaypointOptions {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            name: "waypoint".into(),
            service_account: String::new(),
            role: Role::Waypoint,
            access_log: weft_node::telemetry::AccessLogFormat::Text,
            trust_domain: "cluster.local".into(),
            network: String::new(),
            hbone_port: weft_hbone::DEFAULT_HBONE_PORT,
            pool: PoolConfig::default(),
            inbound_limits: LimitConfig::default(),
            config_wait: Duration::from_secs(5),
            cert_wait: Duration::from_secs(10),
            outlier: OutlierConfig::default(),
            max_mirrors_in_flight: DEFAULT_MIRRORS_IN_FLIGHT,
            dns_servers: Vec::new(),
            allow_loopback_answers: false,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
        }
    }
}

impl WaypointOptions {
    /// `<namespace>/<name>`: the name of the Waypoint resource.
    #[must_use]
    pub fn resource_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The service account of the identity (`service_account`, else `name`).
    #[must_use]
    pub fn service_account(&self) -> &str {
        if self.service_account.is_empty() {
            &self.name
        } else {
            &self.service_account
        }
    }
}

/// A span of the tracing integration, finished when the response ends.
pub trait Span: Send {
    /// Ends the span with the request's access-log entry (status, flags, route, upstream).
    fn finish(self: Box<Self>, entry: &crate::telemetry::AccessEntry);
}

/// The tracing hook: called for every request once `x-request-id` is set; it may read and
/// rewrite the trace headers (W3C / B3) before the request is forwarded.
pub trait Tracer: Send + Sync + 'static {
    /// Starts the request's span.
    fn start(&self, request: &mut http::request::Parts) -> Box<dyn Span>;

    /// Sends what is still queued; called once when the process stops (blocking).
    fn shutdown(&self) {}

    /// The last finished spans it keeps for `/debug/traces`, oldest first (`None`: it
    /// keeps none).
    fn recent_spans(&self) -> Option<Vec<crate::recent_spans::RecentSpan>> {
        None
    }
}

/// The shared context. Cheap to clone.
#[derive(Clone)]
pub struct Waypoint(Arc<Inner>);

pub(crate) struct Inner {
    pub options: WaypointOptions,
    pub identity: SpiffeId,
    pub store: Arc<StateStore>,
    pub config: ArcSwap<WaypointConfig>,
    pub loaded: watch::Sender<bool>,
    pub certs: Certs,
    pub upstream: Upstream,
    pub clients: ClientPool,
    pub outlier: OutlierDetector,
    pub budgets: RetryBudgets,
    /// Permits for mirrored copies in flight ([`WaypointOptions::max_mirrors_in_flight`]).
    pub mirrors: Arc<tokio::sync::Semaphore>,
    pub metrics: Metrics,
    pub registry: Mutex<Registry>,
    pub tracer: Option<Arc<dyn Tracer>>,
    /// Cancelled when the waypoint drains: HTTP served inside tunnels finishes its requests
    /// in flight and closes (`crate::http::serve`).
    pub drain: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Waypoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waypoint")
            .field("identity", &self.0.identity)
            .field("config", &self.0.config.load().key)
            .finish_non_exhaustive()
    }
}

impl Waypoint {
    /// A waypoint with identity `spiffe://<td>/ns/<namespace>/sa/<service account>`.
    ///
    /// # Errors
    /// When the namespace, name or trust domain do not form a SPIFFE id.
    pub fn new(
        options: WaypointOptions,
        store: Arc<StateStore>,
        certs: Certs,
        tracer: Option<Arc<dyn Tracer>>,
    ) -> Result<Self, weft_identity::SpiffeIdError> {
        let identity = SpiffeId::new(
            &options.trust_domain,
            &options.namespace,
            options.service_account(),
        )?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        weft_node::proxy::register_cert_metrics(&mut registry, certs.manager().clone());
        let names = NameResolver::new(options.dns_servers.clone(), options.allow_loopback_answers);
        let upstream = Upstream::new(options.pool.clone(), options.hbone_port, &*options.network)
            .with_names(names);
        Ok(Self(Arc::new(Inner {
            outlier: OutlierDetector::new(options.outlier),
            mirrors: Arc::new(tokio::sync::Semaphore::new(
                (options.max_mirrors_in_flight).min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            options,
            identity,
            store,
            config: ArcSwap::from_pointee(WaypointConfig::default()),
            loaded: watch::Sender::new(false),
            certs,
            upstream,
            clients: ClientPool::default(),
            budgets: RetryBudgets::default(),
            metrics,
            registry: Mutex::new(registry),
            tracer,
            drain: tokio_util::sync::CancellationToken::new(),
        })))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// The waypoint's SPIFFE identity.
    #[must_use]
    pub fn identity(&self) -> &SpiffeId {
        &self.0.identity
    }

    /// The mesh state store (fed by the Address handler).
    #[must_use]
    pub fn store(&self) -> &Arc<StateStore> {
        &self.0.store
    }

    /// The current mesh snapshot.
    #[must_use]
    pub fn state(&self) -> Arc<MeshState> {
        self.0.store.snapshot()
    }

    /// The current configuration.
    #[must_use]
    pub fn config(&self) -> Arc<WaypointConfig> {
        self.0.config.load_full()
    }

    /// Installs a new configuration.
    pub fn set_config(&self, config: WaypointConfig) {
        self.0.config.store(Arc::new(config));
    }

    /// Marks the first complete configuration as arrived: tunnels are served from now on.
    pub fn set_loaded(&self) {
        self.0.loaded.send_replace(true);
    }

    /// Whether the first complete configuration arrived.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        *self.0.loaded.borrow()
    }

    /// Waits for the first complete configuration (forever if it never comes).
    pub(crate) async fn loaded(&self) {
        let mut loaded = self.0.loaded.subscribe();
        let _ = loaded.wait_for(|l| *l).await;
    }

    /// Waits up to `limit` for the first configuration; false when it did not come.
    pub(crate) async fn wait_loaded(&self, limit: Duration) -> bool {
        let mut loaded = self.0.loaded.subscribe();
        tokio::time::timeout(limit, loaded.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The Prometheus registry.
    #[must_use]
    pub fn registry(&self) -> &Mutex<Registry> {
        &self.0.registry
    }

    /// The settings.
    #[must_use]
    pub fn options(&self) -> &WaypointOptions {
        &self.0.options
    }

    /// The HBONE client as the waypoint itself.
    pub(crate) fn client(&self) -> WaypointClient<'_> {
        WaypointClient(self)
    }
}

/// The waypoint as an upstream client: its own identity and certificate.
pub(crate) struct WaypointClient<'a>(&'a Waypoint);

impl weft_upstream::Client for WaypointClient<'_> {
    fn identity(&self) -> Option<&SpiffeId> {
        Some(&self.0.0.identity)
    }

    fn source_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }

    async fn tls(&self, peer: &SpiffeId) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let inner = &self.0.0;
        inner
            .certs
            .client_config(&inner.identity, peer, inner.options.cert_wait)
            .await
            .map_err(|e| Box::new(e) as ClientError)
    }

    fn request(&self, authority: SocketAddr) -> weft_hbone::ConnectRequest {
        weft_hbone::ConnectRequest::new(authority)
    }
}
