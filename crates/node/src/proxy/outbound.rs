//! Outbound: from a local workload's connection and its destination address to an open
//! upstream (an HBONE stream to the destination's node proxy or waypoint, or plain TCP for
//! destinations outside the mesh), then the relay with metrics and the access log.
//!
//! Routing: a service VIP:port picks an endpoint with the load balancer (target port from
//! the port lists); a workload address goes direct; a service or workload with a waypoint
//! is tunnelled to the waypoint (`:authority` stays the original destination); a
//! destination that is unknown or does not speak HBONE is passed through as plain TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_hbone::{ConnectRequest, RelayIo, RelayOptions, SocketFactory};
use weft_identity::SpiffeId;
use weft_policy::Transport;
use weft_upstream::{Client, ClientError, Route, UpstreamConnection, UpstreamError};

use super::connections::{ConnectionInfo, Direction, Registration};
use super::{Node, unix_ms};
use crate::state::{ActiveConnection, MeshService, MeshWorkload, WorkloadNames};
use crate::telemetry::{
    AccessLogEntry, ConnectionEnds, ConnectionLabels, ConnectionMetrics, ConnectionResult, Reporter,
};

/// Why an outbound connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Mesh destinations need the client's identity, found from its source address.
    #[error(
        "source {source_ip} is not a mesh-enrolled workload on this node, so it has no mesh identity"
    )]
    UnknownSource {
        /// The client's IP.
        source_ip: IpAddr,
    },
    /// Routing or connecting failed (no endpoint, waypoint missing, certificate, tunnel
    /// refused, TCP connect...).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The destination is not in the mesh registry and the outbound traffic policy is
    /// REGISTRY_ONLY.
    #[error("{}", super::egress::registry_only_message(*destination))]
    RegistryOnly {
        /// The destination the client asked for.
        destination: SocketAddr,
    },
    /// The route leads into the node itself (see [`super::ForbiddenReason`]).
    #[error("refusing to connect to {endpoint}: it is {reason}")]
    ForbiddenEndpoint {
        /// Where the route led.
        endpoint: SocketAddr,
        /// Why that is refused.
        reason: super::ForbiddenReason,
    },
}

impl OutboundError {
    /// True when the destination's proxy refused by policy (HBONE 401).
    #[must_use]
    pub fn is_denied(&self) -> bool {
        match self {
            Self::Upstream(error) => error.is_denied(),
            Self::ForbiddenEndpoint { .. } | Self::RegistryOnly { .. } => true,
            Self::UnknownSource { .. } => false,
        }
    }

    /// True when this proxy will not originate mTLS for the client: its source address is
    /// not an enrolled workload on this node (it is outside the mesh or elsewhere).
    #[must_use]
    pub fn is_unknown_source(&self) -> bool {
        matches!(self, Self::UnknownSource { .. })
    }

    /// True when the destination could not be found or routed to (vs. refused).
    #[must_use]
    pub fn is_unroutable(&self) -> bool {
        matches!(self, Self::Upstream(error) if error.is_unroutable())
    }

    /// True when connecting (TCP or HBONE) to a routed destination failed.
    #[must_use]
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, Self::Upstream(error) if error.is_connect_failure())
    }
}

/// What a client asked to reach: source and destination addresses.
#[derive(Debug, Clone, Copy)]
pub struct OutboundTarget {
    /// The client (a local workload).
    pub source: SocketAddr,
    /// The destination it addressed (service VIP:port, workload IP:port, or anything else).
    pub destination: SocketAddr,
}

/// An opened outbound connection, ready to relay.
pub struct OutboundConnection {
    upstream: UpstreamConnection,
    log: AccessLogEntry,
    metrics: ConnectionMetrics,
    registration: Registration,
    started: Instant,
    options: RelayOptions,
    _active: Option<ActiveConnection>,
}

impl std::fmt::Debug for OutboundConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConnection")
            .field("dst", &self.log.dst_addr)
            .finish_non_exhaustive()
    }
}

/// What is known once the route is chosen (for labels and the log), with the two
/// workloads' shared names (log, table entry, `baggage`).
struct Ends {
    source: Option<Arc<MeshWorkload>>,
    destination: Option<Arc<MeshWorkload>>,
    service: Option<Arc<MeshService>>,
    transport: Transport,
    source_names: Option<Arc<WorkloadNames>>,
    destination_names: Option<Arc<WorkloadNames>>,
}

impl Ends {
    fn new(
        source: Option<Arc<MeshWorkload>>,
        destination: Option<Arc<MeshWorkload>>,
        service: Option<Arc<MeshService>>,
        transport: Transport,
    ) -> Self {
        Self {
            source_names: source.as_deref().map(MeshWorkload::names),
            destination_names: destination.as_deref().map(MeshWorkload::names),
            source,
            destination,
            service,
            transport,
        }
    }

    fn labels(&self) -> ConnectionLabels {
        ConnectionLabels::derive(&ConnectionEnds {
            reporter: Reporter::Source,
            source_workload: self.source.as_deref(),
            source_identity: (self.transport == Transport::Hbone)
                .then(|| self.source.as_deref().map(MeshWorkload::identity))
                .flatten(),
            destination_workload: self.destination.as_deref(),
            destination_service: self.service.as_deref(),
            transport: self.transport,
        })
    }

    fn log(&self, target: OutboundTarget, authority: SocketAddr) -> AccessLogEntry {
        let source = self.source_names.as_deref();
        let identity = (self.transport == Transport::Hbone)
            .then(|| source.map(|s| Arc::clone(&s.identity)))
            .flatten();
        AccessLogEntry::new(
            Reporter::Source,
            target.source,
            authority,
            unix_ms(SystemTime::now()),
        )
        .with_source(source, identity)
        .with_destination(self.destination_names.as_deref(), self.service.as_deref())
    }
}

impl Node {
    /// Opens the upstream for `target`: routes it, opens the HBONE stream or TCP
    /// connection, and counts/logs a failure. The caller answers its client (SOCKS reply,
    /// HTTP status) and then calls [`OutboundConnection::relay`].
    ///
    /// # Errors
    /// See [`OutboundError`]; the failure is already counted and logged.
    pub async fn open_outbound(
        &self,
        target: OutboundTarget,
    ) -> Result<OutboundConnection, OutboundError> {
        // Routing and connecting (an HBONE handshake included) need kilobytes of future
        // state; boxed, it is freed once the connection is open instead of staying in
        // the connection's task for as long as it relays.
        Box::pin(self.route_and_connect(target)).await
    }

    async fn route_and_connect(
        &self,
        target: OutboundTarget,
    ) -> Result<OutboundConnection, OutboundError> {
        let started = Instant::now();
        let state = self.inner.store.snapshot();
        let network = self.inner.options.network.as_str();
        let source = state
            .workload_by_addr(network, target.source.ip())
            .filter(|w| self.is_local(w))
            .cloned();
        let route = match self
            .inner
            .upstream
            .route_resolving(&*state, source.as_ref(), target.destination)
            .await
        {
            Ok(route) => route,
            Err(error) => {
                let ends = Ends::new(source, None, None, Transport::Plaintext);
                let dst = target.destination;
                return Err(self.outbound_failed(&ends, target, dst, started, error.into()));
            }
        };
        let (ends, authority) = ends_of(&route, source);
        if self.refused_by_registry(&route) {
            let destination = target.destination;
            let error = OutboundError::RegistryOnly { destination };
            return Err(self.outbound_failed(&ends, target, authority, started, error));
        }
        if let Route::Plain { addr, .. } = &route
            && let Some(reason) = self.forbidden_endpoint(&state, *addr)
        {
            let error = OutboundError::ForbiddenEndpoint {
                endpoint: *addr,
                reason,
            };
            return Err(self.outbound_failed(&ends, target, authority, started, error));
        }
        match self.connect_route(&route, &ends, target).await {
            Ok(upstream) => {
                let mut log = ends.log(target, authority);
                if let Route::Hbone { tunnel, .. } = route {
                    log.dst_hbone_addr = Some(tunnel);
                }
                Ok(self.established(ends, log, upstream, started, route.peer()))
            }
            Err(error) => Err(self.outbound_failed(&ends, target, authority, started, error)),
        }
    }

    /// Connects `route` for the client at `target.source`: HBONE presents the source
    /// workload's certificate, so it needs a known local source.
    async fn connect_route(
        &self,
        route: &Route,
        ends: &Ends,
        target: OutboundTarget,
    ) -> Result<UpstreamConnection, OutboundError> {
        let source_ip = target.source.ip();
        if matches!(route, Route::Hbone { .. }) && ends.source.is_none() {
            return Err(OutboundError::UnknownSource { source_ip });
        }
        let client = SourceClient {
            node: self,
            source: ends.source.as_deref(),
            baggage: ends.source_names.as_ref().map(|n| &n.baggage),
            source_ip,
        };
        Ok(self.inner.upstream.connect(route, &client).await?)
    }

    fn established(
        &self,
        ends: Ends,
        log: AccessLogEntry,
        upstream: UpstreamConnection,
        started: Instant,
        peer: Option<&Arc<MeshWorkload>>,
    ) -> OutboundConnection {
        let metrics = self.inner.metrics.connection_opened(&ends.labels());
        let info = ConnectionInfo {
            direction: Direction::Outbound,
            src_addr: log.src_addr,
            src_identity: log.src_identity.clone(),
            dst_addr: log.dst_addr,
            dst_workload: log.dst_workload.clone(),
            dst_namespace: (ends.destination_names.as_ref()).map(|n| Arc::clone(&n.namespace)),
            start_unix_ms: log.start_unix_ms,
        };
        let registration = self
            .inner
            .connections
            .register(info, None, &self.inner.kill);
        let options = RelayOptions {
            idle_timeout: self.inner.options.idle_timeout,
            cancel: Some(registration.cancel.clone()),
        };
        OutboundConnection {
            upstream,
            log,
            metrics,
            registration,
            started,
            options,
            _active: peer.map(|p| p.track_connection()),
        }
    }

    fn outbound_failed(
        &self,
        ends: &Ends,
        target: OutboundTarget,
        dst: SocketAddr,
        started: Instant,
        error: OutboundError,
    ) -> OutboundError {
        self.inner.metrics.connection_failed(&ends.labels());
        let mut log = ends.log(target, dst);
        let result = if error.is_denied() {
            ConnectionResult::Denied
        } else {
            ConnectionResult::Failed
        };
        log.finish(started.elapsed(), result, Some(error.to_string()));
        log.emit(self.inner.options.access_log);
        error
    }
}

impl OutboundConnection {
    /// Sends `early` (bytes the client sent before the proxy answered), then relays
    /// between `client` and the upstream until both sides close; records bytes and
    /// writes the access-log line.
    pub async fn relay<C: RelayIo>(
        mut self,
        client: &mut C,
        early: &[u8],
        format: crate::telemetry::AccessLogFormat,
    ) {
        let result = match &mut self.upstream {
            UpstreamConnection::Hbone(stream) => {
                send_then_relay(client, stream, early, &self.options).await
            }
            UpstreamConnection::Tcp(stream) => {
                send_then_relay(client, stream, early, &self.options).await
            }
        };
        let (stats, error) = match result {
            Ok(stats) => (stats, None),
            Err(error) => (error.stats, Some(error.cause.to_string())),
        };
        let sent = stats.a_to_b + early.len() as u64;
        self.metrics.add_source_to_destination(sent);
        self.metrics.add_destination_to_source(stats.b_to_a);
        self.log.bytes_sent = sent;
        self.log.bytes_received = stats.b_to_a;
        let reason = self.registration.close_reason().or(error);
        let result = if reason.is_some() {
            self.metrics.failed();
            ConnectionResult::Failed
        } else {
            self.metrics.closed();
            ConnectionResult::Ok
        };
        self.log.finish(self.started.elapsed(), result, reason);
        self.log.emit(format);
    }
}

async fn send_then_relay<C: RelayIo, U: RelayIo + tokio::io::AsyncWrite + Unpin>(
    client: &mut C,
    upstream: &mut U,
    early: &[u8],
    options: &RelayOptions,
) -> Result<weft_hbone::RelayStats, weft_hbone::RelayError> {
    if !early.is_empty()
        && let Err(source) = upstream.write_all(early).await
    {
        return Err(weft_hbone::RelayError {
            stats: weft_hbone::RelayStats::default(),
            cause: weft_hbone::RelayCause::Write {
                side: weft_hbone::Side::B,
                source,
            },
        });
    }
    weft_hbone::relay(client, upstream, options).await
}

/// The ends of a routed connection and the address it is logged with.
fn ends_of(route: &Route, source: Option<Arc<MeshWorkload>>) -> (Ends, SocketAddr) {
    let (transport, addr, service) = match route {
        Route::Hbone {
            authority, service, ..
        } => (Transport::Hbone, *authority, service),
        Route::Plain { addr, service, .. } => (Transport::Plaintext, *addr, service),
    };
    let destination = route.destination().cloned();
    let ends = Ends::new(source, destination, service.clone(), transport);
    (ends, addr)
}

/// The node's side of an upstream connection: the source workload's identity and
/// certificate, its pod's sockets, and the `forwarded` and `baggage` headers.
struct SourceClient<'a> {
    node: &'a Node,
    source: Option<&'a MeshWorkload>,
    /// The source's `baggage` value, built when its record arrived.
    baggage: Option<&'a Arc<str>>,
    source_ip: IpAddr,
}

impl Client for SourceClient<'_> {
    fn identity(&self) -> Option<&SpiffeId> {
        self.source.map(MeshWorkload::identity)
    }

    fn source_ip(&self) -> IpAddr {
        self.source_ip
    }

    async fn tls(&self, peer: &SpiffeId) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let source = self.identity().ok_or("no source identity")?;
        let inner = &self.node.inner;
        let config = inner
            .certs
            .client_config(source, peer, inner.options.cert_wait)
            .await?;
        Ok(config)
    }

    fn request(&self, authority: SocketAddr) -> ConnectRequest {
        ConnectRequest {
            forwarded_for: Some(self.source_ip),
            baggage: self.baggage.cloned(),
            ..ConnectRequest::new(authority)
        }
    }

    fn socket_factory(&self) -> Option<SocketFactory> {
        self.node.tunnel_socket_factory(self.source_ip)
    }

    /// Plain TCP from the client's pod network when capture registered one.
    async fn connect_plain(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        self.node.connect_for_pod(self.source_ip, addr, None).await
    }
}
