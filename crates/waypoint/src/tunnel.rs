//! Inbound HBONE tunnels: each CONNECT stream is authorized as a tunnel (the caller's
//! certificate identity is the source principal; the CONNECT authority is the original
//! destination, a service VIP:port bound to this waypoint or the address of a workload it
//! takes), then handed off and served by protocol: HTTP/1.1 or h2c through the request
//! pipeline, opaque TCP through L4 policy and a relay.
//!
//! Before the first complete configuration a tunnel waits (bounded) and is then refused with
//! 503, like the node proxy: an empty configuration would route nothing and check nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::StatusCode;
use tokio::sync::oneshot;
use weft_hbone::{HboneStream, InboundDecision, InboundHandler, InboundRequest};
use weft_identity::SpiffeId;
use weft_node::state::MeshState;
use weft_proto::l7::Protocol;
use weft_upstream::{MeshService, MeshWorkload, PortMapping};

use crate::Waypoint;
use crate::config::BoundService;
use crate::detect::{self, Detected, Rewind};
use crate::http::conn::Conn;

/// Where a tunnel's traffic is addressed.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A port of a service bound to the waypoint.
    Service {
        bound: Arc<BoundService>,
        mesh: Arc<MeshService>,
        port: PortMapping,
    },
    /// A workload the waypoint takes traffic for.
    Workload(Arc<MeshWorkload>),
}

/// What every request on a tunnel shares.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    /// The caller's verified identity.
    pub source_identity: SpiffeId,
    /// The caller's address: the workload's (forwarded by its node proxy) or the peer's.
    pub source_ip: IpAddr,
    /// The caller's workload, when its address and identity agree.
    pub source_workload: Option<Arc<MeshWorkload>>,
    /// The original destination (CONNECT authority).
    pub destination: SocketAddr,
    /// What it is.
    pub target: Target,
}

impl Tunnel {
    /// The bound service, if the destination is one.
    pub fn service(&self) -> Option<&Arc<BoundService>> {
        match &self.target {
            Target::Service { bound, .. } => Some(bound),
            Target::Workload(_) => None,
        }
    }

    /// The mesh service addressed, if any.
    pub fn mesh_service(&self) -> Option<&Arc<MeshService>> {
        match &self.target {
            Target::Service { mesh, .. } => Some(mesh),
            Target::Workload(_) => None,
        }
    }
}

/// Serves the waypoint's HBONE listener.
pub(crate) struct TunnelHandler(pub Waypoint);

impl InboundHandler for TunnelHandler {
    type Upstream = HboneStream;

    async fn handle(&self, request: InboundRequest) -> InboundDecision<HboneStream> {
        let waypoint = &self.0;
        if !waypoint.wait_loaded(waypoint.options().config_wait).await {
            tracing::warn!(destination = %request.authority, "refusing a tunnel: no configuration yet");
            return InboundDecision::Reject(StatusCode::SERVICE_UNAVAILABLE);
        }
        let tunnel = match accept(waypoint, &request) {
            Ok(tunnel) => tunnel,
            Err(status) => return InboundDecision::Reject(status),
        };
        let (handoff, stream) = oneshot::channel();
        let waypoint = waypoint.clone();
        tokio::spawn(async move {
            if let Ok(stream) = stream.await {
                serve(waypoint, Arc::new(tunnel), stream).await;
            }
        });
        InboundDecision::Handoff(handoff)
    }
}

/// The tunnel for `request`, or the status refusing it.
fn accept(waypoint: &Waypoint, request: &InboundRequest) -> Result<Tunnel, StatusCode> {
    let identity = weft_identity::peer_identity(Some(&request.peer_certificates)).map_err(|e| {
        tracing::warn!(error = %e, peer = %request.peer_addr, "refusing a tunnel without a mesh identity");
        StatusCode::UNAUTHORIZED
    })?;
    let state = waypoint.state();
    let destination = request.authority;
    let target = target(waypoint, &state, destination).ok_or_else(|| {
        tracing::warn!(%destination, "refusing a tunnel to a destination not bound to this waypoint");
        StatusCode::NOT_FOUND
    })?;
    let candidates = [request.forwarded_for(), Some(request.peer_addr.ip())];
    let source_workload = candidates.iter().flatten().find_map(|ip| {
        state
            .workloads_with_ip(*ip)
            .find(|w| *w.identity() == identity)
            .cloned()
    });
    let source_ip = source_workload
        .as_ref()
        .and_then(|w| w.addresses().first().copied())
        .unwrap_or(request.peer_addr.ip());
    Ok(Tunnel {
        source_identity: identity,
        source_ip,
        source_workload,
        destination,
        target,
    })
}

fn target(waypoint: &Waypoint, state: &MeshState, destination: SocketAddr) -> Option<Target> {
    let network = &waypoint.options().network;
    let config = waypoint.config();
    if let Some(mesh) = state.service_by_vip(network, destination.ip()) {
        let bound = config.service(mesh.key())?;
        let port = mesh.port(destination.port())?;
        return Some(Target::Service {
            bound: Arc::clone(bound),
            mesh: Arc::clone(mesh),
            port,
        });
    }
    let workload = state.workload_by_addr(network, destination.ip())?;
    config
        .takes_workload(workload.uid())
        .then(|| Target::Workload(Arc::clone(workload)))
}

/// Serves one handed-off stream by the protocol of its port (sniffed when not declared).
async fn serve(waypoint: Waypoint, tunnel: Arc<Tunnel>, mut stream: HboneStream) {
    let declared = match &tunnel.target {
        Target::Service { bound, port, .. } => bound.protocol(port.service_port),
        Target::Workload(_) => Protocol::Detect,
    };
    let (detected, prefix) = match declared {
        Protocol::Tcp => (Detected::Tcp, bytes::Bytes::new()),
        Protocol::Http2 | Protocol::Grpc => (Detected::Http2, bytes::Bytes::new()),
        Protocol::Http | Protocol::Detect => match detect::sniff(&mut stream).await {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%error, "tunnel closed while detecting its protocol");
                return;
            }
        },
    };
    let io = Rewind::new(prefix, stream);
    let drain = Some(waypoint.inner().drain.clone());
    match (declared, detected) {
        (_, Detected::Http2) => {
            crate::http::serve(waypoint, Conn::Tunnel(tunnel), io, true, drain).await;
        }
        (Protocol::Http, _) | (_, Detected::Http1) => {
            crate::http::serve(waypoint, Conn::Tunnel(tunnel), io, false, drain).await;
        }
        _ => crate::tcp::relay(waypoint, &tunnel, io).await,
    }
}
