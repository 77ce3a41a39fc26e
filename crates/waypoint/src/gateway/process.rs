//! The `weft gateway` process: builds the L7 engine in the gateway role with the identity
//! `spiffe://<td>/ns/<namespace>/sa/<service account>`, subscribes to every
//! `istio.workload.Address` and to its own `weft.l7.v1.Gateway` over delta xDS, binds the
//! configured listener ports on the listen address, and serves metrics, readiness (ready
//! once the first complete configuration is in and every listener port is bound) and the
//! admin config dump (private keys redacted). Shutdown stops accepting, lets connections
//! finish their requests in flight up to the drain timeout, then stops.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_identity::{CertManagerConfig, CertificateProvider, TrustBundle};
use weft_node::process::XdsSource;
use weft_serve::{AdminRequest, Page, Router};
use weft_xds::client::XdsClientHandle;

use super::Gateway;
use super::auto_cert::AutoCerts;
use super::listeners::{self, BoundPorts};
use super::xds::GatewayHandler;
use crate::process::{StartError, bind, engine, local_addr, metrics_router, xds_builder};
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

    /// Stops accepting (the listener ports close), lets open connections finish their
    /// requests in flight for up to `drain`, then stops.
    pub async fn shutdown(self, drain: Duration) {
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
        for task in self.background {
            task.abort();
        }
    }
}

fn ready(gateway: &Gateway, ports: &watch::Receiver<BoundPorts>) -> bool {
    let config = gateway.config();
    let bound = ports.borrow();
    gateway.engine().is_loaded() && config.ports.keys().all(|port| bound.contains_key(port))
}

/// Starts the gateway.
///
/// # Errors
/// A metrics/admin address that cannot be bound, or an invalid identity.
pub async fn run(config: GatewayProcess) -> Result<RunningGateway, StartError> {
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
    let handler = GatewayHandler {
        gateway: gateway.clone(),
        name: name.clone(),
        auto: Arc::new(AutoCerts::new(ca, engine.identity().clone(), certs)),
    };
    let (client, handle) = xds_builder(&engine, "weft-gateway", &config.xds)
        .explicit(weft_proto::GATEWAY_TYPE_URL, [name], handler)
        .build(config.xds.channel);
    let stop = CancellationToken::new();
    let (bound, ports) = watch::channel(BoundPorts::new());
    let mut background = vec![
        tokio::spawn(client.run()),
        tokio::spawn(mark_loaded(gateway.clone(), handle.clone())),
    ];
    let listeners = tokio::spawn(listeners::follow(
        gateway.clone(),
        config.listen.ip,
        bound,
        stop.clone(),
    ));
    let is_ready = {
        let (gateway, ports) = (gateway.clone(), ports.clone());
        move || ready(&gateway, &ports)
    };
    let serve = |what, addr: Option<SocketAddr>, router: Router| async move {
        let Some(addr) = addr else {
            return Ok::<_, StartError>((None, None));
        };
        let listener = bind(what, addr).await?;
        let local = local_addr(&listener, addr);
        Ok((
            Some(local),
            Some(tokio::spawn(weft_serve::serve(listener, router))),
        ))
    };
    let (metrics, task) = serve(
        "metrics",
        config.listen.metrics,
        metrics_router(&engine, is_ready.clone()),
    )
    .await?;
    background.extend(task);
    let (readiness, task) = serve(
        "readiness",
        config.listen.readiness,
        metrics_router(&engine, is_ready),
    )
    .await?;
    background.extend(task);
    let (admin, task) = serve("admin", config.listen.admin, admin_router(&gateway)).await?;
    background.extend(task);
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
    })
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
