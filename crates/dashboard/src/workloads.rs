//! The mesh as the control plane translated it (`/debug/configz`, read back into the wire
//! messages): workloads with identity, node, enrollment and waypoint, the authorization
//! policies that select each, and `weft x authz check`'s answer for a caller and request
//! (`weft_control::authz`: the waypoint's and the node proxies' own evaluators over the same
//! resources).

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_control::authz::{self, AuthzAnswer, Request};
use weft_control::translate::{ADDRESS, AUTHORIZATION, Output};
use weft_identity::SpiffeId;
use weft_node::authz_check::{AuthzQuery, Source, Target};
use weft_proto::security::{Action, Authorization, Scope};
use weft_proto::workload::gateway_address::Destination;
use weft_proto::workload::{Address, GatewayAddress, Workload, address};

/// The translated resources the dashboard reads.
#[derive(Debug, Clone, Default)]
pub struct MeshConfig {
    /// Every `istio.workload.Address`.
    pub addresses: Vec<Address>,
    /// Every `istio.security.Authorization`.
    pub authorizations: Vec<Authorization>,
    /// The translation they came from (with the waypoints' L7 resources), for checks.
    pub output: Output,
}

impl MeshConfig {
    /// Reads the `addresses`, `authorizations` and `waypoints` sections of
    /// `/debug/configz`.
    ///
    /// # Errors
    /// A resource that is not valid proto JSON of its type, naming it.
    pub fn from_configz(configz: &Value) -> Result<Self, String> {
        let output = authz::output_from_configz(configz)?;
        let decode = |err: prost::DecodeError| err.to_string();
        Ok(Self {
            addresses: output.decode_all(ADDRESS.type_url).map_err(decode)?,
            authorizations: output.decode_all(AUTHORIZATION.type_url).map_err(decode)?,
            output,
        })
    }

    fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.addresses.iter().filter_map(|a| match &a.r#type {
            Some(address::Type::Workload(w)) => Some(w),
            _ => None,
        })
    }

    /// `weft x authz check`'s answer: may `from` connect to `to` on `port`, and (when a
    /// waypoint serves it) may it send `request`?
    ///
    /// # Errors
    /// Bad input (target, identity) or resources the proxies would reject.
    pub fn check(
        &self,
        to: &str,
        port: u16,
        from: &str,
        request: &Request<'_>,
    ) -> Result<AuthzAnswer, String> {
        let to: Target = to.parse().map_err(|err| format!("to {to:?}: {err}"))?;
        let from = if from.is_empty() || from == "plaintext" {
            Source::Plaintext
        } else {
            Source::Identity(
                SpiffeId::parse_uri_or_principal(from)
                    .map_err(|err| format!("from {from:?}: {err}"))?,
            )
        };
        let query = AuthzQuery {
            to,
            port,
            from,
            source_ip: None,
        };
        authz::check_request(&self.output, self.trust_domain(), &query, request)
    }

    /// The mesh's trust domain, as its workloads carry it (`cluster.local` without any).
    fn trust_domain(&self) -> &str {
        self.workloads()
            .map(|w| w.trust_domain.as_str())
            .find(|td| !td.is_empty())
            .unwrap_or("cluster.local")
    }
}

/// One pod (or other workload) as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadView {
    /// `<namespace>/<name>`.
    pub id: String,
    /// The graph node it belongs to: `<namespace>/<workload name>`.
    pub group: String,
    /// Namespace.
    pub namespace: String,
    /// SPIFFE identity.
    pub identity: String,
    /// Node it runs on.
    pub node: String,
    /// IP addresses.
    pub addresses: Vec<String>,
    /// In the mesh (HBONE).
    pub enrolled: bool,
    /// The waypoint it uses (its own or its services'), `<namespace>/<name>` when known.
    pub waypoint: Option<String>,
    /// The services it backs (`<namespace>/<hostname>`).
    pub services: Vec<String>,
    /// Ports its services send to (target ports), for the authz check form.
    pub ports: Vec<u32>,
    /// Policies that select it: `<namespace>/<name> ACTION`.
    pub policies: Vec<String>,
}

/// Every workload, by id.
#[must_use]
pub fn workloads(config: &MeshConfig) -> Vec<WorkloadView> {
    let by_ip: BTreeMap<IpAddr, &Workload> = config
        .workloads()
        .flat_map(|w| {
            w.addresses
                .iter()
                .filter_map(|a| ip(a))
                .map(move |ip| (ip, w))
        })
        .collect();
    let waypoint_name = |g: &GatewayAddress| waypoint_name(g, &by_ip);
    let service_waypoints: BTreeMap<String, String> = config
        .addresses
        .iter()
        .filter_map(|a| match &a.r#type {
            Some(address::Type::Service(s)) => {
                let waypoint = s.waypoint.as_ref().and_then(waypoint_name)?;
                Some((format!("{}/{}", s.namespace, s.hostname), waypoint))
            }
            _ => None,
        })
        .collect();
    let mut views: Vec<WorkloadView> = config
        .workloads()
        .map(|w| {
            let services: Vec<String> = w.services.keys().cloned().collect();
            let waypoint = w.waypoint.as_ref().and_then(waypoint_name).or_else(|| {
                services
                    .iter()
                    .find_map(|s| service_waypoints.get(s).cloned())
            });
            let mut ports: Vec<u32> = w
                .services
                .values()
                .flat_map(|p| p.ports.iter().map(|p| p.target_port))
                .collect();
            ports.sort_unstable();
            ports.dedup();
            WorkloadView {
                id: format!("{}/{}", w.namespace, w.name),
                group: group_of(w),
                namespace: w.namespace.clone(),
                identity: format!(
                    "spiffe://{}/ns/{}/sa/{}",
                    w.trust_domain, w.namespace, w.service_account
                ),
                node: w.node.clone(),
                addresses: w
                    .addresses
                    .iter()
                    .filter_map(|a| ip(a))
                    .map(|ip| ip.to_string())
                    .collect(),
                enrolled: w.tunnel_protocol == weft_proto::workload::TunnelProtocol::Hbone as i32,
                waypoint,
                services,
                ports,
                policies: selecting_policies(config, w),
            }
        })
        .collect();
    views.sort_by(|a, b| a.id.cmp(&b.id));
    views
}

/// The graph node of a workload: `<namespace>/<workload name>` (its `name` without one),
/// as the metrics' `*_workload` labels name it.
fn group_of(w: &Workload) -> String {
    let name = if w.workload_name.is_empty() {
        &w.name
    } else {
        &w.workload_name
    };
    format!("{}/{name}", w.namespace)
}

/// Policies the node proxy applies to `w`: those it lists, its namespace's and the
/// mesh-wide ones.
fn selecting_policies(config: &MeshConfig, w: &Workload) -> Vec<String> {
    config
        .authorizations
        .iter()
        .filter(|p| {
            let key = format!("{}/{}", p.namespace, p.name);
            match Scope::try_from(p.scope) {
                Ok(Scope::Global) => true,
                Ok(Scope::Namespace) => p.namespace == w.namespace,
                _ => w.authorization_policies.contains(&key),
            }
        })
        .map(|p| {
            let action = Action::try_from(p.action).map_or("?", |a| a.as_str_name());
            format!("{}/{} {action}", p.namespace, p.name)
        })
        .collect()
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The waypoint a workload or service names: the workload at its address (as the graph
/// names it), else the address or `<namespace>/<hostname>`.
fn waypoint_name(waypoint: &GatewayAddress, by_ip: &BTreeMap<IpAddr, &Workload>) -> Option<String> {
    match waypoint.destination.as_ref()? {
        Destination::Address(a) => {
            let ip = ip(&a.address)?;
            Some(by_ip.get(&ip).map_or(ip.to_string(), |w| group_of(w)))
        }
        Destination::Hostname(h) => Some(format!("{}/{}", h.namespace, h.hostname)),
    }
}
