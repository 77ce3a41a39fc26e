//! The `weft waypoint run` process: builds a [`Waypoint`], subscribes to its configuration
//! over delta xDS, fetches and renews its certificate
//! (`spiffe://<td>/ns/<namespace>/sa/<name>`), serves HBONE (within the inbound limits of
//! its options, as a node proxy's listener), metrics and admin pages until shut down. The
//! binary parses flags into a [`WaypointProcess`]; tests call [`run`] with an in-process
//! CA and xDS server. [`take_over`] starts with the listeners of the process
//! offering them on a hand-off socket (`crate::restart`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_hbone::{HboneServer, ServerOptions};
use weft_identity::{CertManager, CertManagerConfig, CertificateProvider, TrustBundle};
use weft_node::process::XdsSource;
use weft_node::proxy::{AddressHandler, Certs, inbound_limits};
use weft_node::state::StateStore;
use weft_serve::handoff::OfferGuard;
use weft_serve::{AdminRequest, Page, Router};
use weft_xds::client::{XdsClient, XdsClientBuilder, XdsClientHandle};

use crate::restart::Sockets;
use crate::tunnel::TunnelHandler;
use crate::xds::WaypointHandler;
use crate::{Tracer, Waypoint, WaypointOptions};

/// Addresses to listen on; port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct ListenAddrs {
    /// HBONE (15008).
    pub hbone: SocketAddr,
    /// Prometheus metrics and readiness (15020).
    pub metrics: Option<SocketAddr>,
    /// Admin pages (15000, localhost).
    pub admin: Option<SocketAddr>,
}

/// Addresses actually bound.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    /// HBONE.
    pub hbone: SocketAddr,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
}

/// Everything the process needs.
pub struct WaypointProcess {
    /// Identity and data path settings.
    pub options: WaypointOptions,
    /// Listener addresses.
    pub listen: ListenAddrs,
    /// The control plane's xDS.
    pub xds: XdsSource,
    /// Where the certificate comes from.
    pub ca: Arc<dyn CertificateProvider>,
    /// Roots peers' certificates must chain to.
    pub trust: TrustBundle,
    /// Certificate lifetime and retry tuning.
    pub certs: CertManagerConfig,
    /// The tracing hook, if tracing is on.
    pub tracer: Option<Arc<dyn Tracer>>,
}

/// Why the waypoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Listener role.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listeners of the running process could not be taken over.
    #[error("listener hand-off: {0}")]
    Handoff(std::io::Error),
    /// Namespace, name and trust domain do not make a SPIFFE id.
    #[error("waypoint identity: {0}")]
    Identity(#[from] weft_identity::SpiffeIdError),
}

/// A running waypoint.
#[derive(Debug)]
pub struct RunningWaypoint {
    /// The shared context.
    pub waypoint: Waypoint,
    /// Bound addresses.
    pub addrs: BoundAddrs,
    /// The xDS client handle.
    pub xds: XdsClientHandle,
    shutdown: CancellationToken,
    hbone: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The metrics and admin pages.
    pages: Vec<tokio::task::JoinHandle<()>>,
    /// Offers the listeners to a successor once ready (with a hand-off socket).
    offering: Option<tokio::task::JoinHandle<()>>,
    /// Cancelled when a new process took the listeners over.
    handed_off: CancellationToken,
    /// The listeners stay offered while running.
    _offers: Vec<OfferGuard>,
}

impl RunningWaypoint {
    /// Completes when a new process has taken the listeners over and is ready (never
    /// without a hand-off socket): time to [`shutdown`](Self::shutdown).
    pub async fn handed_off(&self) {
        self.handed_off.cancelled().await;
    }

    /// Stops accepting tunnels, lets open ones finish for up to `drain` (HTTP inside them
    /// closes after its requests in flight), then stops. A process that is shutting down
    /// never tells a predecessor it is ready; a replaced one stops answering its pages at
    /// once (the successor answers on the same sockets).
    pub async fn shutdown(self, drain: Duration) {
        crate::restart::stop_offering_and_pages(
            self.offering.as_ref(),
            &self.pages,
            &self.handed_off,
        );
        self.shutdown.cancel();
        self.waypoint.inner().drain.cancel();
        let mut hbone = self.hbone;
        if tokio::time::timeout(drain, &mut hbone).await.is_err() {
            hbone.abort();
        }
        for task in self.background.iter().chain(&self.pages) {
            task.abort();
        }
    }
}

/// Starts the waypoint.
///
/// # Errors
/// A listener that cannot be bound, or an invalid identity.
pub async fn run(config: WaypointProcess) -> Result<RunningWaypoint, StartError> {
    start(config, None).await
}

/// Starts the waypoint with the listeners of the one offering them on `handoff` (binding
/// anew when none does), and offers its own there once ready.
///
/// # Errors
/// As [`run`], and a hand-off that failed half-way.
pub async fn take_over(
    config: WaypointProcess,
    handoff: &Path,
) -> Result<RunningWaypoint, StartError> {
    start(config, Some(handoff)).await
}

async fn start(
    config: WaypointProcess,
    handoff: Option<&Path>,
) -> Result<RunningWaypoint, StartError> {
    let sockets = Sockets::take_over(handoff)
        .await
        .map_err(StartError::Handoff)?;
    let listen = |what: &'static str, addr: SocketAddr| {
        let sockets = sockets.clone();
        async move {
            sockets
                .listen(what, addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        }
    };
    let mut offers = Vec::new();
    let waypoint = engine(
        config.options,
        config.ca,
        config.certs,
        config.trust,
        config.tracer,
    )?;
    let (client, handle) = xds_client(&waypoint, config.xds, config.listen.metrics);
    let mut background = vec![tokio::spawn(client.run())];
    let mut pages = Vec::new();
    background.push(tokio::spawn(mark_loaded(waypoint.clone(), handle.clone())));
    let (listener, offer) = listen("hbone", config.listen.hbone).await?;
    offers.push(offer);
    let hbone_addr = local_addr(&listener, config.listen.hbone);
    let shutdown = CancellationToken::new();
    let hbone_options = hbone_server_options(&waypoint);
    let accepting = CancellationToken::new();
    let hbone = tokio::spawn(serve_hbone(
        waypoint.clone(),
        listener,
        hbone_options,
        shutdown.clone(),
        accepting.clone(),
    ));
    let mut addrs = BoundAddrs {
        hbone: hbone_addr,
        metrics: None,
        admin: None,
    };
    if let Some(addr) = config.listen.metrics {
        let (listener, offer) = listen("metrics", addr).await?;
        offers.push(offer);
        addrs.metrics = Some(local_addr(&listener, addr));
        let ready = {
            let waypoint = waypoint.clone();
            move || waypoint.is_loaded()
        };
        pages.push(tokio::spawn(weft_serve::serve(
            listener,
            metrics_router(&waypoint, ready),
        )));
    }
    if let Some(addr) = config.listen.admin {
        let (listener, offer) = listen("admin", addr).await?;
        offers.push(offer);
        addrs.admin = Some(local_addr(&listener, addr));
        pages.push(tokio::spawn(weft_serve::serve(
            listener,
            admin_router(&waypoint),
        )));
    }
    let handed_off = CancellationToken::new();
    let offering = handoff.map(|path| {
        // Ready: configured, and the HBONE listener accepts (it has its certificate).
        let ready = {
            let waypoint = waypoint.clone();
            async move {
                waypoint.loaded().await;
                accepting.cancelled().await;
            }
        };
        let offering = sockets.offer_when_ready(path.to_owned(), ready, handed_off.clone());
        tokio::spawn(offering)
    });
    Ok(RunningWaypoint {
        waypoint,
        addrs,
        xds: handle,
        shutdown,
        hbone,
        background,
        pages,
        offering,
        handed_off,
        _offers: offers,
    })
}

/// The shared L7 context with its certificate being fetched (renewed at half-life).
///
/// # Errors
/// An invalid identity.
pub(crate) fn engine(
    options: WaypointOptions,
    ca: Arc<dyn CertificateProvider>,
    certs: CertManagerConfig,
    trust: TrustBundle,
    tracer: Option<Arc<dyn Tracer>>,
) -> Result<Waypoint, StartError> {
    let store = Arc::new(StateStore::new());
    let certs = Certs::new(CertManager::new(ca, certs), trust);
    let waypoint = Waypoint::new(options, store, certs, tracer)?;
    drop(
        waypoint
            .inner()
            .certs
            .manager()
            .subscribe(waypoint.identity()),
    );
    Ok(waypoint)
}

pub(crate) fn local_addr(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

async fn mark_loaded(waypoint: Waypoint, handle: XdsClientHandle) {
    handle.ready().await;
    waypoint.set_loaded();
    tracing::info!(
        waypoint = %waypoint.options().resource_name(),
        "received the first configuration from the control plane"
    );
}

fn xds_client(
    waypoint: &Waypoint,
    source: XdsSource,
    metrics: Option<SocketAddr>,
) -> (XdsClient, XdsClientHandle) {
    let name = waypoint.options().resource_name();
    let handler = WaypointHandler {
        waypoint: waypoint.clone(),
        name: name.clone(),
    };
    xds_builder(waypoint, "weft-waypoint", &source, metrics)
        .explicit(weft_proto::WAYPOINT_TYPE_URL, [name], handler)
        .build(source.channel)
}

/// The xDS client of an L7 proxy (`kind`: the node id's first part): every Address into
/// its state store, its token and cluster id, and where its `metrics` page is (node
/// metadata, read by `weft dashboard`); the caller adds its own resource.
pub(crate) fn xds_builder(
    waypoint: &Waypoint,
    kind: &str,
    source: &XdsSource,
    metrics: Option<SocketAddr>,
) -> XdsClientBuilder {
    let options = waypoint.options();
    let metadata = weft_xds::proxy_metadata(
        &[("NAME", &options.name), ("NAMESPACE", &options.namespace)],
        metrics,
    );
    let node = weft_proto::discovery::Node {
        id: format!("{kind}~{}~{}", options.namespace, options.name),
        cluster: source.cluster_id.clone().unwrap_or_default(),
        metadata: Some(metadata),
        ..Default::default()
    };
    let mut builder = XdsClient::builder(node).wildcard(
        weft_proto::ADDRESS_TYPE_URL,
        AddressHandler(Arc::clone(waypoint.store())),
    );
    if let Some(token) = source.token.clone() {
        builder = builder.bearer_token_source(token);
    }
    if let Some(cluster) = source.cluster_id.clone() {
        builder = builder.metadata("clusterid", cluster);
    }
    builder
}

/// The HBONE listener's settings: the inbound limits of the waypoint's options, their
/// refusals counted on its metrics page (`weft_hbone_inbound_refused_total`).
fn hbone_server_options(waypoint: &Waypoint) -> ServerOptions {
    let mut registry = waypoint
        .registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let limits = inbound_limits(waypoint.options().inbound_limits, &mut registry);
    ServerOptions {
        limits: Some(limits),
        ..ServerOptions::default()
    }
}

/// Waits for the certificate (retrying), then serves HBONE until `shutdown`; `accepting`
/// is cancelled once it accepts.
async fn serve_hbone(
    waypoint: Waypoint,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: CancellationToken,
    accepting: CancellationToken,
) {
    let inner = waypoint.inner();
    let tls = loop {
        match inner
            .certs
            .server_config(&inner.identity, inner.options.cert_wait)
            .await
        {
            Ok(tls) => break tls,
            Err(error) => {
                tracing::warn!(%error, "no certificate for the HBONE listener yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    let server = HboneServer::new(tls, TunnelHandler(waypoint.clone()), options);
    accepting.cancel();
    server.serve(listener, shutdown).await;
}

/// `/metrics` (and `/stats/prometheus`), `/healthz/ready` (200 while `ready()`) and
/// `/debug/traces`.
pub(crate) fn metrics_router(
    waypoint: &Waypoint,
    ready: impl Fn() -> bool + Send + Sync + 'static,
) -> Router {
    let page = {
        let waypoint = waypoint.clone();
        move |_: AdminRequest| Page::metrics(waypoint.registry())
    };
    let ready = {
        move |_: AdminRequest| {
            if ready() {
                Page::text("ready\n")
            } else {
                Page::with_status(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the first configuration\n",
                )
            }
        }
    };
    let traces = {
        let waypoint = waypoint.clone();
        move |_: AdminRequest| recent_traces(&waypoint)
    };
    Router::new()
        .page("/metrics", page.clone())
        .page("/stats/prometheus", page)
        .page("/healthz/ready", ready)
        .page("/debug/traces", traces)
}

/// `/debug/traces`: `{"spans": [...]}`, the last sampled spans, oldest first; 404 when the
/// tracer keeps none.
fn recent_traces(waypoint: &Waypoint) -> Page {
    match waypoint
        .inner()
        .tracer
        .as_ref()
        .and_then(|t| t.recent_spans())
    {
        Some(spans) => Page::json(&serde_json::json!({ "spans": spans })),
        None => Page::with_status(
            http::StatusCode::NOT_FOUND,
            "no spans kept: tracing is off (--recent-spans)\n",
        ),
    }
}

fn admin_router(waypoint: &Waypoint) -> Router {
    let waypoint = waypoint.clone();
    Router::new().page("/config_dump", move |_: AdminRequest| {
        let config = waypoint.config();
        match weft_proto::to_json("weft.l7.v1.Waypoint", &config.resource) {
            Ok(json) => Page::json(&json),
            Err(error) => Page::with_status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render the configuration: {error}\n"),
            ),
        }
    })
}
