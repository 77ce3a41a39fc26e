//! `weft.l7.v1.Waypoint`: one resource per waypoint `Gateway` (class `istio-waypoint`),
//! named `<namespace>/<gateway name>`, holding everything that waypoint enforces, resolved:
//!
//! - `services`: every Service (or ServiceEntry host) whose waypoint, as the workload API
//!   resolves it (`waypoint::waypoint_gateway`), is this Gateway, with its ports and their
//!   protocol (`appProtocol`, then the port name's prefix, else sniffed) and the HTTPRoutes
//!   and GRPCRoutes whose parentRefs name it ([`routes`]);
//! - `policies` and `jwt_rules`: AuthorizationPolicies and RequestAuthentications whose
//!   targetRefs name the Gateway or a bound service ([`policies`]);
//! - `workloads`: the workloads bound to it when it serves workload traffic.
//!
//! Dependencies: the unit records the Gateway, bound services, attached routes and policies
//! and every backend Service it looked up; [`affected_waypoints`] names the waypoints an
//! edited object attaches to now (the translator adds both).

pub(crate) mod backend_tls;
pub(crate) mod policies;
pub(crate) mod routes;

use super::context::{Context, Dep, ServiceSource, Unit};
use super::service::{app_protocol, entry_port, service_port};
use super::waypoint::{WAYPOINT_FOR_LABEL, WaypointUser, waypoint_gateway};
use super::{Resource, ResourceKey, Warning};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_api::gateway::WAYPOINT_CLASS;
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::WAYPOINT_TYPE_URL;
use weft_proto::l7::{Protocol, Service, ServicePort, Waypoint};
use weft_proto::workload::{AppProtocol, Port};

/// Which services and workloads each waypoint serves, computed once per snapshot.
#[derive(Debug, Default)]
pub(crate) struct WaypointIndex {
    /// Waypoint name (`<ns>/<gateway>`) -> bound service keys.
    services: BTreeMap<String, BTreeSet<String>>,
    /// Service key -> its waypoint's name.
    waypoint_of_service: HashMap<String, String>,
    /// Waypoint name -> bound workload uids.
    workloads: BTreeMap<String, Vec<String>>,
}

impl WaypointIndex {
    /// Resolves the waypoint of every service and workload of `context`.
    pub fn new(context: &Context<'_>) -> Self {
        let mut index = WaypointIndex::default();
        if waypoint_gateways(context.snapshot).next().is_none() {
            // Nothing can be bound: skip resolving every service and workload.
            return index;
        }
        for (key, sources) in &context.services {
            let Some(first) = sources.first() else {
                continue;
            };
            let (object, labels) = source_identity(first);
            let namespace = object.namespace.clone().unwrap_or_default();
            let user = WaypointUser::Service;
            if let Some(waypoint) = bound_to(context, &namespace, &labels, user, &object) {
                index
                    .waypoint_of_service
                    .insert(key.clone(), waypoint.clone());
                index
                    .services
                    .entry(waypoint)
                    .or_default()
                    .insert(key.clone());
            }
        }
        for (uid, info) in &context.workloads {
            let object = ObjectRef {
                kind: Kind::Pod,
                namespace: Some(info.namespace.clone()),
                name: uid.clone(),
            };
            let user = WaypointUser::Workload;
            let Some(labels) = info.waypoint_labels() else {
                continue;
            };
            if let Some(waypoint) = bound_to(context, &info.namespace, labels, user, &object) {
                index
                    .workloads
                    .entry(waypoint)
                    .or_default()
                    .push(uid.clone());
            }
        }
        index
    }

    /// The waypoint serving the service `key`, if any.
    pub fn waypoint_of(&self, key: &str) -> Option<&str> {
        self.waypoint_of_service.get(key).map(String::as_str)
    }
}

fn bound_to(
    context: &Context<'_>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    user: WaypointUser,
    object: &ObjectRef,
) -> Option<String> {
    let mut scratch = Unit::default();
    let gateway = waypoint_gateway(context, namespace, labels, user, object, &mut scratch)?;
    Some(format!(
        "{}/{}",
        gateway.namespace.unwrap_or_default(),
        gateway.name
    ))
}

/// The object behind a service source and its labels.
fn source_identity(source: &ServiceSource<'_>) -> (ObjectRef, BTreeMap<String, String>) {
    let (kind, metadata) = match source {
        ServiceSource::Kube(svc) => (Kind::Service, &svc.metadata),
        ServiceSource::Entry { entry, .. } => (Kind::ServiceEntry, &entry.metadata),
    };
    let object = ObjectRef {
        kind,
        namespace: Some(
            metadata
                .namespace
                .clone()
                .unwrap_or_else(|| weft_api::object::DEFAULT_NAMESPACE.to_owned()),
        ),
        name: metadata.name.clone().unwrap_or_default(),
    };
    (object, metadata.labels.clone().unwrap_or_default())
}

/// The key of a Waypoint resource.
pub(crate) fn waypoint_key(name: impl Into<String>) -> ResourceKey {
    ResourceKey::new(WAYPOINT_TYPE_URL, name)
}

/// The waypoint Gateways of a snapshot, as `(object, resource name)`.
pub(crate) fn waypoint_gateways(
    snapshot: &weft_api::ConfigSnapshot,
) -> impl Iterator<Item = (ObjectRef, String)> + '_ {
    snapshot
        .gateways()
        .filter(|(gateway, _)| gateway.spec.gateway_class_name == WAYPOINT_CLASS)
        .map(|(_, loaded)| {
            let object = loaded.object.object_ref();
            let name = format!(
                "{}/{}",
                object.namespace.as_deref().unwrap_or_default(),
                object.name
            );
            (object, name)
        })
}

/// Names of the Waypoint resources: one per waypoint Gateway.
pub(crate) fn waypoint_names(context: &Context<'_>) -> Vec<String> {
    waypoint_gateways(context.snapshot)
        .map(|(_, name)| name)
        .collect()
}

/// The Waypoint unit for `<ns>/<gateway>`.
pub(crate) fn translate_waypoint(context: &Context<'_>, name: &str) -> Unit {
    let mut unit = Unit::default();
    let Some((namespace, gateway)) = name.split_once('/') else {
        return unit;
    };
    let gateway_ref = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some(namespace.to_owned()),
        name: gateway.to_owned(),
    };
    unit.deps.push(Dep::Object(gateway_ref.clone()));
    let found = context
        .snapshot
        .get(Kind::Gateway, Some(namespace), gateway);
    let Some(Object::Gateway(gateway_object)) = found.map(|l| &l.object) else {
        return unit;
    };
    if gateway_object.spec.gateway_class_name != WAYPOINT_CLASS {
        return unit;
    }
    let trusted_hops =
        trusted_hops(gateway_object.metadata.annotations.as_ref()).unwrap_or_else(|message| {
            unit.warnings.push(Warning {
                object: gateway_ref.clone(),
                message,
            });
            0
        });
    let index = context.waypoint_index();
    let bound = index.services.get(name).cloned().unwrap_or_default();
    let mut services: Vec<Service> = bound
        .iter()
        .filter_map(|key| bound_service(context, key, &mut unit))
        .collect();
    routes::attach_routes(context, name, &mut services, &mut unit);
    let target = policies::Target {
        gateway: &gateway_ref,
        class: WAYPOINT_CLASS,
        services: &bound,
    };
    let waypoint = Waypoint {
        namespace: namespace.to_owned(),
        name: gateway.to_owned(),
        services,
        policies: policies::authorization_policies(context, &target, &mut unit),
        jwt_rules: policies::jwt_rules(context, &target, &mut unit),
        trusted_hops,
        workloads: index.workloads.get(name).cloned().unwrap_or_default(),
        backend_tls: backend_tls::backend_tls_for(context, &bound, &mut unit),
    };
    unit.resource = Some(Resource::encode(name.to_owned(), Vec::new(), &waypoint));
    unit
}

/// Istio's per-proxy settings annotation; its `gatewayTopology.numTrustedProxies` says how
/// many proxies in front of the mesh add `X-Forwarded-For` entries.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

/// `numTrustedProxies` of the Gateway's proxy config (0 when unset), or why it is unusable.
pub(crate) fn trusted_hops(annotations: Option<&BTreeMap<String, String>>) -> Result<u32, String> {
    let Some(text) = annotations.and_then(|a| a.get(PROXY_CONFIG_ANNOTATION)) else {
        return Ok(0);
    };
    let config = weft_api::yaml::parse(text).map_err(|e| {
        format!("annotation {PROXY_CONFIG_ANNOTATION} is not YAML ({e}); no proxy is trusted")
    })?;
    let Some(hops) = config
        .as_ref()
        .and_then(|c| c.get("gatewayTopology")?.get("numTrustedProxies"))
    else {
        return Ok(0);
    };
    if hops.is_null() {
        return Ok(0);
    }
    hops.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "annotation {PROXY_CONFIG_ANNOTATION}: gatewayTopology.numTrustedProxies must \
                 be a non-negative integer; no proxy is trusted"
            )
        })
}

/// The bound service `key` with its ports (routes are attached later).
fn bound_service(context: &Context<'_>, key: &str, unit: &mut Unit) -> Option<Service> {
    let source = context.services.get(key)?.first()?;
    let (object, _) = source_identity(source);
    unit.deps.push(Dep::Object(object.clone()));
    let (hostname, ports) = match source {
        ServiceSource::Kube(svc) => {
            let spec_ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
            let ports = spec_ports
                .map(|p| l7_port(&service_port(p), p.name.as_deref()))
                .collect();
            (super::kube_hostname(svc, context.options), ports)
        }
        ServiceSource::Entry { entry, host } => {
            let ports = entry.spec.ports.iter().flatten();
            let ports = ports
                .map(|p| l7_port(&entry_port(p), p.name.as_deref()))
                .collect();
            ((*host).to_owned(), ports)
        }
    };
    Some(Service {
        key: key.to_owned(),
        namespace: object.namespace.clone().unwrap_or_default(),
        name: object.name,
        hostname,
        ports,
        routes: Vec::new(),
    })
}

fn l7_port(port: &Port, name: Option<&str>) -> ServicePort {
    let protocol = AppProtocol::try_from(port.app_protocol).unwrap_or(AppProtocol::Unknown);
    ServicePort {
        port: port.service_port,
        target_port: port.target_port,
        protocol: l7_protocol(protocol).into(),
        name: name.unwrap_or_default().to_owned(),
    }
}

/// How the waypoint parses a port of this application protocol (TLS passes through as TCP).
fn l7_protocol(protocol: AppProtocol) -> Protocol {
    match protocol {
        AppProtocol::Http11 => Protocol::Http,
        AppProtocol::Http2 => Protocol::Http2,
        AppProtocol::Grpc => Protocol::Grpc,
        AppProtocol::Tcp | AppProtocol::Tls => Protocol::Tcp,
        AppProtocol::Unknown => Protocol::Detect,
    }
}

/// The protocol a Kubernetes service port is parsed with at a waypoint.
#[must_use]
pub fn port_protocol(app: Option<&str>, port_name: Option<&str>) -> Protocol {
    l7_protocol(app_protocol(app, port_name))
}

/// Waypoint resources an edit of `object` may affect, judged on the snapshot after it (the
/// ones it affected before are found through recorded dependencies).
pub(crate) fn affected_waypoints(context: &Context<'_>, object: &ObjectRef) -> Vec<ResourceKey> {
    let all = || {
        waypoint_names(context)
            .into_iter()
            .map(waypoint_key)
            .collect()
    };
    let names: Vec<String> = match object.kind {
        Kind::Namespace | Kind::ReferenceGrant => return all(),
        Kind::Service | Kind::ServiceEntry => {
            let produced = context.produced_by.get(object).into_iter().flatten();
            let index = context.waypoint_index();
            produced
                .filter_map(|key| index.waypoint_of(&key.name).map(str::to_owned))
                .collect()
        }
        Kind::HttpRoute | Kind::GrpcRoute => routes::waypoints_of_route(context, object),
        Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
            policies::waypoints_of_policy(context, object)
        }
        Kind::BackendTlsPolicy => {
            let index = context.waypoint_index();
            let keys = backend_tls::services_targeted(context, object);
            keys.iter()
                .filter_map(|key| index.waypoint_of(key).map(str::to_owned))
                .collect()
        }
        _ => Vec::new(),
    };
    names.into_iter().map(waypoint_key).collect()
}

/// Waypoints that take workload traffic (their `workloads` list follows pod changes).
pub(crate) fn workload_waypoints(context: &Context<'_>) -> Vec<ResourceKey> {
    context
        .snapshot
        .gateways()
        .filter(|(gateway, _)| gateway.spec.gateway_class_name == WAYPOINT_CLASS)
        .filter(|(gateway, _)| {
            let labels = gateway.metadata.labels.as_ref();
            let serves = labels.and_then(|l| l.get(WAYPOINT_FOR_LABEL));
            matches!(serves.map(String::as_str), Some("workload" | "all"))
        })
        .map(|(_, loaded)| {
            let object = loaded.object.object_ref();
            let namespace = object.namespace.unwrap_or_default();
            waypoint_key(format!("{namespace}/{}", object.name))
        })
        .collect()
}
