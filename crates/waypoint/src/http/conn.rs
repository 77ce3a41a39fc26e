//! The downstream side of a request, what the one request pipeline needs to know about the
//! connection it arrived on: a waypoint's HBONE [`Tunnel`] (the caller's mesh identity, the
//! original destination and the bound service it names) or a gateway's client connection
//! (client address, listener port, SNI, no mesh identity), whose request is matched to one
//! of the port's listeners by its Host. Either way the result is a route source — a
//! compiled [`BoundService`] whose routes, policies and JWT rules the pipeline applies.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use weft_node::telemetry::{ConnectionEnds, ConnectionLabels, Reporter};
use weft_policy::{ConnectionFacts, Transport};
use weft_upstream::{MeshService, MeshWorkload};

use super::forward::Backend;
use super::local::Failure;
use super::target::Target;
use crate::Waypoint;
use crate::config::{BoundService, WaypointConfig};
use crate::gateway::{Downstream, Gateway};
use crate::tunnel::{Target as TunnelTarget, Tunnel};

/// A gateway client connection on one listener port.
#[derive(Debug)]
pub(crate) struct GatewayConn {
    /// The gateway (its listeners by port, current configuration).
    pub gateway: Gateway,
    /// The listener port the connection arrived on.
    pub port: u16,
    /// Client address, SNI, TLS.
    pub downstream: Downstream,
    /// The gateway's own workload (source labels), looked up when the connection opened.
    pub own_workload: Option<Arc<MeshWorkload>>,
}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    /// A waypoint's HBONE tunnel.
    Tunnel(Arc<Tunnel>),
    /// A gateway's client connection.
    Gateway(Arc<GatewayConn>),
}

/// What the request is addressed to, in the configuration in force.
pub(crate) struct Scope {
    /// The bound service (waypoint) or listener (gateway) whose routes and policies apply.
    pub service: Option<Arc<BoundService>>,
    /// The port routes are selected for.
    pub port: u16,
}

impl Conn {
    /// The route source of a request for `target` in `config`: the tunnel's bound service,
    /// or the gateway listener chosen by Host (and SNI). Failures answer 404 or 421.
    pub fn scope(&self, config: &WaypointConfig, target: &Target) -> Result<Scope, Failure> {
        match self {
            Self::Tunnel(tunnel) => {
                // The configuration in force now, not the one the tunnel was opened under:
                // a route or policy change applies to the next request on the connection.
                let service = match tunnel.service() {
                    Some(bound) => Some(Arc::clone(
                        config.service(&bound.key).ok_or_else(Failure::no_route)?,
                    )),
                    None => None,
                };
                Ok(Scope {
                    service,
                    port: tunnel.destination.port(),
                })
            }
            Self::Gateway(conn) => {
                let service = conn.gateway.with_listener_key(
                    conn.port,
                    &target.host,
                    &conn.downstream,
                    |key| config.service(key).map(Arc::clone),
                )?;
                Ok(Scope {
                    service: Some(service.ok_or_else(Failure::no_route)?),
                    port: conn.port,
                })
            }
        }
    }

    /// The caller's address (the tunnel's source workload, or the TCP peer).
    pub fn source_ip(&self) -> IpAddr {
        match self {
            Self::Tunnel(tunnel) => tunnel.source_ip,
            Self::Gateway(conn) => conn.downstream.peer.ip(),
        }
    }

    /// Where the request is addressed when it names no host.
    pub fn destination(&self) -> SocketAddr {
        match self {
            Self::Tunnel(tunnel) => tunnel.destination,
            Self::Gateway(conn) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), conn.port),
        }
    }

    /// The backend of a request no route matched when no route is attached: a tunnel's
    /// original destination; a gateway has none (404).
    pub fn default_backend(&self) -> Option<Backend> {
        let Self::Tunnel(tunnel) = self else {
            return None;
        };
        Some(match &tunnel.target {
            TunnelTarget::Service { mesh, port, .. } => Backend::Service {
                service: Arc::clone(mesh),
                port: *port,
            },
            TunnelTarget::Workload(workload) => Backend::Workload {
                workload: Arc::clone(workload),
                addr: tunnel.destination,
            },
        })
    }

    /// The connection facts policies see (a gateway client has no mesh identity).
    pub fn facts(&self) -> ConnectionFacts {
        match self {
            Self::Tunnel(tunnel) => crate::tcp::connection_facts(tunnel),
            Self::Gateway(conn) => ConnectionFacts {
                source_identity: None,
                source_ip: conn.downstream.peer.ip(),
                destination: self.destination(),
                transport: Transport::Plaintext,
            },
        }
    }

    /// The namespace policy decisions are counted under.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Tunnel(tunnel) => match &tunnel.target {
                TunnelTarget::Service { mesh, .. } => &mesh.proto().namespace,
                TunnelTarget::Workload(workload) => &workload.proto().namespace,
            },
            Self::Gateway(conn) => &conn.gateway.engine().options().namespace,
        }
    }

    /// The namespace of the caller's mesh identity, which chooses its consumer routes
    /// (none for a gateway client).
    pub fn caller_namespace(&self) -> Option<&str> {
        match self {
            Self::Tunnel(tunnel) => Some(tunnel.source_identity.namespace()),
            Self::Gateway(_) => None,
        }
    }

    /// The caller's principal for logs (`-` for a gateway client).
    pub fn principal(&self) -> String {
        match self {
            Self::Tunnel(tunnel) => tunnel.source_identity.to_string(),
            Self::Gateway(_) => "-".to_owned(),
        }
    }

    /// `x-forwarded-proto` of the downstream connection.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Gateway(conn) if conn.downstream.tls => "https",
            _ => "http",
        }
    }

    /// Whether the request comes from outside the mesh (a gateway client): its
    /// `x-forwarded-for` gets the client's address appended and `x-forwarded-proto` is set.
    pub fn is_edge(&self) -> bool {
        matches!(self, Self::Gateway(_))
    }

    /// The standard metric labels of a request that went to `endpoint` of `service`:
    /// a waypoint reports the tunnel's caller as source; a gateway reports itself as the
    /// source (`reporter="source"`) and the backend service as destination.
    pub fn labels(
        &self,
        waypoint: &Waypoint,
        endpoint: Option<&MeshWorkload>,
        service: Option<&MeshService>,
    ) -> ConnectionLabels {
        match self {
            Self::Tunnel(tunnel) => crate::tcp::labels(tunnel, endpoint),
            Self::Gateway(conn) => ConnectionLabels::derive(&ConnectionEnds {
                reporter: Reporter::Source,
                source_workload: conn.own_workload.as_deref(),
                source_identity: Some(waypoint.identity()),
                destination_workload: endpoint,
                destination_service: service,
                transport: if endpoint.is_some_and(MeshWorkload::speaks_hbone) {
                    Transport::Hbone
                } else {
                    Transport::Plaintext
                },
            }),
        }
    }
}
