//! Routing a destination to one endpoint and connecting to it: [`Upstream::route`] reads
//! the caller's [`Directory`] (service VIP:port → load-balanced endpoint with its target
//! port; workload address → that workload; a waypoint when the service or workload has
//! one; anything else → plain TCP to the address), [`Upstream::connect`] opens the HBONE
//! stream (pooled) or the TCP connection with what the caller's [`Client`] supplies.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use weft_hbone::{
    ConnectRequest, HboneError, HboneStream, Pool, PoolConfig, SocketFactory, TunnelTarget,
};
use weft_identity::SpiffeId;
use weft_proto::workload::GatewayAddress;
use weft_proto::workload::gateway_address::Destination as GatewayDestination;

use crate::lb::{self, LbError};
use crate::resolve::NameResolver;
use crate::{Destination, Directory, MeshService, MeshWorkload, PortMapping};

/// Pool key of an HBONE connection: (presented identity, peer identity, source IP,
/// tunnel address). Streams share a connection only when all four match.
pub type PoolKey = (SpiffeId, SpiffeId, IpAddr, SocketAddr);

/// An error the caller's [`Client`] reports (e.g. its certificate is not ready).
pub type ClientError = Box<dyn StdError + Send + Sync>;

/// Why no upstream connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
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
    /// The chosen workload is known by host name only and the name gave no usable address.
    #[error("cannot resolve {host} (endpoint of workload {workload}): {reason}")]
    Unresolved {
        /// The workload's host name.
        host: String,
        /// `<ns>/<name>`.
        workload: String,
        /// Why (resolver error, no answer, only refused addresses).
        reason: String,
    },
    /// HBONE needs an identity to present and the client has none.
    #[error("no identity to present for HBONE to {tunnel}")]
    NoIdentity {
        /// `<ip>:15008`.
        tunnel: SocketAddr,
    },
    /// The client could not supply TLS (certificate missing...).
    #[error(transparent)]
    Client(ClientError),
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
        source: io::Error,
    },
}

impl UpstreamError {
    /// True when the destination's proxy refused by policy (HBONE 401).
    #[must_use]
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Tunnel { source, .. } if source.status() == Some(401))
    }

    /// True when the destination could not be found or routed to (vs. refused).
    #[must_use]
    pub fn is_unroutable(&self) -> bool {
        matches!(
            self,
            Self::NoEndpoint(_)
                | Self::WaypointMissing { .. }
                | Self::NoAddress { .. }
                | Self::Unresolved { .. }
        )
    }

    /// True when connecting (TCP or HBONE) to a routed destination failed.
    #[must_use]
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Tunnel { .. })
    }
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub enum Route {
    /// An HBONE stream through `tunnel` to `authority`.
    Hbone {
        /// `<peer ip>:<hbone port>`.
        tunnel: SocketAddr,
        /// `:authority`: the endpoint and target port (or the original destination when
        /// the peer is a waypoint).
        authority: SocketAddr,
        /// The workload terminating the tunnel (destination or waypoint): its identity is
        /// the one expected.
        peer: Arc<MeshWorkload>,
        /// The destination workload, when known.
        destination: Option<Arc<MeshWorkload>>,
        /// The service addressed, if any.
        service: Option<Arc<MeshService>>,
    },
    /// Plain TCP to `addr` (outside the mesh, or a workload without HBONE).
    Plain {
        /// Where to connect.
        addr: SocketAddr,
        /// The destination workload, when known.
        destination: Option<Arc<MeshWorkload>>,
        /// The service addressed, if any.
        service: Option<Arc<MeshService>>,
    },
}

impl Route {
    /// The destination workload, when known.
    #[must_use]
    pub fn destination(&self) -> Option<&Arc<MeshWorkload>> {
        match self {
            Self::Hbone { destination, .. } | Self::Plain { destination, .. } => {
                destination.as_ref()
            }
        }
    }

    /// The workload the connection lands on (the tunnel's peer, or the plain
    /// destination): the one to count the connection against.
    #[must_use]
    pub fn peer(&self) -> Option<&Arc<MeshWorkload>> {
        match self {
            Self::Hbone { peer, .. } => Some(peer),
            Self::Plain { destination, .. } => destination.as_ref(),
        }
    }
}

/// What the caller supplies for a connection: the identity it presents, its TLS, its
/// sockets and the CONNECT headers. The node proxy implements it per source workload; a
/// waypoint with its own identity.
pub trait Client: Sync {
    /// The identity presented over HBONE (`None`: this client cannot use HBONE).
    fn identity(&self) -> Option<&SpiffeId>;

    /// The source IP: part of the pool key (and whatever the caller does with it).
    fn source_ip(&self) -> IpAddr;

    /// A TLS config presenting [`Client::identity`]'s certificate and accepting only a
    /// server with identity `peer`.
    fn tls(
        &self,
        peer: &SpiffeId,
    ) -> impl Future<Output = Result<Arc<rustls::ClientConfig>, ClientError>> + Send;

    /// The CONNECT request for `authority` (add `forwarded`, `baggage`...).
    fn request(&self, authority: SocketAddr) -> ConnectRequest {
        ConnectRequest::new(authority)
    }

    /// Where the tunnel's socket comes from (`None`: this process's namespace).
    fn socket_factory(&self) -> Option<SocketFactory> {
        None
    }

    /// Plain TCP to `addr`.
    fn connect_plain(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<TcpStream>> + Send {
        TcpStream::connect(addr)
    }
}

/// An open upstream connection.
#[derive(Debug)]
pub enum UpstreamConnection {
    /// A CONNECT stream in an HBONE tunnel.
    Hbone(HboneStream),
    /// A plain TCP connection.
    Tcp(TcpStream),
}

/// The connector: HBONE pool, HBONE port and the network routing happens in.
#[derive(Debug)]
pub struct Upstream {
    pool: Pool<PoolKey>,
    hbone_port: u16,
    network: String,
    names: NameResolver,
}

impl Upstream {
    /// A connector for workloads on `network` (`""` = default), tunnelling to
    /// `hbone_port` (15008) unless a waypoint says otherwise.
    #[must_use]
    pub fn new(pool: PoolConfig, hbone_port: u16, network: impl Into<String>) -> Self {
        Self {
            pool: Pool::new(pool),
            hbone_port,
            network: network.into(),
            names: NameResolver::new(Vec::new(), false),
        }
    }

    /// The connector resolving endpoints known by host name only with `names` (the
    /// system's configuration by default).
    #[must_use]
    pub fn with_names(self, names: NameResolver) -> Self {
        Self { names, ..self }
    }

    /// The network routing looks addresses up in.
    #[must_use]
    pub fn network(&self) -> &str {
        &self.network
    }

    /// HBONE pool counters (handshakes, open connections, streams).
    #[must_use]
    pub fn pool_stats(&self) -> weft_hbone::PoolStatsSnapshot {
        self.pool.stats().snapshot()
    }

    /// Routes a connection from `source` (used for locality and to skip the source's own
    /// waypoint) to `dst`: a service VIP:port or workload address honours its waypoint;
    /// anything unknown is plain TCP to `dst`.
    ///
    /// # Errors
    /// No usable endpoint, a missing waypoint, an endpoint without address.
    pub fn route<D: Directory + ?Sized>(
        &self,
        state: &D,
        source: Option<&Arc<MeshWorkload>>,
        dst: SocketAddr,
    ) -> Result<Route, UpstreamError> {
        self.route_to(state, source, dst, state.resolve(&self.network, dst))
    }

    /// [`Upstream::route`] once `dst` was looked up as `destination`.
    fn route_to<D: Directory + ?Sized>(
        &self,
        state: &D,
        source: Option<&Arc<MeshWorkload>>,
        dst: SocketAddr,
        destination: Destination,
    ) -> Result<Route, UpstreamError> {
        match destination {
            Destination::Service { service, port } => match service.proto().waypoint.as_ref() {
                Some(waypoint) => {
                    self.waypoint_route(state, waypoint, dst, None, Some(service.clone()))
                }
                None => self.service_route(service, port, source),
            },
            Destination::Workload(workload) => {
                let is_self = source.is_some_and(|s| Arc::ptr_eq(s, &workload));
                match workload.proto().waypoint.as_ref() {
                    Some(waypoint) if !is_self => {
                        self.waypoint_route(state, waypoint, dst, Some(workload.clone()), None)
                    }
                    _ => Ok(self.workload_route(workload, dst, None)),
                }
            }
            Destination::Unknown => Ok(Route::Plain {
                addr: dst,
                destination: None,
                service: None,
            }),
        }
    }

    /// Routes to an endpoint of `service` chosen by the load balancer, ignoring the
    /// service's waypoint (what a waypoint calls after looking the service up by VIP or
    /// hostname).
    ///
    /// # Errors
    /// No usable endpoint, or the endpoint has no address.
    pub fn service_route(
        &self,
        service: Arc<MeshService>,
        port: PortMapping,
        source: Option<&Arc<MeshWorkload>>,
    ) -> Result<Route, UpstreamError> {
        let (workload, target_port) = choose(&service, port, source)?;
        let ip = first_address(&workload)?;
        let addr = SocketAddr::new(ip, target_port);
        Ok(self.workload_route(workload, addr, Some(service)))
    }

    /// [`Upstream::route`], with an endpoint known by host name only (a ServiceEntry's
    /// `resolution: DNS` host) reached at the address its name resolves to.
    ///
    /// # Errors
    /// As [`Upstream::route`], and a name that does not resolve to a usable address.
    pub async fn route_resolving<D: Directory + ?Sized>(
        &self,
        state: &D,
        source: Option<&Arc<MeshWorkload>>,
        dst: SocketAddr,
    ) -> Result<Route, UpstreamError> {
        match state.resolve(&self.network, dst) {
            Destination::Service { service, port } if service.proto().waypoint.is_none() => {
                self.service_route_resolving(service, port, source, Some(dst.ip()))
                    .await
            }
            destination => self.route_to(state, source, dst, destination),
        }
    }

    /// [`Upstream::service_route`], resolving an endpoint known by host name only. When
    /// the name has addresses of both families, the connection goes to one of the family
    /// of `dialled` (the address the client dialled, when known), else of the service's
    /// first VIP, else IPv4.
    ///
    /// # Errors
    /// No usable endpoint, an endpoint with neither address nor name, a name that does not
    /// resolve to a usable address.
    pub async fn service_route_resolving(
        &self,
        service: Arc<MeshService>,
        port: PortMapping,
        source: Option<&Arc<MeshWorkload>>,
        dialled: Option<IpAddr>,
    ) -> Result<Route, UpstreamError> {
        let (workload, target_port) = choose(&service, port, source)?;
        let ip = match first_address(&workload) {
            Ok(ip) => ip,
            Err(no_address) => {
                let host = &workload.proto().hostname;
                if host.is_empty() {
                    return Err(no_address);
                }
                let prefer_ipv6 = (dialled.or_else(|| service.first_vip()))
                    .is_some_and(|ip| ip.to_canonical().is_ipv6());
                let resolved = self.names.resolve(host, prefer_ipv6).await;
                resolved.map_err(|reason| UpstreamError::Unresolved {
                    host: host.clone(),
                    workload: workload_ref(&workload),
                    reason,
                })?
            }
        };
        let addr = SocketAddr::new(ip, target_port);
        Ok(self.workload_route(workload, addr, Some(service)))
    }

    /// HBONE to `addr` when the workload speaks it, plain TCP otherwise.
    fn workload_route(
        &self,
        workload: Arc<MeshWorkload>,
        addr: SocketAddr,
        service: Option<Arc<MeshService>>,
    ) -> Route {
        if workload.speaks_hbone() {
            Route::Hbone {
                tunnel: SocketAddr::new(addr.ip(), self.hbone_port),
                authority: addr,
                peer: Arc::clone(&workload),
                destination: Some(workload),
                service,
            }
        } else {
            Route::Plain {
                addr,
                destination: Some(workload),
                service,
            }
        }
    }

    fn waypoint_route<D: Directory + ?Sized>(
        &self,
        state: &D,
        waypoint: &GatewayAddress,
        dst: SocketAddr,
        destination: Option<Arc<MeshWorkload>>,
        service: Option<Arc<MeshService>>,
    ) -> Result<Route, UpstreamError> {
        let port = u16::try_from(waypoint.hbone_mtls_port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(self.hbone_port);
        let peer = find_waypoint(state, waypoint, port, dst)?;
        let ip = first_address(&peer)?;
        Ok(Route::Hbone {
            tunnel: SocketAddr::new(ip, port),
            authority: dst,
            peer,
            destination,
            service,
        })
    }

    /// Opens `route` for `client`: the pooled HBONE stream, or the TCP connection.
    ///
    /// # Errors
    /// The client has no identity or TLS for HBONE, the tunnel or the peer refused, the
    /// TCP connect failed.
    pub async fn connect<C: Client>(
        &self,
        route: &Route,
        client: &C,
    ) -> Result<UpstreamConnection, UpstreamError> {
        match route {
            Route::Hbone {
                tunnel,
                authority,
                peer,
                ..
            } => {
                let stream = self.tunnel(*tunnel, *authority, peer, client).await?;
                Ok(UpstreamConnection::Hbone(stream))
            }
            Route::Plain { addr, .. } => match client.connect_plain(*addr).await {
                Ok(stream) => Ok(UpstreamConnection::Tcp(stream)),
                Err(source) => Err(UpstreamError::Connect {
                    addr: *addr,
                    source,
                }),
            },
        }
    }

    async fn tunnel<C: Client>(
        &self,
        tunnel: SocketAddr,
        authority: SocketAddr,
        peer: &MeshWorkload,
        client: &C,
    ) -> Result<HboneStream, UpstreamError> {
        let src_id = client
            .identity()
            .ok_or(UpstreamError::NoIdentity { tunnel })?;
        let dst_id = peer.identity();
        let tls = client.tls(dst_id).await.map_err(UpstreamError::Client)?;
        let target = TunnelTarget {
            socket_factory: client.socket_factory(),
            ..TunnelTarget::new(tunnel, tls)
        };
        let request = client.request(authority);
        let key = (src_id.clone(), dst_id.clone(), client.source_ip(), tunnel);
        self.pool
            .connect(key, &target, &request)
            .await
            .map_err(|source| UpstreamError::Tunnel {
                tunnel,
                source: Box::new(source),
            })
    }
}

/// The workload that terminates tunnels for `waypoint` (an endpoint of the waypoint's
/// service, or the workload at its address).
fn find_waypoint<D: Directory + ?Sized>(
    state: &D,
    waypoint: &GatewayAddress,
    port: u16,
    dst: SocketAddr,
) -> Result<Arc<MeshWorkload>, UpstreamError> {
    let missing = |name: String| UpstreamError::WaypointMissing {
        waypoint: name,
        destination: dst,
    };
    match &waypoint.destination {
        Some(GatewayDestination::Address(addr)) => {
            let ip = ip_from_bytes(&addr.address)
                .ok_or_else(|| missing(format!("{:?}", addr.address)))?;
            match state.service_by_vip(&addr.network, ip) {
                Some(svc) => pick_waypoint_endpoint(svc, port),
                None => state
                    .workload_by_addr(&addr.network, ip)
                    .cloned()
                    .ok_or_else(|| missing(ip.to_string())),
            }
        }
        Some(GatewayDestination::Hostname(host)) => {
            let svc = with_service_key(&host.namespace, &host.hostname, |key| {
                state.service_by_key(key)
            });
            let svc =
                svc.ok_or_else(|| missing(format!("{}/{}", host.namespace, host.hostname)))?;
            pick_waypoint_endpoint(svc, port)
        }
        None => Err(missing("<empty waypoint address>".into())),
    }
}

/// Longest `<namespace>/<hostname>` key built on the stack (a DNS name is at most 253
/// bytes, a namespace 63); a longer one is formatted on the heap.
const STACK_KEY: usize = 320;

/// Calls `lookup` with the service key `<namespace>/<hostname>`, built without a heap
/// allocation: routing through a waypoint named by hostname does this per connection.
fn with_service_key<T>(namespace: &str, hostname: &str, lookup: impl FnOnce(&str) -> T) -> T {
    let len = namespace.len() + 1 + hostname.len();
    if len > STACK_KEY {
        return lookup(&format!("{namespace}/{hostname}"));
    }
    let mut buf = [0u8; STACK_KEY];
    buf[..namespace.len()].copy_from_slice(namespace.as_bytes());
    buf[namespace.len()] = b'/';
    buf[namespace.len() + 1..len].copy_from_slice(hostname.as_bytes());
    // Two strings joined by an ASCII byte are UTF-8.
    match std::str::from_utf8(&buf[..len]) {
        Ok(key) => lookup(key),
        Err(_) => lookup(&format!("{namespace}/{hostname}")),
    }
}

fn pick_waypoint_endpoint(
    service: &MeshService,
    port: u16,
) -> Result<Arc<MeshWorkload>, UpstreamError> {
    let mapping = service.port(port).unwrap_or(PortMapping {
        service_port: port,
        target_port: None,
    });
    let choice = lb::choose_endpoint(service, mapping, None, &mut rand::rng())?;
    Ok(choice.endpoint.workload)
}

fn first_address(workload: &MeshWorkload) -> Result<IpAddr, UpstreamError> {
    workload
        .addresses()
        .first()
        .copied()
        .ok_or_else(|| UpstreamError::NoAddress {
            workload: workload_ref(workload),
        })
}

/// The endpoint of `service` the load balancer chooses for `source`, and its target port.
fn choose(
    service: &MeshService,
    port: PortMapping,
    source: Option<&Arc<MeshWorkload>>,
) -> Result<(Arc<MeshWorkload>, u16), UpstreamError> {
    let choice = lb::choose_endpoint(service, port, source.map(|s| &**s), &mut rand::rng())?;
    Ok((choice.endpoint.workload, choice.target_port))
}

/// `<namespace>/<name>` of `workload`, for errors.
fn workload_ref(workload: &MeshWorkload) -> String {
    format!("{}/{}", workload.proto().namespace, workload.proto().name)
}

/// An IP address from its 4 or 16 raw bytes.
#[must_use]
pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::with_service_key;

    #[test]
    fn service_key_is_namespace_slash_hostname_on_the_stack_and_beyond() {
        let key = with_service_key("shop", "waypoint.shop.svc.cluster.local", str::to_owned);
        assert_eq!(key, "shop/waypoint.shop.svc.cluster.local");
        let long = "h".repeat(400);
        let key = with_service_key("ns", &long, str::to_owned);
        assert_eq!(key, format!("ns/{long}"));
        let exact = "x".repeat(super::STACK_KEY - 3);
        let key = with_service_key("ab", &exact, str::to_owned);
        assert_eq!(key.len(), super::STACK_KEY);
        assert_eq!(key, format!("ab/{exact}"));
    }
}
