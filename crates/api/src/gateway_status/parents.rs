//! Routes against Gateways: which listeners a route's `parentRef` attaches to (section name
//! and port, listener state, route kind, namespace, hostname intersection), or the reason it
//! does not (`NoMatchingParent`, `NotAllowedByListeners`, `NoMatchingListenerHostname`).

use super::hostnames::route_on_listener;
use super::listener_sets::{SetEval, sets_of};
use super::listeners::{ListenerEval, Problem, evaluate, namespace_allowed};
use crate::gateway::Gateway;
use crate::object::{Kind, LoadedObject, Object};
use crate::routes::{GATEWAY_GROUP, RouteRef, route_view};
use crate::snapshot::ConfigSnapshot;

/// The group of the experimental channel, where ListenerSet is `XListenerSet`; the
/// standard channel's `ListenerSet` is in the Gateway API group.
pub const LISTENER_SET_GROUP: &str = "gateway.networking.x-k8s.io";

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
    /// The Gateway's own listeners, then those of the ListenerSets it admits, in merge order.
    pub listeners: Vec<ListenerEval<'s>>,
    /// Who declares each of `listeners`.
    pub sources: Vec<ListenerSource>,
    /// The ListenerSets naming this Gateway, in merge order, admitted or not.
    pub sets: Vec<SetEval<'s>>,
}

/// Who declares a listener of a [`GatewayView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListenerSource {
    /// The Gateway itself.
    Gateway,
    /// The ListenerSet at this index of [`GatewayView::sets`].
    Set(usize),
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
        let sets = sets_of(snapshot, gateway, namespace, loaded.object.name());
        let own = gateway
            .spec
            .listeners
            .iter()
            .map(|l| (l, (Kind::Gateway, namespace), ListenerSource::Gateway));
        let merged = sets.iter().enumerate().filter(|(_, s)| s.admitted.is_ok());
        let merged = merged.flat_map(|(index, set)| {
            let listeners = set.set.spec.listeners.iter();
            let owner = (set.loaded.object.kind(), set.namespace);
            listeners.map(move |l| (l, owner, ListenerSource::Set(index)))
        });
        let entries: Vec<_> = own.chain(merged).collect();
        let listeners = evaluate(
            snapshot,
            gateway,
            namespace,
            entries.iter().map(|(l, ns, _)| (*l, *ns)),
        );
        Some(GatewayView {
            loaded,
            gateway,
            namespace,
            controller,
            listeners,
            sources: entries.iter().map(|(_, _, source)| *source).collect(),
            sets,
        })
    }

    pub(crate) fn name(&self) -> &str {
        self.loaded.object.name()
    }

    /// The Gateway's own listeners (the first of [`GatewayView::listeners`]).
    pub(crate) fn own_listeners(&self) -> &[ListenerEval<'s>] {
        let own = self
            .sources
            .iter()
            .filter(|s| **s == ListenerSource::Gateway)
            .count();
        &self.listeners[..own]
    }

    /// The namespace of the object declaring listener `index` (routes' `Same`, certificates).
    pub(crate) fn listener_namespace(&self, index: usize) -> &'s str {
        match self.sources.get(index) {
            Some(ListenerSource::Set(set)) => self.sets[*set].namespace,
            _ => self.namespace,
        }
    }

    /// The admitted ListenerSet (or XListenerSet, by `kind`) `namespace/name`, by index.
    fn admitted_set(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Result<usize, &Problem>> {
        let (index, set) = (self.sets.iter().enumerate()).find(|(_, s)| {
            s.loaded.object.kind() == kind && s.namespace == namespace && s.name() == name
        })?;
        Some(set.admitted.as_ref().map(|()| index))
    }
}

/// The listeners (index, hostnames) one parentRef attaches to, or why it attaches to none.
pub(crate) type Outcome = Result<Vec<(usize, Vec<String>)>, Problem>;

/// Where a parentRef points.
pub(crate) enum ParentTarget<'s> {
    /// A Gateway API Gateway `namespace/name`.
    Gateway(&'s str, &'s str),
    /// A ListenerSet or XListenerSet (the kind) `namespace/name`.
    ListenerSet(Kind, &'s str, &'s str),
    /// Something else (a Service, a ServiceEntry).
    Other,
}

/// Classifies a parentRef of a route in `route_namespace`.
pub(crate) fn parent_target<'s>(
    parent: &RouteRef<'s>,
    route_namespace: &'s str,
) -> ParentTarget<'s> {
    let group = parent.group.unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.unwrap_or("Gateway");
    let namespace = parent.namespace.unwrap_or(route_namespace);
    match (group, kind) {
        (GATEWAY_GROUP, "Gateway") => ParentTarget::Gateway(namespace, parent.name),
        (GATEWAY_GROUP, "ListenerSet") => {
            ParentTarget::ListenerSet(Kind::ListenerSet, namespace, parent.name)
        }
        (LISTENER_SET_GROUP, "XListenerSet") => {
            ParentTarget::ListenerSet(Kind::XListenerSet, namespace, parent.name)
        }
        _ => ParentTarget::Other,
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

/// Where one parentRef of `route` attaches on the listeners of `view` that `source`
/// declares (the Gateway's own for a Gateway parent, a ListenerSet's for that ListenerSet).
pub(crate) fn attach_parent(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    source: ListenerSource,
    route: &LoadedObject,
    parent: &RouteRef<'_>,
) -> Outcome {
    let gateway = match source {
        ListenerSource::Gateway => format!("Gateway {}/{}", view.namespace, view.name()),
        ListenerSource::Set(set) => {
            let set = &view.sets[set];
            format!("ListenerSet {}/{}", set.namespace, set.name())
        }
    };
    let candidates: Vec<(usize, &ListenerEval<'_>)> = view
        .listeners
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            view.sources[*i] == source
                && parent.section_name.is_none_or(|s| s == l.listener.name)
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
        .filter(|(i, l)| {
            let why = refusal(snapshot, view.listener_namespace(*i), l, kind, namespace);
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
    listener_namespace: &str,
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
    if !namespace_allowed(snapshot, listener.listener, listener_namespace, namespace) {
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
            let Some((view, outcome)) = parent_outcome(snapshot, views, loaded, parent, namespace)
            else {
                continue;
            };
            parents.push(ParentEval {
                index,
                gateway: (view.namespace.to_owned(), view.name().to_owned()),
                controller: view.controller,
                outcome,
            });
        }
        if !parents.is_empty() {
            evaluated.push((loaded, parents));
        }
    }
    evaluated
}

/// The Gateway of `views` a parentRef reaches (directly, or through a ListenerSet it
/// took), with where it attaches; `None` when it names none of them.
fn parent_outcome<'v, 's>(
    snapshot: &ConfigSnapshot,
    views: &'v [GatewayView<'s>],
    route: &LoadedObject,
    parent: &RouteRef<'_>,
    route_namespace: &str,
) -> Option<(&'v GatewayView<'s>, Outcome)> {
    match parent_target(parent, route_namespace) {
        ParentTarget::Gateway(ns, name) => {
            let view = views
                .iter()
                .find(|v| v.namespace == ns && v.name() == name)?;
            let outcome = attach_parent(snapshot, view, ListenerSource::Gateway, route, parent);
            Some((view, outcome))
        }
        ParentTarget::ListenerSet(kind, ns, name) => views.iter().find_map(|view| {
            let outcome = match view.admitted_set(kind, ns, name)? {
                Ok(set) => attach_parent(snapshot, view, ListenerSource::Set(set), route, parent),
                Err((_, why)) => Err((
                    "NoMatchingParent",
                    format!("{kind} {ns}/{name} is not attached to its Gateway: {why}"),
                )),
            };
            Some((view, outcome))
        }),
        ParentTarget::Other => None,
    }
}
