//! The `weft gateway` process: builds the L7 engine in the gateway role with the identity
//! `spiffe://<td>/ns/<namespace>/sa/<service account>`, subscribes to every
//! `istio.workload.Address` and to its own `weft.l7.v1.Gateway` over delta xDS, binds the
//! configured listener ports on the listen address, and serves metrics, readiness (ready
//! once the first complete configuration is in and every listener port is bound) and the
//! admin config dump (private keys redacted). Shutdown stops accepting, lets connections
//! finish their requests in flight up to the drain timeout, then stops. Started with
//! [`take_over`], it takes the listeners of the gateway process offering them on a Unix
//! socket, tells it to drain once this one is ready, and offers its own there for the next
//! restart (`crate::restart`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_identity::{CertManagerConfig, CertificateProvider, TrustBundle};
use weft_node::process::XdsSource;
use weft_serve::handoff::OfferGuard;
use weft_serve::{AdminRequest, Page, Router};
use weft_xds::client::XdsClientHandle;

use super::Gateway;
use super::auto_cert::AutoCerts;
use super::cert_metrics;
use super::listeners::{self, BoundPorts};
use super::xds::GatewayHandler;
use crate::process::{StartError, engine, local_addr, metrics_router, xds_builder};
use crate::restart::Sockets;
use crate::{Role, Tracer, WaypointOptions};

/// Where the gateway listens.
#[derive(Debug, Clone)]
pub struct GatewayListen {
    /// Address the Gateway's listener ports are bound on.
    pub ip: IpAddr,
    /// Prometheus metrics and readiness (15020; 15021 serves readiness too when given).
    pub metrics: Option<SocketAddr>,
    /// Readiness only (15021, as Istio's gateways).
    pub readiness: Option<SocketAddr>,
    /// Admin pages (15000, localhost).
    pub admin: Option<SocketAddr>,
}

/// Everything the process needs.
pub struct GatewayProcess {
    /// Identity settings (namespace, name, service account, trust domain, network); the
    /// role is set to gateway.
    pub options: WaypointOptions,
    /// Listen addresses.
    pub listen: GatewayListen,
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

/// A running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    /// The shared context.
    pub gateway: Gateway,
    /// Bound metrics address.
    pub metrics: Option<SocketAddr>,
    /// Bound readiness address.
    pub readiness: Option<SocketAddr>,
    /// Bound admin address.
    pub admin: Option<SocketAddr>,
    /// The xDS client handle.
    pub xds: XdsClientHandle,
    ports: watch::Receiver<BoundPorts>,
    stop: CancellationToken,
    listeners: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The metrics, readiness and admin pages.
    pages: Vec<tokio::task::JoinHandle<()>>,
    /// Offers the listeners to a successor once ready (with a hand-off socket).
    offering: Option<tokio::task::JoinHandle<()>>,
    /// Cancelled when a new process took the listeners over.
    handed_off: CancellationToken,
    /// The metrics, readiness and admin listeners stay offered while running.
    _offers: Vec<OfferGuard>,
}

impl RunningGateway {
    /// The listener ports bound now.
    #[must_use]
    pub fn ports(&self) -> BoundPorts {
        self.ports.borrow().clone()
    }

    /// Waits until the bound ports satisfy `condition` (e.g. a port is bound or closed).
    pub async fn wait_ports(&self, condition: impl Fn(&BoundPorts) -> bool) -> BoundPorts {
        let mut ports = self.ports.clone();
        match ports.wait_for(|p| condition(p)).await {
            Ok(found) => found.clone(),
            Err(_) => BoundPorts::new(),
        }
    }

    /// Whether the gateway is ready (configured, every listener port bound).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        ready(&self.gateway, &self.ports)
    }

    /// Completes when a new process has taken the listeners over and is ready (never
    /// without a hand-off socket): time to [`shutdown`](Self::shutdown).
    pub async fn handed_off(&self) {
        self.handed_off.cancelled().await;
    }

    /// Stops accepting (the listener ports close, unless a successor holds them), lets open
    /// connections finish their requests in flight for up to `drain`, then stops. A process
    /// that is shutting down never tells a predecessor it is ready; a replaced one stops
    /// answering its pages at once (the successor answers probes and scrapes on the same
    /// sockets; this one would say "not ready" while it drains).
    pub async fn shutdown(self, drain: Duration) {
        crate::restart::stop_offering_and_pages(
            self.offering.as_ref(),
            &self.pages,
            &self.handed_off,
        );
        self.stop.cancel();
        // The listener ports are closed once this returns.
        let _ = self.listeners.await;
        self.gateway.drain_token().cancel();
        let connections = self.gateway.connections();
        connections.close();
        if tokio::time::timeout(drain, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(?drain, "drain timeout: closing the connections still open");
        }
        for task in self.background.iter().chain(&self.pages) {
            task.abort();
        }
    }
}

/// Ready once the xDS client is synced, this gateway's own Gateway resource has been applied
/// (an xDS response for another type, or none yet for ours, is not enough: a gateway without
/// its resource serves nothing), and every listener port is bound.
fn ready(gateway: &Gateway, ports: &watch::Receiver<BoundPorts>) -> bool {
    let config = gateway.config();
    let bound = ports.borrow();
    gateway.engine().is_loaded()
        && !config.key.is_empty()
        && config.ports.keys().all(|port| bound.contains_key(port))
}

/// Starts the gateway.
///
/// # Errors
/// A metrics/admin address that cannot be bound, or an invalid identity.
pub async fn run(config: GatewayProcess) -> Result<RunningGateway, StartError> {
    start(config, None).await
}

/// Starts the gateway with the listeners of the one offering them on `handoff` (binding
/// anew when none does), and offers its own there once ready.
///
/// # Errors
/// As [`run`], and a hand-off that failed half-way.
pub async fn take_over(
    config: GatewayProcess,
    handoff: &Path,
) -> Result<RunningGateway, StartError> {
    start(config, Some(handoff)).await
}

async fn start(
    config: GatewayProcess,
    handoff: Option<&Path>,
) -> Result<RunningGateway, StartError> {
    let sockets = Sockets::take_over(handoff)
        .await
        .map_err(StartError::Handoff)?;
    let options = WaypointOptions {
        role: Role::Gateway,
        ..config.options
    };
    let (ca, certs) = (Arc::clone(&config.ca), config.certs.clone());
    let engine = engine(
        options,
        config.ca,
        config.certs,
        config.trust,
        config.tracer,
    )?;
    let gateway = Gateway::new(engine.clone());
    let name = engine.options().resource_name();
    let auto = Arc::new(AutoCerts::new(ca, engine.identity().clone(), certs));
    cert_metrics::register(engine.registry(), gateway.clone(), Arc::clone(&auto));
    let handler = GatewayHandler {
        gateway: gateway.clone(),
        name: name.clone(),
        auto,
    };
    let (client, handle) = xds_builder(&engine, "weft-gateway", &config.xds, config.listen.metrics)
        .explicit(weft_proto::GATEWAY_TYPE_URL, [name], handler)
        .build(config.xds.channel);
    let stop = CancellationToken::new();
    let (bound, ports) = watch::channel(BoundPorts::new());
    let background = vec![
        tokio::spawn(client.run()),
        tokio::spawn(mark_loaded(gateway.clone(), handle.clone())),
    ];
    let mut pages = Vec::new();
    let listeners = tokio::spawn(listeners::follow(
        gateway.clone(),
        config.listen.ip,
        sockets.clone(),
        bound,
        stop.clone(),
    ));
    let is_ready = {
        let (gateway, ports) = (gateway.clone(), ports.clone());
        move || ready(&gateway, &ports)
    };
    let mut offers = Vec::new();
    let serve = |what, addr: Option<SocketAddr>, router: Router| {
        let sockets = sockets.clone();
        async move {
            let Some(addr) = addr else {
                return Ok::<_, StartError>((None, None));
            };
            let (listener, offer) = sockets
                .listen(what, addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })?;
            let local = local_addr(&listener, addr);
            let task = tokio::spawn(weft_serve::serve(listener, router));
            Ok((Some(local), Some((task, offer))))
        }
    };
    let (metrics, task) = serve(
        "metrics",
        config.listen.metrics,
        metrics_router(&engine, is_ready.clone()),
    )
    .await?;
    let (task, offer): (Vec<_>, Vec<_>) = task.into_iter().unzip();
    pages.extend(task);
    offers.extend(offer);
    let (readiness, task) = serve(
        "readiness",
        config.listen.readiness,
        metrics_router(&engine, is_ready),
    )
    .await?;
    let (task, offer): (Vec<_>, Vec<_>) = task.into_iter().unzip();
    pages.extend(task);
    offers.extend(offer);
    let (admin, task) = serve("admin", config.listen.admin, admin_router(&gateway)).await?;
    let (task, offer): (Vec<_>, Vec<_>) = task.into_iter().unzip();
    pages.extend(task);
    offers.extend(offer);
    let handed_off = CancellationToken::new();
    let offering = if let Some(path) = handoff {
        let ready = until_ready(gateway.clone(), ports.clone());
        let offering = sockets.offer_when_ready(path.to_owned(), ready, handed_off.clone());
        Some(tokio::spawn(offering))
    } else {
        None
    };
    Ok(RunningGateway {
        gateway,
        metrics,
        readiness,
        admin,
        xds: handle,
        ports,
        stop,
        listeners,
        background,
        pages,
        offering,
        handed_off,
        _offers: offers,
    })
}

/// Completes once the gateway is ready (configured, every listener port bound).
async fn until_ready(gateway: Gateway, mut ports: watch::Receiver<BoundPorts>) {
    gateway.engine().loaded().await;
    let mut config = gateway.watch_config();
    while !ready(&gateway, &ports) {
        tokio::select! {
            changed = ports.changed() => if changed.is_err() { return std::future::pending().await },
            changed = config.changed() => if changed.is_err() { return std::future::pending().await },
        }
    }
}

async fn mark_loaded(gateway: Gateway, handle: XdsClientHandle) {
    handle.ready().await;
    gateway.engine().set_loaded();
    tracing::info!(
        gateway = %gateway.engine().options().resource_name(),
        "received the first configuration from the control plane"
    );
}

fn admin_router(gateway: &Gateway) -> Router {
    let gateway = gateway.clone();
    Router::new().page("/config_dump", move |_: AdminRequest| {
        let config = gateway.config();
        match weft_proto::to_json("weft.l7.v1.Gateway", &config.redacted()) {
            Ok(json) => Page::json(&json),
            Err(error) => Page::with_status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render the configuration: {error}\n"),
            ),
        }
    })
}
