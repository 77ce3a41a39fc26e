//! The `weft node` process: builds a [`Node`], binds its listeners, feeds its state (a
//! local file or delta xDS) and serves until shut down. The binary parses flags into a
//! [`NodeConfig`]; tests call [`run`] directly with an in-process CA and xDS server.
//!
//! A process taking over from a running one ([`run_with_handoff`] with inherited sockets,
//! see [`crate::handoff`]) syncs its configuration and certificates first and only then
//! accepts on the sockets it received, so a connection never meets a proxy that is not
//! ready.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::Channel;
use weft_identity::{
    CertManager, CertManagerConfig, CertificateProvider, GrpcCaClient, GrpcCaClientConfig,
    TokenSource, TrustBundle,
};
use weft_serve::handoff::OfferGuard;
use weft_xds::client::{XdsClient, XdsClientHandle};

use crate::handoff::{Handoff, NodeSocket};
use crate::proxy::{
    AddressHandler, AuthorizationHandler, Certs, InboundDestination, LogControl, MeshConfigHandler,
    Node, ProxyOptions,
};
use crate::state::{LocalConfig, LocalConfigError, StateStore};

/// Where the mesh state comes from.
pub enum StateSource {
    /// A local file of workloads/services/policies (see [`LocalConfig`]).
    LocalFile(PathBuf),
    /// Delta xDS over `channel` (Address and Authorization, wildcard).
    Xds(XdsSource),
}

/// Settings of the xDS state source.
pub struct XdsSource {
    /// Channel to the control plane (TLS or not is the caller's business).
    pub channel: Channel,
    /// Bearer token, read before every connection attempt (files rotate).
    pub token: Option<weft_xds::client::TokenSource>,
    /// Sent as `clusterid` when set.
    pub cluster_id: Option<String>,
}

/// Addresses to listen on; `None` disables a listener. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct ListenAddrs {
    /// SOCKS5 / HTTP CONNECT (15080, localhost).
    pub explicit: Option<SocketAddr>,
    /// Outbound capture with `SO_ORIGINAL_DST` (15001).
    pub outbound: Option<SocketAddr>,
    /// Plaintext inbound capture with `SO_ORIGINAL_DST` (15006).
    pub inbound_plaintext: Option<SocketAddr>,
    /// Admin pages (15000, localhost).
    pub admin: Option<SocketAddr>,
    /// Prometheus metrics (15020).
    pub metrics: Option<SocketAddr>,
    /// Readiness (15021).
    pub readiness: Option<SocketAddr>,
    /// Bind `<workload ip>:<hbone port>` for every local workload automatically
    /// (explicit/loopback mode). Off when a capture component attaches pod sockets.
    pub workload_hbone_listeners: bool,
}

/// Everything `weft node` needs.
pub struct NodeConfig {
    /// Data path settings.
    pub options: ProxyOptions,
    /// Listener addresses.
    pub listen: ListenAddrs,
    /// Mesh state source.
    pub state: StateSource,
    /// Where workload certificates come from.
    pub ca: Arc<dyn CertificateProvider>,
    /// Roots peers' certificates must chain to.
    pub trust: TrustBundle,
    /// Certificate lifetime and retry tuning.
    pub certs: CertManagerConfig,
    /// Runtime log filter changes for `/logging`.
    pub log_control: Option<LogControl>,
}

/// A lazily connected TLS channel to the control plane at `endpoint`
/// (`https://host:port`), whose certificate must chain to `trust` and carry `server_name`.
///
/// # Errors
/// When the endpoint is not a valid URI or the TLS settings are refused.
pub fn control_channel(
    endpoint: &str,
    server_name: &str,
    trust: &TrustBundle,
) -> Result<Channel, StartError> {
    let invalid = |reason: String| StartError::Control {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = weft_identity::tls::control_plane_endpoint(endpoint, server_name, trust)
        .map_err(invalid)?
        .connect_timeout(Duration::from_secs(10))
        .connect_lazy();
    Ok(channel)
}

/// The two clients a proxy keeps towards the control plane at `control` (`host:port`):
/// the CA client (certificates) and the xDS source (configuration), both checking that the
/// control plane's certificate chains to `trust` and names `server_name`, both sending
/// `token` (a file is re-read before every attempt, so a rotated token is picked up) and
/// `cluster_id`. Shared by the node proxy and the waypoint.
///
/// # Errors
/// When the endpoint is not a valid URI or the TLS settings are refused.
pub fn control_plane_clients(
    control: &str,
    server_name: &str,
    trust: &TrustBundle,
    token: TokenSource,
    cluster_id: Option<String>,
) -> Result<(GrpcCaClient, XdsSource), StartError> {
    let endpoint = format!("https://{control}");
    let ca = GrpcCaClient::new(GrpcCaClientConfig {
        cluster_id: cluster_id.clone(),
        ..GrpcCaClientConfig::node_proxy(
            endpoint.clone(),
            server_name,
            trust.clone(),
            token.clone(),
        )
    })
    .map_err(|error| StartError::Control {
        endpoint: endpoint.clone(),
        reason: format!("CA client: {error}"),
    })?;
    let channel = control_channel(&endpoint, server_name, trust)?;
    let read: weft_xds::client::TokenSource = Arc::new(move || match &token {
        TokenSource::Static(token) => Some(token.clone()),
        TokenSource::File(path) => std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    });
    let xds = XdsSource {
        channel,
        token: Some(read),
        cluster_id,
    };
    Ok((ca, xds))
}

/// Why the node proxy could not start.
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
    /// The control plane address or TLS settings are unusable.
    #[error("control plane endpoint {endpoint}: {reason}")]
    Control {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The local configuration file is invalid.
    #[error(transparent)]
    LocalConfig(#[from] LocalConfigError),
    /// Taking over from a running proxy: this one did not become ready in time (the
    /// running proxy keeps serving).
    #[error("not ready to take over after {waited:?}: {reason}")]
    NotReady {
        /// How long it waited.
        waited: Duration,
        /// What was missing.
        reason: String,
    },
    /// An inherited socket is not what its name says.
    #[error("inherited socket {name}: {source}")]
    Inherited {
        /// Its hand-off name.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// How long a proxy taking over waits for its configuration and certificates.
pub const TAKEOVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readiness checks while taking over.
const READY_POLL: Duration = Duration::from_millis(20);

/// Addresses the running proxy actually listens on.
#[derive(Debug, Clone, Default)]
pub struct BoundAddrs {
    /// SOCKS5 / HTTP CONNECT.
    pub explicit: Option<SocketAddr>,
    /// Outbound capture.
    pub outbound: Option<SocketAddr>,
    /// Plaintext inbound capture.
    pub inbound_plaintext: Option<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
    /// Readiness.
    pub readiness: Option<SocketAddr>,
}

/// A running node proxy.
#[derive(Debug)]
pub struct RunningNode {
    /// The data path context.
    pub node: Node,
    /// Bound addresses.
    pub addrs: BoundAddrs,
    /// The xDS client handle (xDS mode only).
    pub xds: Option<XdsClientHandle>,
    /// Sockets inherited from a predecessor and offered to a successor.
    pub handoff: Handoff,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Admin, metrics and readiness pages.
    pages: Vec<tokio::task::JoinHandle<()>>,
    /// Keeps the node-level listeners offered while they are open.
    _offers: Vec<OfferGuard>,
}

impl RunningNode {
    /// A successor took the listeners over: stops serving the admin, metrics and
    /// readiness pages here (the successor answers them now). Open connections keep
    /// flowing until [`RunningNode::shutdown`].
    pub fn step_down(&mut self) {
        for task in self.pages.drain(..) {
            task.abort();
        }
    }

    /// Stops accepting, drains open connections up to `deadline`, cuts the rest, and
    /// stops the background tasks (xDS client, admin pages). Returns connections cut.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        let cut = self.node.shutdown(deadline).await;
        for task in self.background.iter().chain(&self.pages) {
            task.abort();
        }
        cut
    }
}

/// Starts the node proxy: state source, certificates, listeners, pages.
///
/// # Errors
/// A listener that cannot be bound or an invalid local configuration file.
pub async fn run(config: NodeConfig) -> Result<RunningNode, StartError> {
    run_with_handoff(config, Handoff::fresh()).await
}

/// Starts the node proxy with `handoff`: node-level sockets inherited from a predecessor
/// are used instead of binding (after waiting until this proxy is ready, up to
/// [`TAKEOVER_READY_TIMEOUT`]), and every node-level listener is offered to a successor.
///
/// # Errors
/// As [`run`]; also when taking over and not ready in time, or an inherited socket is
/// unusable.
pub async fn run_with_handoff(
    config: NodeConfig,
    handoff: Handoff,
) -> Result<RunningNode, StartError> {
    let store = Arc::new(StateStore::new());
    let manager = CertManager::new(config.ca, config.certs);
    let certs = Certs::new(manager, config.trust);
    let node = Node::new(
        config.options,
        Arc::clone(&store),
        certs,
        config.log_control,
    );
    let mut background = Vec::new();
    let mut xds_handle = None;
    match config.state {
        StateSource::LocalFile(path) => {
            let local = LocalConfig::load(&path)?;
            let _ = store.replace_all(local);
            node.set_config_loaded();
            tracing::info!(path = %path.display(), "loaded local mesh configuration");
        }
        StateSource::Xds(source) => {
            let (client, handle) = xds_client(&node, &store, source, config.listen.metrics);
            background.push(tokio::spawn(client.run()));
            let ready = node.clone();
            let waiter = handle.clone();
            background.push(tokio::spawn(async move {
                waiter.ready().await;
                ready.set_config_loaded();
                tracing::info!("received the first mesh configuration from the control plane");
            }));
            xds_handle = Some(handle);
        }
    }
    node.start_state_follower();
    if handoff.is_taking_over() {
        wait_ready(&node, TAKEOVER_READY_TIMEOUT).await?;
    }
    if config.listen.workload_hbone_listeners {
        node.enable_workload_listeners(handoff.clone());
    }
    let mut listeners = Listeners {
        node: &node,
        handoff: &handoff,
        offers: Vec::new(),
        pages: Vec::new(),
    };
    let addrs = listeners.bind_all(&config.listen).await?;
    let (offers, pages) = (listeners.offers, listeners.pages);
    Ok(RunningNode {
        node,
        addrs,
        xds: xds_handle,
        handoff,
        background,
        pages,
        _offers: offers,
    })
}

/// Waits until `node` is ready (configuration and every local workload's certificate).
async fn wait_ready(node: &Node, timeout: Duration) -> Result<(), StartError> {
    let started = Instant::now();
    loop {
        match node.readiness() {
            Ok(()) => return Ok(()),
            Err(reason) if started.elapsed() >= timeout => {
                return Err(StartError::NotReady {
                    waited: timeout,
                    reason,
                });
            }
            Err(_) => tokio::time::sleep(READY_POLL).await,
        }
    }
}

fn xds_client(
    node: &Node,
    store: &Arc<StateStore>,
    source: XdsSource,
    metrics: Option<SocketAddr>,
) -> (XdsClient, XdsClientHandle) {
    let options = node.options();
    let metadata = weft_xds::proxy_metadata(
        &[("NODE_NAME", &options.node_name), ("NAME", "weft-node")],
        metrics,
    );
    let proto_node = weft_proto::discovery::Node {
        id: format!("weft-node~{}", options.node_name),
        cluster: source.cluster_id.clone().unwrap_or_default(),
        metadata: Some(metadata),
        ..Default::default()
    };
    let mut builder = XdsClient::builder(proto_node)
        .wildcard(
            weft_proto::ADDRESS_TYPE_URL,
            AddressHandler(Arc::clone(store)),
        )
        .wildcard(
            weft_proto::AUTHORIZATION_TYPE_URL,
            AuthorizationHandler(Arc::clone(store)),
        )
        .optional_wildcard(
            weft_proto::MESH_CONFIG_TYPE_URL,
            MeshConfigHandler(node.clone()),
        );
    if let Some(token) = source.token {
        builder = builder.bearer_token_source(token);
    }
    if let Some(cluster) = source.cluster_id {
        builder = builder.metadata("clusterid", cluster);
    }
    builder.build(source.channel)
}

/// Binds (or takes over) the node-level listeners.
struct Listeners<'a> {
    node: &'a Node,
    handoff: &'a Handoff,
    offers: Vec<OfferGuard>,
    pages: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners<'_> {
    /// The inherited listener `socket` if bound to `addr`, else a new one; offered to a
    /// successor either way.
    async fn open(
        &mut self,
        what: &'static str,
        socket: NodeSocket,
        addr: SocketAddr,
    ) -> Result<TcpListener, StartError> {
        let name = socket.name();
        let inherited = self
            .handoff
            .take_tcp(name, addr)
            .map_err(|source| StartError::Inherited { name, source })?;
        let listener = match inherited {
            Some(listener) => listener,
            None => TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })?,
        };
        self.offers.extend(self.handoff.offer(name, &listener));
        Ok(listener)
    }

    async fn bind_all(&mut self, listen: &ListenAddrs) -> Result<BoundAddrs, StartError> {
        let node = self.node;
        let mut addrs = BoundAddrs::default();
        if let Some(addr) = listen.explicit {
            let listener = self
                .open("explicit proxy", NodeSocket::Explicit, addr)
                .await?;
            addrs.explicit = listener.local_addr().ok();
            node.serve_explicit(listener);
        }
        if let Some(addr) = listen.outbound {
            let listener = self
                .open("outbound capture", NodeSocket::Outbound, addr)
                .await?;
            addrs.outbound = listener.local_addr().ok();
            node.serve_outbound(listener);
        }
        if let Some(addr) = listen.inbound_plaintext {
            let listener = self
                .open("plaintext inbound", NodeSocket::InboundPlaintext, addr)
                .await?;
            addrs.inbound_plaintext = listener.local_addr().ok();
            node.serve_inbound_plaintext(listener, InboundDestination::OriginalDst);
        }
        let pages = [
            (
                "admin",
                NodeSocket::Admin,
                listen.admin,
                node.admin_router(),
                &mut addrs.admin,
            ),
            (
                "metrics",
                NodeSocket::Metrics,
                listen.metrics,
                node.metrics_router(),
                &mut addrs.metrics,
            ),
            (
                "readiness",
                NodeSocket::Readiness,
                listen.readiness,
                node.readiness_router(),
                &mut addrs.readiness,
            ),
        ];
        for (what, socket, addr, router, bound) in pages {
            let Some(addr) = addr else { continue };
            let listener = self.open(what, socket, addr).await?;
            *bound = listener.local_addr().ok();
            node.add_own_listener(&listener);
            self.pages
                .push(tokio::spawn(weft_serve::serve(listener, router)));
        }
        Ok(addrs)
    }
}
