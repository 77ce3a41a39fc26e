//! Opaque TCP through the waypoint: the waypoint's policies evaluated without request facts
//! (rules with L7 conditions fail safe: an ALLOW rule matches nothing, a DENY rule matches
//! on its L4 part), then a relay to an endpoint over HBONE with the waypoint's identity,
//! counted in the `istio_tcp_*` metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use weft_hbone::{HboneStream, Plain, RelayOptions, RelayStats, relay as relay_bytes};
use weft_node::telemetry::{ConnectionEnds, ConnectionLabels, Reporter};
use weft_policy::{ConnectionFacts, Transport};
use weft_upstream::{MeshWorkload, Route, UpstreamConnection, UpstreamError};

use crate::Waypoint;
use crate::detect::Rewind;
use crate::tunnel::{Target, Tunnel};

/// Relays one TCP tunnel to its destination, if policy allows.
pub(crate) async fn relay(waypoint: Waypoint, tunnel: &Tunnel, io: Rewind<HboneStream>) {
    let config = waypoint.config();
    let facts = connection_facts(tunnel);
    let decision = config
        .policies(tunnel.service().map(|s| &**s))
        .evaluate(&facts);
    let namespace = destination_namespace(tunnel);
    waypoint
        .inner()
        .metrics
        .tcp
        .record_decision(&decision, &namespace);
    if !decision.is_allowed() {
        tracing::info!(target: "weft::access", reporter = "waypoint", destination = %tunnel.destination,
            source_principal = %tunnel.source_identity, %decision, "tcp connection denied");
        return;
    }
    let route = match route(&waypoint, tunnel).await {
        Ok(route) => route,
        Err(error) => {
            tracing::warn!(%error, destination = %tunnel.destination, "tcp: no route");
            return;
        }
    };
    let labels = labels(tunnel, route.destination().map(|w| &**w));
    let upstream = match waypoint
        .inner()
        .upstream
        .connect(&route, &waypoint.client())
        .await
    {
        Ok(upstream) => upstream,
        Err(error) => {
            waypoint.inner().metrics.tcp.connection_failed(&labels);
            tracing::warn!(%error, destination = %tunnel.destination, "tcp: upstream connect failed");
            return;
        }
    };
    let metrics = waypoint.inner().metrics.tcp.connection_opened(&labels);
    let mut downstream = Plain(io);
    let options = RelayOptions::default();
    let result = match upstream {
        UpstreamConnection::Hbone(mut stream) => {
            relay_bytes(&mut downstream, &mut stream, &options).await
        }
        UpstreamConnection::Tcp(mut stream) => {
            relay_bytes(&mut downstream, &mut stream, &options).await
        }
    };
    match result {
        Ok(RelayStats { a_to_b, b_to_a }) => {
            metrics.add_source_to_destination(a_to_b);
            metrics.add_destination_to_source(b_to_a);
            metrics.closed();
        }
        Err(error) => {
            tracing::debug!(%error, "tcp relay ended with an error");
            metrics.failed();
        }
    }
}

pub(crate) fn connection_facts(tunnel: &Tunnel) -> ConnectionFacts {
    ConnectionFacts {
        source_identity: Some(tunnel.source_identity.clone()),
        source_ip: tunnel.source_ip,
        destination: tunnel.destination,
        transport: Transport::Hbone,
    }
}

fn destination_namespace(tunnel: &Tunnel) -> String {
    match &tunnel.target {
        Target::Service { mesh, .. } => mesh.proto().namespace.clone(),
        Target::Workload(workload) => workload.proto().namespace.clone(),
    }
}

/// The standard labels of a connection or request from the tunnel's caller to `destination`.
pub(crate) fn labels(tunnel: &Tunnel, destination: Option<&MeshWorkload>) -> ConnectionLabels {
    ConnectionLabels::derive(&ConnectionEnds {
        reporter: Reporter::Waypoint,
        source_workload: tunnel.source_workload.as_deref(),
        source_identity: Some(&tunnel.source_identity),
        destination_workload: destination,
        destination_service: tunnel.mesh_service().map(|s| &**s),
        transport: Transport::Hbone,
    })
}

/// An endpoint of the tunnel's service (outliers skipped), or its workload.
async fn route(waypoint: &Waypoint, tunnel: &Tunnel) -> Result<Route, UpstreamError> {
    match &tunnel.target {
        Target::Service { mesh, port, .. } => {
            let inner = waypoint.inner();
            let service = inner.outlier.filter(mesh);
            (inner.upstream)
                .service_route_resolving(service, *port, None, Some(tunnel.destination.ip()))
                .await
        }
        Target::Workload(workload) => Ok(direct_route(waypoint, workload, tunnel.destination)),
    }
}

/// The workload itself at `addr`, never its waypoint (this is it).
pub(crate) fn direct_route(
    waypoint: &Waypoint,
    workload: &Arc<MeshWorkload>,
    addr: SocketAddr,
) -> Route {
    if workload.speaks_hbone() {
        Route::Hbone {
            tunnel: SocketAddr::new(addr.ip(), waypoint.options().hbone_port),
            authority: addr,
            peer: Arc::clone(workload),
            destination: Some(Arc::clone(workload)),
            service: None,
        }
    } else {
        Route::Plain {
            addr,
            destination: Some(Arc::clone(workload)),
            service: None,
        }
    }
}
