//! The Gateway API attachment model and status conditions: which Gateways weft runs, how
//! routes attach to their listeners, and every object's status as the Gateway API spec
//! defines it. One model, used by the control plane's translation (only what status says is
//! attached is served), `weft x status`, `weft status --gateways` and `weft analyze`.
//!
//! - [`gateway_controller`] / [`weft_gateways`]: a Gateway is weft's when its class is a
//!   GatewayClass whose `controllerName` is [`WEFT_CONTROLLER`] or [`ISTIO_CONTROLLER`], or
//!   one of the built-in classes `weft` and `istio` when no GatewayClass of that name exists.
//! - [`attach`]: per listener, whether it is served and which routes (with the intersected
//!   hostnames) attach to it.
//! - [`statuses`]: Kubernetes-shaped status of GatewayClasses, Gateways and routes.
//! - [`backends::resolve_backend`]: the backendRef rule behind a route's `ResolvedRefs`.

pub mod backends;
mod build;
mod certificates;
mod conditions;
mod gateway;
pub mod gateway_tls;
pub mod hostnames;
mod listener_sets;
pub(crate) mod listeners;
mod parents;
#[cfg(test)]
mod tests;

pub use certificates::{TLS_SECRET_TYPE, secret_value};
pub use conditions::{
    Condition, EPOCH, GatewayClassStatus, GatewaySpecEcho, GatewayStatus, GatewayStatusAddress,
    ListenerEcho, ListenerStatus, ObjectStatus, ParentReference, RouteGroupKind, RouteParentStatus,
    RouteStatus, Stamp, Status, StatusMetadata,
};
pub use gateway_tls::{
    FrontendValidation, backend_client_certificate_ref, frontend_validation, resolve_frontend_cas,
    tls_references,
};
pub use listeners::{auto_certificate, terminates_tls};
pub use parents::{LISTENER_SET_GROUP, ROUTE_KINDS};

use crate::object::{Kind, LoadedObject, Object, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use parents::{GatewayView, evaluate_routes};
use std::net::IpAddr;

/// Controller name of weft's own GatewayClasses.
pub const WEFT_CONTROLLER: &str = "weft.dev/gateway";
/// Controller name of Istio's gateway classes, which weft also runs.
pub const ISTIO_CONTROLLER: &str = "istio.io/gateway-controller";
/// Controller name reported for routes attached to a waypoint (mesh routes).
pub const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
/// Label on a gateway's pods and Service naming the Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Listener `tls.options` key (or Gateway annotation) asking for a CA-issued certificate.
pub const AUTO_CERTIFICATE: &str = "weft.dev/auto-certificate";
/// Classes that exist without a GatewayClass object: `(name, controller)`.
pub const BUILTIN_CLASSES: [(&str, &str); 2] =
    [("weft", WEFT_CONTROLLER), ("istio", ISTIO_CONTROLLER)];

/// The controller of `class_name` if weft runs Gateways of that class: an explicit
/// GatewayClass with controllerName [`WEFT_CONTROLLER`] or [`ISTIO_CONTROLLER`], or the
/// built-in `weft`/`istio` when no GatewayClass object of that name exists.
#[must_use]
pub fn gateway_controller(snapshot: &ConfigSnapshot, class_name: &str) -> Option<&'static str> {
    let known = |controller: &str| {
        [WEFT_CONTROLLER, ISTIO_CONTROLLER]
            .into_iter()
            .find(|c| *c == controller)
    };
    match snapshot
        .get(Kind::GatewayClass, None, class_name)
        .map(|l| &l.object)
    {
        Some(Object::GatewayClass(class)) => known(&class.spec.controller_name),
        Some(_) => None,
        None => BUILTIN_CLASSES
            .iter()
            .find(|(name, _)| *name == class_name)
            .map(|(_, controller)| *controller),
    }
}

/// The Gateways weft runs as gateways (not waypoints), in load order.
#[must_use]
pub fn weft_gateways(snapshot: &ConfigSnapshot) -> Vec<ObjectRef> {
    snapshot
        .gateways()
        .filter(|(g, _)| gateway_controller(snapshot, &g.spec.gateway_class_name).is_some())
        .map(|(_, loaded)| loaded.object.object_ref())
        .collect()
}

/// The IP addresses of a Gateway, sorted. In a cluster ([`ConfigSnapshot::is_observed`]):
/// those of the Service weft deploys for it (see [`service_addresses`]); elsewhere those
/// of the pods in its namespace labelled [`GATEWAY_NAME_LABEL`]`: <name>`.
#[must_use]
pub fn gateway_addresses(snapshot: &ConfigSnapshot, namespace: &str, name: &str) -> Vec<IpAddr> {
    let mut addresses = if snapshot.is_observed() {
        service_addresses(snapshot, namespace, name)
    } else {
        pod_addresses(snapshot, namespace, name)
    };
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

/// The addresses clients reach Gateway `namespace/name` at in a cluster: the load
/// balancer's ingress IPs of the Service weft deploys for it when it has any, else the
/// Service's cluster IPs. Empty while the Service does not exist or has no address.
#[must_use]
pub fn service_addresses(snapshot: &ConfigSnapshot, namespace: &str, name: &str) -> Vec<IpAddr> {
    let Some(Object::Gateway(gateway)) = snapshot
        .get(Kind::Gateway, Some(namespace), name)
        .map(|l| &l.object)
    else {
        return Vec::new();
    };
    let Some(deployed) = crate::expand::gateway_deployment(snapshot, gateway) else {
        return Vec::new();
    };
    let Some(Object::Service(service)) = snapshot
        .get(Kind::Service, Some(namespace), &deployed.service_name)
        .map(|l| &l.object)
    else {
        return Vec::new();
    };
    let ingress = (service.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let balanced: Vec<IpAddr> = (ingress.into_iter().flatten())
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    if !balanced.is_empty() {
        return balanced;
    }
    let spec = service.spec.as_ref();
    let cluster_ips = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    let single = spec.and_then(|s| s.cluster_ip.clone());
    (cluster_ips.iter().chain(single.iter()))
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

fn pod_addresses(snapshot: &ConfigSnapshot, namespace: &str, name: &str) -> Vec<IpAddr> {
    snapshot
        .pods()
        .iter()
        .filter(|p| {
            p.namespace() == namespace
                && p.pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(GATEWAY_NAME_LABEL))
                    .is_some_and(|n| n == name)
        })
        .filter_map(crate::ExpandedPod::ip)
        .collect()
}

/// How the routes attach to one Gateway's listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAttachment {
    /// The Gateway's controller ([`WEFT_CONTROLLER`] or [`ISTIO_CONTROLLER`]).
    pub controller: &'static str,
    /// One entry per listener, in spec order.
    pub listeners: Vec<ListenerAttachment>,
}

/// One listener and the routes attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAttachment {
    /// Index into `spec.listeners` of the object declaring the listener: the Gateway, or
    /// [`ListenerAttachment::listener_set`].
    pub index: usize,
    /// The ListenerSet declaring the listener (merged into the Gateway), if not the Gateway.
    pub listener_set: Option<ObjectRef>,
    /// The listener's name.
    pub name: String,
    /// Whether the listener is served: Accepted, not Conflicted, and (when it terminates
    /// TLS) with at least one usable certificate. Only such listeners have routes here.
    pub accepted: bool,
    /// Not served but not conflicted either (no usable certificate or client CA): the
    /// gateway gets it without certificates and routes and closes its connections, so its
    /// hostname is not answered by another listener of the port.
    pub fails_closed: bool,
    /// Route kinds that may attach.
    pub kinds: Vec<Kind>,
    /// Attached routes, in route-kind then load order.
    pub routes: Vec<AttachedRoute>,
}

/// A route attached to a listener through one of its parentRefs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedRoute {
    /// The route (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute).
    pub route: ObjectRef,
    /// The route's hostnames intersected with the listener's (empty: every hostname the
    /// listener accepts).
    pub hostnames: Vec<String>,
    /// Which of the route's parentRefs attached it.
    pub parent_index: usize,
}

/// How routes attach to `gateway`'s listeners, exactly as status reports it; `None` when
/// the Gateway does not exist or weft does not run its class.
#[must_use]
pub fn attach(snapshot: &ConfigSnapshot, gateway: &ObjectRef) -> Option<GatewayAttachment> {
    let loaded = snapshot.get(Kind::Gateway, gateway.namespace.as_deref(), &gateway.name)?;
    let Object::Gateway(spec) = &loaded.object else {
        return None;
    };
    let controller = gateway_controller(snapshot, &spec.spec.gateway_class_name)?;
    let view = GatewayView::new(snapshot, loaded, controller)?;
    let mut declared = std::collections::HashMap::new();
    let mut listeners: Vec<ListenerAttachment> = (view.listeners.iter().zip(&view.sources))
        .map(|(l, source)| {
            let index = declared.entry(*source).or_insert(0);
            *index += 1;
            (l, source, *index - 1)
        })
        .map(|(l, source, index)| ListenerAttachment {
            index,
            listener_set: match source {
                parents::ListenerSource::Gateway => None,
                parents::ListenerSource::Set(set) => {
                    Some(view.sets[*set].loaded.object.object_ref())
                }
            },
            name: l.listener.name.clone(),
            accepted: l.programmed(),
            fails_closed: l.fails_closed(),
            kinds: l.kinds.clone(),
            routes: Vec::new(),
        })
        .collect();
    let views = [view];
    for (route, parents) in evaluate_routes(snapshot, &views) {
        for parent in parents {
            for (index, hostnames) in parent.outcome.into_iter().flatten() {
                let listener = &mut listeners[index];
                if listener.accepted {
                    listener.routes.push(AttachedRoute {
                        route: route.object.object_ref(),
                        hostnames,
                        parent_index: parent.index,
                    });
                }
            }
        }
    }
    Some(GatewayAttachment {
        controller,
        listeners,
    })
}

/// Every object's computed status: GatewayClasses weft handles, Gateways weft runs, and
/// routes with a parentRef to one of them (or to a missing Gateway, or a waypoint), in that
/// order, each in load order.
#[must_use]
pub fn statuses(snapshot: &ConfigSnapshot) -> Vec<ObjectStatus> {
    build::statuses(snapshot, &|_| Ok(()))
}

/// Checks a route's rules beyond its references: `Err(why)` when the data plane cannot
/// apply the route (the control plane's L7 converter rejects it and leaves it out).
pub type RouteCheck<'a> = &'a dyn Fn(&LoadedObject) -> Result<(), String>;

/// [`statuses`], with `check` deciding which routes the data plane can apply: a rejected
/// route is `Accepted=False` with reason `UnsupportedValue` on every Gateway parent that
/// would otherwise accept it, and is not counted in `attachedRoutes`. The control plane and
/// `weft x status` pass the L7 converter, so status matches what is served.
#[must_use]
pub fn statuses_with(snapshot: &ConfigSnapshot, check: RouteCheck<'_>) -> Vec<ObjectStatus> {
    build::statuses(snapshot, check)
}
