//! The ingress/egress gateway (`weft gateway`): the waypoint's L7 engine in its second role.
//! One process per Gateway of a weft class (`weft`, `istio`), running as the service
//! account `<gateway>-<class>`; its configuration is the `weft.l7.v1.Gateway` resource
//! `<namespace>/<name>` (listeners with their attached routes, policies, certificates),
//! compiled by [`config`] into a listener table plus the engine's [`WaypointConfig`](crate::WaypointConfig).
//!
//! - [`listeners`] binds each configured port once on the listen address and follows
//!   configuration changes (new ports bound, removed ports closed, unchanged ones kept);
//! - plain HTTP ports are served here ([`serve_http`]): hyper (HTTP/1.1 with upgrades, h2c
//!   by preface), the listener chosen by the request's Host, then the one request pipeline
//!   (`crate::http`) with the listener's routes;
//! - HTTPS, TLS and TCP ports are handed to the TLS layer, which calls [`serve_http`] again
//!   for terminated HTTPS;
//! - [`process`] wires the xDS subscriptions, certificate, listeners, metrics/readiness and
//!   drain; [`cert_metrics`] puts the listeners' serving certificates' expiry on the metrics
//!   page.

pub mod auto_cert;
pub mod cert_metrics;
mod client_auth;
pub mod config;
mod http;
pub mod listeners;
mod passthrough;
pub mod process;
pub(crate) mod sni;
mod tcp;
pub mod tls;
mod xds;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use weft_node::state::MeshState;
use weft_upstream::MeshWorkload;

use crate::Waypoint;
pub use config::GatewayConfig;
pub(crate) use http::serve_http;
pub use process::{GatewayListen, GatewayProcess, RunningGateway, run, take_over};

/// What the listener layer knows about a client connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// The TLS server name the client asked for (terminated TLS only).
    pub sni: Option<String>,
    /// Whether the connection is TLS (terminated here).
    pub tls: bool,
    /// Whether ALPN chose `h2` (then HTTP/2 is served without sniffing).
    pub alpn_h2: bool,
}

/// The gateway's shared context. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    engine: Waypoint,
    config: watch::Sender<Arc<GatewayConfig>>,
    /// Cancelled on shutdown: open connections finish their requests in flight and close.
    drain: CancellationToken,
    /// Every connection task (waited for while draining).
    connections: TaskTracker,
    /// The gateway's own workload, looked up once per mesh snapshot.
    own: Mutex<Option<OwnWorkload>>,
}

/// The gateway's own workload record in one mesh snapshot.
type OwnWorkload = (Arc<MeshState>, Option<Arc<MeshWorkload>>);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("identity", &self.0.engine.identity())
            .field("config", &self.config().key)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway around the L7 `engine` (built with `Role::Gateway`).
    #[must_use]
    pub fn new(engine: Waypoint) -> Self {
        Self(Arc::new(Inner {
            engine,
            config: watch::Sender::new(Arc::new(GatewayConfig::default())),
            drain: CancellationToken::new(),
            connections: TaskTracker::new(),
            own: Mutex::new(None),
        }))
    }

    /// The L7 engine (mesh state, certificates, upstream, metrics).
    #[must_use]
    pub fn engine(&self) -> &Waypoint {
        &self.0.engine
    }

    /// The listener table in force.
    #[must_use]
    pub fn config(&self) -> Arc<GatewayConfig> {
        Arc::clone(&self.0.config.borrow())
    }

    /// Follows listener table changes.
    pub(crate) fn watch_config(&self) -> watch::Receiver<Arc<GatewayConfig>> {
        self.0.config.subscribe()
    }

    /// Installs a compiled configuration: the engine's first, then the listener table.
    pub fn set_config(&self, config: GatewayConfig, engine: crate::WaypointConfig) {
        self.0.engine.set_config(engine);
        self.0.config.send_replace(Arc::new(config));
    }

    /// Cancelled when the gateway drains.
    pub(crate) fn drain_token(&self) -> &CancellationToken {
        &self.0.drain
    }

    /// The gateway's own workload (a workload with its identity), for the `source_*`
    /// labels of its metrics; looked up again only when the mesh state changed.
    pub(crate) fn own_workload(&self) -> Option<Arc<MeshWorkload>> {
        let state = self.0.engine.state();
        let mut own = self.0.own.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, workload)) = own.as_ref()
            && Arc::ptr_eq(seen, &state)
        {
            return workload.clone();
        }
        let identity = self.0.engine.identity();
        let workload = state
            .workloads()
            .find(|w| w.identity() == identity)
            .cloned();
        *own = Some((state, workload.clone()));
        workload
    }

    /// Tracks connection tasks so that a drain can wait for them.
    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.0.connections
    }
}
