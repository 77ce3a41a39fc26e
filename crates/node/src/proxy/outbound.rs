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
use weft_hbone::{ConnectRequest, HboneError, HboneStream, RelayIo, RelayOptions, TunnelTarget};
use weft_proto::workload::GatewayAddress;
use weft_proto::workload::gateway_address::Destination as GatewayDestination;

use super::connections::{ConnectionInfo, Direction, Registration};
use super::{Node, unix_ms};
use crate::lb::{self, LbError};
use crate::state::{
    ActiveConnection, Destination, MeshService, MeshState, MeshWorkload, PortMapping,
};
use crate::telemetry::{
    AccessLogEntry, ConnectionEnds, ConnectionLabels, ConnectionMetrics, ConnectionResult, Reporter,
};
use weft_policy::Transport;

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
    /// No endpoint for the service.
    #[error(transparent)]
    NoEndpoint(#[from] LbError),
    /// A waypoint is configured but cannot be found in the state.
    #[error("waypoint {waypoint} for {destination} is not in the mesh state")]
    WaypointMissing {
        /// What the waypoint was looked up as.
        waypoint: String,
        /// The original destination.
        destination: SocketAddr,
    },
    /// The chosen workload has no address on this network.
    #[error("workload {workload} has no address")]
    NoAddress {
        /// `<ns>/<name>`.
        workload: String,
    },
    /// No TLS configuration (certificate missing).
    #[error(transparent)]
    Certs(#[from] super::CertsError),
    /// The tunnel failed or the remote proxy refused the stream (401 denied, 503...).
    #[error("HBONE to {tunnel} failed: {source}")]
    Tunnel {
        /// `<ip>:15008`.
        tunnel: SocketAddr,
        /// Why.
        source: Box<HboneError>,
    },
    /// Plain TCP connect failed.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// Destination.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl OutboundError {
    /// True when the destination's proxy refused by policy (HBONE 401).
    #[must_use]
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Tunnel { source, .. } if source.status() == Some(401))
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
        matches!(
            self,
            Self::NoEndpoint(_) | Self::WaypointMissing { .. } | Self::NoAddress { .. }
        )
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

/// Where a connection goes.
enum Route {
    Hbone {
        tunnel: SocketAddr,
        authority: SocketAddr,
        /// The workload terminating the tunnel (destination or waypoint).
        peer: Arc<MeshWorkload>,
        destination: Option<Arc<MeshWorkload>>,
        service: Option<Arc<MeshService>>,
    },
    Passthrough {
        addr: SocketAddr,
        destination: Option<Arc<MeshWorkload>>,
        service: Option<Arc<MeshService>>,
    },
}

enum Upstream {
    Hbone(HboneStream),
    Tcp(TcpStream),
}

/// An opened outbound connection, ready to relay.
pub struct OutboundConnection {
    upstream: Upstream,
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

/// What is known once the route is chosen (for labels and the log).
struct Ends {
    source: Option<Arc<MeshWorkload>>,
    destination: Option<Arc<MeshWorkload>>,
    service: Option<Arc<MeshService>>,
    transport: Transport,
}

impl Ends {
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
        let identity = (self.transport == Transport::Hbone)
            .then(|| self.source.as_deref().map(MeshWorkload::identity))
            .flatten();
        AccessLogEntry::new(
            Reporter::Source,
            target.source,
            authority,
            unix_ms(SystemTime::now()),
        )
        .with_source(self.source.as_deref(), identity)
        .with_destination(self.destination.as_deref(), self.service.as_deref())
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
        let started = Instant::now();
        let state = self.inner.store.snapshot();
        let network = self.inner.options.network.as_str();
        let source = state
            .workload_by_addr(network, target.source.ip())
            .filter(|w| self.is_local(w))
            .cloned();
        let route = match self.route(&state, source.as_ref(), target.destination) {
            Ok(route) => route,
            Err(error) => {
                let ends = Ends {
                    source,
                    destination: None,
                    service: None,
                    transport: Transport::Plaintext,
                };
                return Err(self.outbound_failed(
                    &ends,
                    target,
                    target.destination,
                    started,
                    error,
                ));
            }
        };
        match route {
            Route::Hbone {
                tunnel,
                authority,
                peer,
                destination,
                service,
            } => {
                let ends = Ends {
                    source,
                    destination,
                    service,
                    transport: Transport::Hbone,
                };
                let opened = self
                    .open_tunnel(&ends, target, tunnel, authority, &peer)
                    .await;
                let mut log = ends.log(target, authority);
                log.dst_hbone_addr = Some(tunnel);
                match opened {
                    Ok(stream) => Ok(self.established(
                        ends,
                        log,
                        Upstream::Hbone(stream),
                        started,
                        Some(&peer),
                    )),
                    Err(error) => {
                        Err(self.outbound_failed(&ends, target, authority, started, error))
                    }
                }
            }
            Route::Passthrough {
                addr,
                destination,
                service,
            } => {
                let ends = Ends {
                    source,
                    destination,
                    service,
                    transport: Transport::Plaintext,
                };
                match self.connect_plain(target.source.ip(), addr).await {
                    Ok(stream) => {
                        let log = ends.log(target, addr);
                        let peer = ends.destination.clone();
                        Ok(self.established(
                            ends,
                            log,
                            Upstream::Tcp(stream),
                            started,
                            peer.as_ref(),
                        ))
                    }
                    Err(error) => Err(self.outbound_failed(&ends, target, addr, started, error)),
                }
            }
        }
    }

    fn route(
        &self,
        state: &MeshState,
        source: Option<&Arc<MeshWorkload>>,
        dst: SocketAddr,
    ) -> Result<Route, OutboundError> {
        let network = self.inner.options.network.as_str();
        match state.resolve(network, dst) {
            Destination::Service { service, port } => {
                if let Some(waypoint) = service.proto().waypoint.as_ref() {
                    return self.waypoint_route(state, waypoint, dst, None, Some(service.clone()));
                }
                let choice =
                    lb::choose_endpoint(&service, port, source.map(|s| &**s), &mut rand::rng())?;
                let workload = Arc::clone(&choice.endpoint.workload);
                let ip = first_address(&workload)?;
                Ok(self.workload_route(
                    workload,
                    SocketAddr::new(ip, choice.target_port),
                    Some(service),
                ))
            }
            Destination::Workload(workload) => {
                let is_self = source.is_some_and(|s| Arc::ptr_eq(s, &workload));
                match workload.proto().waypoint.as_ref() {
                    Some(waypoint) if !is_self => {
                        self.waypoint_route(state, waypoint, dst, Some(workload.clone()), None)
                    }
                    _ => Ok(self.workload_route(workload, dst, None)),
                }
            }
            Destination::Unknown => Ok(Route::Passthrough {
                addr: dst,
                destination: None,
                service: None,
            }),
        }
    }

    fn workload_route(
        &self,
        workload: Arc<MeshWorkload>,
        addr: SocketAddr,
        service: Option<Arc<MeshService>>,
    ) -> Route {
        if workload.speaks_hbone() {
            Route::Hbone {
                tunnel: SocketAddr::new(addr.ip(), self.inner.options.hbone_port),
                authority: addr,
                peer: Arc::clone(&workload),
                destination: Some(workload),
                service,
            }
        } else {
            Route::Passthrough {
                addr,
                destination: Some(workload),
                service,
            }
        }
    }

    fn waypoint_route(
        &self,
        state: &MeshState,
        waypoint: &GatewayAddress,
        dst: SocketAddr,
        destination: Option<Arc<MeshWorkload>>,
        service: Option<Arc<MeshService>>,
    ) -> Result<Route, OutboundError> {
        let port = u16::try_from(waypoint.hbone_mtls_port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(self.inner.options.hbone_port);
        let missing = |name: String| OutboundError::WaypointMissing {
            waypoint: name,
            destination: dst,
        };
        let peer = match &waypoint.destination {
            Some(GatewayDestination::Address(addr)) => {
                let ip = ip_from_bytes(&addr.address)
                    .ok_or_else(|| missing(format!("{:?}", addr.address)))?;
                match state.service_by_vip(&addr.network, ip) {
                    Some(svc) => pick_waypoint_endpoint(svc, port)?,
                    None => state
                        .workload_by_addr(&addr.network, ip)
                        .cloned()
                        .ok_or_else(|| missing(ip.to_string()))?,
                }
            }
            Some(GatewayDestination::Hostname(host)) => {
                let key = format!("{}/{}", host.namespace, host.hostname);
                let svc = state.service_by_key(&key).ok_or_else(|| missing(key))?;
                pick_waypoint_endpoint(svc, port)?
            }
            None => return Err(missing("<empty waypoint address>".into())),
        };
        let ip = first_address(&peer)?;
        Ok(Route::Hbone {
            tunnel: SocketAddr::new(ip, port),
            authority: dst,
            peer,
            destination,
            service,
        })
    }

    async fn open_tunnel(
        &self,
        ends: &Ends,
        target: OutboundTarget,
        tunnel: SocketAddr,
        authority: SocketAddr,
        peer: &MeshWorkload,
    ) -> Result<HboneStream, OutboundError> {
        let source = ends.source.as_ref().ok_or(OutboundError::UnknownSource {
            source_ip: target.source.ip(),
        })?;
        let src_id = source.identity().clone();
        let dst_id = peer.identity().clone();
        let tls = self
            .inner
            .certs
            .client_config(&src_id, &dst_id, self.inner.options.cert_wait)
            .await?;
        let tunnel_target = TunnelTarget {
            socket_factory: self.tunnel_socket_factory(target.source.ip()),
            ..TunnelTarget::new(tunnel, tls)
        };
        let request = ConnectRequest {
            forwarded_for: Some(target.source.ip()),
            baggage: Some(baggage(source)),
            ..ConnectRequest::new(authority)
        };
        let key = (src_id, dst_id, target.source.ip(), tunnel);
        self.inner
            .pool
            .connect(key, &tunnel_target, &request)
            .await
            .map_err(|source| OutboundError::Tunnel {
                tunnel,
                source: Box::new(source),
            })
    }

    /// Plain TCP to `addr` for the client at `source_ip` (from its pod's network when
    /// capture registered one).
    async fn connect_plain(
        &self,
        source_ip: IpAddr,
        addr: SocketAddr,
    ) -> Result<TcpStream, OutboundError> {
        self.connect_for_pod(source_ip, addr, None)
            .await
            .map_err(|source| OutboundError::Connect { addr, source })
    }

    fn established(
        &self,
        ends: Ends,
        log: AccessLogEntry,
        upstream: Upstream,
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
            dst_namespace: ends
                .destination
                .as_ref()
                .map(|w| w.proto().namespace.clone()),
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
            Upstream::Hbone(stream) => send_then_relay(client, stream, early, &self.options).await,
            Upstream::Tcp(stream) => send_then_relay(client, stream, early, &self.options).await,
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

fn pick_waypoint_endpoint(
    service: &MeshService,
    port: u16,
) -> Result<Arc<MeshWorkload>, OutboundError> {
    let mapping = service.port(port).unwrap_or(PortMapping {
        service_port: port,
        target_port: None,
    });
    let choice = lb::choose_endpoint(service, mapping, None, &mut rand::rng())?;
    Ok(choice.endpoint.workload)
}

fn first_address(workload: &MeshWorkload) -> Result<IpAddr, OutboundError> {
    workload
        .addresses()
        .first()
        .copied()
        .ok_or_else(|| OutboundError::NoAddress {
            workload: crate::telemetry::workload_ref(workload),
        })
}

/// An IP address from its 4 or 16 raw bytes.
pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// W3C baggage with the source workload's metadata (read by the destination's telemetry).
fn baggage(source: &MeshWorkload) -> String {
    let w = source.proto();
    let name = if w.workload_name.is_empty() {
        &w.name
    } else {
        &w.workload_name
    };
    let service = if w.canonical_name.is_empty() {
        name
    } else {
        &w.canonical_name
    };
    let revision = if w.canonical_revision.is_empty() {
        "latest"
    } else {
        &w.canonical_revision
    };
    let mut out = format!(
        "k8s.namespace.name={},k8s.workload.name={name},service.name={service},service.version={revision}",
        w.namespace
    );
    if !w.cluster_id.is_empty() {
        out.push_str(",k8s.cluster.name=");
        out.push_str(&w.cluster_id);
    }
    out
}
