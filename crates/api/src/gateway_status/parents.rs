//! Routes against Gateways: which listeners a route's `parentRef` attaches to (section name
//! and port, listener state, route kind, namespace, hostname intersection), or the reason it
//! does not (`NoMatchingParent`, `NotAllowedByListeners`, `NoMatchingListenerHostname`).

use super::hostnames::route_on_listener;
use super::listeners::{ListenerEval, Problem, evaluate, namespace_allowed};
use crate::gateway::Gateway;
use crate::object::{Kind, LoadedObject, Object};
use crate::routes::{GATEWAY_GROUP, RouteRef, route_view};
use crate::snapshot::ConfigSnapshot;

/// The route kinds that attach to Gateways, in the order status lists them.
pub const ROUTE_KINDS: [Kind; 5] = [
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TlsRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
];

/// A Gateway weft runs, with its listeners evaluated.
pub(crate) struct GatewayView<'s> {
    pub loaded: &'s LoadedObject,
    pub gateway: &'s Gateway,
    pub namespace: &'s str,
    pub controller: &'static str,
    pub listeners: Vec<ListenerEval<'s>>,
}

impl<'s> GatewayView<'s> {
    pub(crate) fn new(
        snapshot: &'s ConfigSnapshot,
        loaded: &'s LoadedObject,
        controller: &'static str,
    ) -> Option<Self> {
        let Object::Gateway(gateway) = &loaded.object else {
            return None;
        };
        let namespace = loaded.object.namespace().unwrap_or_default();
        Some(GatewayView {
            loaded,
            gateway,
            namespace,
            controller,
            listeners: evaluate(snapshot, gateway, namespace),
        })
    }

    pub(crate) fn name(&self) -> &str {
        self.loaded.object.name()
    }
}

/// The listeners (index, hostnames) one parentRef attaches to, or why it attaches to none.
pub(crate) type Outcome = Result<Vec<(usize, Vec<String>)>, Problem>;

/// Where a parentRef points.
pub(crate) enum ParentTarget<'s> {
    /// A Gateway API Gateway `namespace/name`.
    Gateway(&'s str, &'s str),
    /// Something else (a Service, a ServiceEntry, a ListenerSet).
    Other,
}

/// Classifies a parentRef of a route in `route_namespace`.
pub(crate) fn parent_target<'s>(
    parent: &RouteRef<'s>,
    route_namespace: &'s str,
) -> ParentTarget<'s> {
    let group = parent.group.unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.unwrap_or("Gateway");
    if group == GATEWAY_GROUP && kind == "Gateway" {
        ParentTarget::Gateway(parent.namespace.unwrap_or(route_namespace), parent.name)
    } else {
        ParentTarget::Other
    }
}

/// Hostnames a route names (`TCPRoute`/`UDPRoute` have none).
fn route_hostnames(object: &Object) -> &[String] {
    match object {
        Object::HttpRoute(r) => r.spec.hostnames.as_deref().unwrap_or_default(),
        Object::GrpcRoute(r) => r.spec.hostnames.as_deref().unwrap_or_default(),
        Object::TlsRoute(r) => &r.spec.hostnames,
        _ => &[],
    }
}

/// Where one parentRef of `route` attaches on `view`'s listeners.
pub(crate) fn attach_parent(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    route: &LoadedObject,
    parent: &RouteRef<'_>,
) -> Outcome {
    let gateway = format!("Gateway {}/{}", view.namespace, view.name());
    let candidates: Vec<(usize, &ListenerEval<'_>)> = view
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            parent.section_name.is_none_or(|s| s == l.listener.name)
                && parent.port.is_none_or(|p| p == l.listener.port)
        })
        .collect();
    if candidates.is_empty() {
        let wanted = match (parent.section_name, parent.port) {
            (Some(section), Some(port)) => format!("listener {section} on port {port}"),
            (Some(section), None) => format!("listener named {section}"),
            (None, Some(port)) => format!("listener on port {port}"),
            (None, None) => "listener".to_owned(),
        };
        return Err(("NoMatchingParent", format!("{gateway} has no {wanted}")));
    }
    let kind = route.object.kind();
    let namespace = route.object.namespace().unwrap_or_default();
    let mut refusals = Vec::new();
    let allowed: Vec<(usize, &ListenerEval<'_>)> = candidates
        .into_iter()
        .filter(|(_, l)| {
            let why = refusal(snapshot, view, l, kind, namespace);
            refusals.extend(why.clone());
            why.is_none()
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!(
                "no listener of {gateway} accepts this route: {}",
                refusals.join("; ")
            ),
        ));
    }
    let hostnames = route_hostnames(&route.object);
    let matched: Vec<(usize, Vec<String>)> = allowed
        .iter()
        .filter_map(|(i, l)| {
            route_on_listener(l.listener.hostname.as_deref(), hostnames).map(|h| (*i, h))
        })
        .collect();
    if matched.is_empty() {
        let listener_hosts: Vec<&str> = allowed
            .iter()
            .filter_map(|(_, l)| l.listener.hostname.as_deref())
            .collect();
        return Err((
            "NoMatchingListenerHostname",
            format!(
                "none of the route's hostnames ({}) matches the hostnames of the listeners of {gateway} ({})",
                hostnames.join(", "),
                listener_hosts.join(", ")
            ),
        ));
    }
    Ok(matched)
}

/// Why a listener refuses a route of `kind` from `namespace`, if it does.
fn refusal(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    listener: &ListenerEval<'_>,
    kind: Kind,
    namespace: &str,
) -> Option<String> {
    let name = &listener.listener.name;
    if !listener.attachable() {
        return Some(format!("listener {name} is not accepted or is conflicted"));
    }
    if !listener.kinds.contains(&kind) {
        return Some(format!("listener {name} does not allow {kind}"));
    }
    if !namespace_allowed(snapshot, listener.listener, view.namespace, namespace) {
        return Some(format!(
            "listener {name} does not allow routes from namespace {namespace} (allowedRoutes.namespaces)"
        ));
    }
    None
}

/// One parentRef of a route, evaluated against a Gateway weft runs.
pub(crate) struct ParentEval {
    /// Index in `spec.parentRefs`.
    pub index: usize,
    /// `namespace/name` of the Gateway.
    pub gateway: (String, String),
    /// The Gateway's controller.
    pub controller: &'static str,
    pub outcome: Outcome,
}

/// Every route's parentRefs that name one of `views`, in route-kind then load order.
pub(crate) fn evaluate_routes<'s>(
    snapshot: &'s ConfigSnapshot,
    views: &[GatewayView<'_>],
) -> Vec<(&'s LoadedObject, Vec<ParentEval>)> {
    let mut evaluated = Vec::new();
    for loaded in ROUTE_KINDS.iter().flat_map(|&k| snapshot.of_kind(k)) {
        let Some(route) = route_view(&loaded.object) else {
            continue;
        };
        let namespace = loaded.object.namespace().unwrap_or_default();
        let mut parents = Vec::new();
        for (index, parent) in route.parents.iter().enumerate() {
            let ParentTarget::Gateway(ns, name) = parent_target(parent, namespace) else {
                continue;
            };
            let Some(view) = views.iter().find(|v| v.namespace == ns && v.name() == name) else {
                continue;
            };
            parents.push(ParentEval {
                index,
                gateway: (ns.to_owned(), name.to_owned()),
                controller: view.controller,
                outcome: attach_parent(snapshot, view, loaded, parent),
            });
        }
        if !parents.is_empty() {
            evaluated.push((loaded, parents));
        }
    }
    evaluated
}
