//! The waypoint half of `weft x authz check`: given a translation, which waypoint (if any)
//! a request to a workload's port goes through, and what that waypoint's L7 policies
//! decide for one request (the same `weft-policy` evaluation the waypoint runs, over the
//! policies of its `weft.l7.v1.Waypoint` resource, with the destination the waypoint sees:
//! the service's address and port for service traffic). Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use weft_identity::SpiffeId;
use weft_policy::{CompiledPolicy, ConnectionFacts, Decision, PolicySet, RequestFacts, Transport};
use weft_proto::l7::Waypoint;
use weft_proto::workload::{Address, Workload, address};
use weft_proto::{ADDRESS_TYPE_URL, WAYPOINT_TYPE_URL};

use crate::translate::{Output, ResourceKey};

/// One request to decide at the waypoint.
#[derive(Debug, Clone)]
pub struct L7Query<'a> {
    /// uid of the destination workload.
    pub workload: &'a str,
    /// The destination (target) port on the workload.
    pub port: u16,
    /// The service the request is addressed to, `<namespace>/<name>` or a service key
    /// (`None`: the first, by key, of the workload's services behind a waypoint).
    pub service: Option<&'a str>,
    /// The client's identity (`None`: plaintext).
    pub source: Option<SpiffeId>,
    /// The client's address, also the original client address of the request (`None`: the
    /// unspecified address, which no positive address rule matches).
    pub source_ip: Option<IpAddr>,
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Path (with query, if any).
    pub path: &'a str,
    /// Host / authority; `None`: the service's hostname.
    pub host: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// `<iss>/<sub>` of a valid JWT the request carries, if any.
    pub request_principal: Option<&'a str>,
}

/// What the waypoint decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L7Result {
    /// The waypoint, `<namespace>/<gateway>`.
    pub waypoint: String,
    /// The service key the request was addressed to (`None`: to the workload itself).
    pub service: Option<String>,
    /// The waypoint's own identity: what the destination's node proxy sees as the peer.
    pub identity: SpiffeId,
    /// The decision of the waypoint's policies for the request.
    pub decision: Decision,
}

/// Why the question cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum L7CheckError {
    /// A translated resource did not decode or compile (a translation bug).
    #[error("translated resource {0} is invalid: {1}")]
    Invalid(String, String),
}

/// The waypoint serving `query` and its decision, or `None` when no waypoint serves the
/// workload's port (node proxies then decide at L4 alone).
///
/// # Errors
/// When a translated resource is invalid.
pub fn check_at_waypoint(
    output: &Output,
    trust_domain: &str,
    query: &L7Query<'_>,
) -> Result<Option<L7Result>, L7CheckError> {
    let Some(workload) = decode_address(output, query.workload)?.and_then(as_workload) else {
        return Ok(None);
    };
    let waypoints: Vec<Waypoint> = output
        .decode_all(WAYPOINT_TYPE_URL)
        .map_err(|e| invalid("waypoints", &e))?;
    let Some(via) = serving(&waypoints, &workload, query.port, query.service) else {
        return Ok(None);
    };
    let name = format!("{}/{}", via.waypoint.namespace, via.waypoint.name);
    let identity = SpiffeId::new(trust_domain, &via.waypoint.namespace, &via.waypoint.name)
        .map_err(|e| invalid(&name, &e))?;
    let set = policy_set(via.waypoint, via.service.as_deref()).map_err(|e| invalid(&name, &e))?;
    let destination = original_destination(output, &workload, &via)?;
    let source_ip = query.source_ip.unwrap_or(match destination.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let host = query.host.map(str::to_owned).unwrap_or_else(|| {
        let hostname = via.service.as_deref().and_then(|key| key.split_once('/'));
        hostname.map_or_else(|| destination.to_string(), |(_, h)| h.to_owned())
    });
    let facts = ConnectionFacts {
        source_identity: query.source.clone(),
        source_ip,
        destination,
        transport: if query.source.is_some() {
            Transport::Hbone
        } else {
            Transport::Plaintext
        },
    };
    let request = RequestFacts {
        method: query.method,
        host: &host,
        path: query.path,
        headers: query.headers,
        request_principal: query.request_principal,
        remote_ip: source_ip,
    };
    Ok(Some(L7Result {
        waypoint: name,
        service: via.service,
        identity,
        decision: set.evaluate_with(&facts, Some(&request)),
    }))
}

fn invalid(name: &str, error: &dyn std::fmt::Display) -> L7CheckError {
    L7CheckError::Invalid(name.to_owned(), error.to_string())
}

fn decode_address(output: &Output, name: &str) -> Result<Option<Address>, L7CheckError> {
    let Some(resource) = output.get(&ResourceKey::new(ADDRESS_TYPE_URL, name)) else {
        return Ok(None);
    };
    resource.decode().map(Some).map_err(|e| invalid(name, &e))
}

fn as_workload(address: Address) -> Option<Workload> {
    match address.r#type {
        Some(address::Type::Workload(workload)) => Some(workload),
        _ => None,
    }
}

/// What the waypoint sees as the destination, as in the HBONE authority it is sent: the
/// service's address and port for service traffic, else the workload's address.
fn original_destination(
    output: &Output,
    workload: &Workload,
    via: &Via<'_>,
) -> Result<SocketAddr, L7CheckError> {
    let service_ip = match via.service.as_deref() {
        Some(key) => match decode_address(output, key)?.and_then(|a| a.r#type) {
            Some(address::Type::Service(service)) => {
                service.addresses.first().and_then(|a| ip_of(&a.address))
            }
            _ => None,
        },
        None => None,
    };
    let workload_ip = workload.addresses.first().and_then(|a| ip_of(a));
    let ip = service_ip
        .or(workload_ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(SocketAddr::new(ip, via.port))
}

/// An address from its 4 or 16 raw bytes.
fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// How a request reaches the waypoint.
struct Via<'w> {
    waypoint: &'w Waypoint,
    /// The service key, for service traffic.
    service: Option<String>,
    /// The destination port the waypoint sees: the service port, or the workload's port.
    port: u16,
}

/// The waypoint taking traffic to `port` of `workload`: through a service of the workload
/// bound to a waypoint (preferred: callers address services; the first by key when several
/// are), else the workload's own.
fn serving<'w>(
    waypoints: &'w [Waypoint],
    workload: &Workload,
    target_port: u16,
    wanted: Option<&str>,
) -> Option<Via<'w>> {
    let port = u32::from(target_port);
    let mut services: Vec<_> = workload
        .services
        .iter()
        .filter(|(key, _)| wanted.is_none_or(|w| names_service(key, w)))
        .collect();
    services.sort_by_key(|(key, _)| *key);
    for (key, ports) in services {
        let on_port = ports
            .ports
            .iter()
            .find(|p| p.target_port == port || (p.target_port == 0 && p.service_port == port));
        let Some(service_port) = on_port.and_then(|p| u16::try_from(p.service_port).ok()) else {
            continue;
        };
        let bound = waypoints
            .iter()
            .find(|w| w.services.iter().any(|s| &s.key == key));
        if let Some(waypoint) = bound {
            return Some(Via {
                waypoint,
                service: Some(key.clone()),
                port: service_port,
            });
        }
    }
    let own = waypoints
        .iter()
        .find(|w| w.workloads.contains(&workload.uid));
    own.map(|waypoint| Via {
        waypoint,
        service: None,
        port: target_port,
    })
}

/// Whether `wanted` (`<namespace>/<name>` or a full key) names the service `key`
/// (`<namespace>/<hostname>`).
fn names_service(key: &str, wanted: &str) -> bool {
    key == wanted
        || key
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The waypoint's policies that apply to requests for `service`.
fn policy_set(
    waypoint: &Waypoint,
    service: Option<&str>,
) -> Result<PolicySet, weft_policy::ValidationError> {
    let applying = waypoint.policies.iter().filter(|p| {
        p.services.is_empty() || service.is_some_and(|s| p.services.iter().any(|k| k == s))
    });
    let compiled = applying
        .filter_map(|p| p.policy.as_ref())
        .map(|wire| {
            let name = format!("{}/{}", wire.namespace, wire.name);
            CompiledPolicy::compile(Some(&name), wire).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicySet::new(compiled, Vec::new()))
}
