//! Builds the [`ObjectStatus`] documents: GatewayClasses and routes here, Gateways in
//! `gateway.rs`, from the evaluated Gateways and route parents.

use super::backends::{ISTIO_NETWORKING_GROUP, resolve_backend};
use super::conditions::{
    Condition, GatewayClassStatus, ObjectStatus, ParentReference, RouteParentStatus, RouteStatus,
    Stamp, Status,
};
use super::listener_sets::parent_gateway;
use super::parents::{
    GatewayView, Outcome, ParentEval, ParentTarget, ROUTE_KINDS, evaluate_routes, parent_target,
};
use super::{MESH_CONTROLLER, WEFT_CONTROLLER, gateway_controller};
use crate::gateway::WAYPOINT_CLASS;
use crate::object::{Kind, LoadedObject, Object, ObjectRef};
use crate::routes::{GATEWAY_GROUP, RouteRef, route_view};
use crate::snapshot::ConfigSnapshot;
use crate::suggest::display_path;
use std::collections::{BTreeSet, HashMap};

/// Routes attached per (gateway namespace, gateway name, listener index).
pub(super) type Attached = HashMap<(String, String, usize), BTreeSet<ObjectRef>>;

/// The route-parent outcomes by (route, parentRef index), with the Gateway's controller.
type Outcomes<'r> = HashMap<(ObjectRef, usize), (&'r Outcome, &'static str)>;

pub(super) fn statuses(
    snapshot: &ConfigSnapshot,
    check: super::RouteCheck<'_>,
) -> Vec<ObjectStatus> {
    let mut out = class_statuses(snapshot);
    let views: Vec<GatewayView<'_>> = snapshot
        .gateways()
        .filter_map(|(gateway, loaded)| {
            let controller = gateway_controller(snapshot, &gateway.spec.gateway_class_name)?;
            GatewayView::new(snapshot, loaded, controller)
        })
        .collect();
    let mut routes = evaluate_routes(snapshot, &views);
    reject_unsupported(&mut routes, check);
    let (attached, outcomes) = index_outcomes(&routes);
    out.extend(
        views
            .iter()
            .map(|v| super::gateway::gateway_status(snapshot, v, &attached)),
    );
    for view in &views {
        out.extend(listener_set_statuses(snapshot, view, &attached));
    }
    for loaded in ROUTE_KINDS.iter().flat_map(|&k| snapshot.of_kind(k)) {
        if let Some(status) = route_status(snapshot, loaded, &outcomes) {
            out.push(status);
        }
    }
    out
}

/// The status of the ListenerSets naming `view`'s Gateway.
fn listener_set_statuses(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    attached: &Attached,
) -> Vec<ObjectStatus> {
    let has_address = !super::gateway_addresses(snapshot, view.namespace, view.name()).is_empty();
    let listener = |stamp: &Stamp, index: usize| {
        let key = (view.namespace.to_owned(), view.name().to_owned(), index);
        let count = attached.get(&key).map_or(0, BTreeSet::len);
        super::gateway::listener_status(stamp, &view.listeners[index], count, has_address)
    };
    super::listener_sets::set_statuses(view, has_address, &listener)
}

/// Routes `check` rejects are `UnsupportedValue` where they would have attached.
fn reject_unsupported(
    routes: &mut [(&LoadedObject, Vec<ParentEval>)],
    check: super::RouteCheck<'_>,
) {
    for (route, parents) in routes {
        let Err(why) = check(route) else {
            continue;
        };
        for parent in parents.iter_mut().filter(|p| p.outcome.is_ok()) {
            let message = format!("the route cannot be applied: {why}");
            parent.outcome = Err(("UnsupportedValue", message));
        }
    }
}

/// The routes attached to each listener, and each route parent's outcome.
fn index_outcomes<'r>(routes: &'r [(&LoadedObject, Vec<ParentEval>)]) -> (Attached, Outcomes<'r>) {
    let mut attached = Attached::new();
    let mut outcomes = Outcomes::new();
    for (route, parents) in routes {
        let object = route.object.object_ref();
        for parent in parents {
            outcomes.insert(
                (object.clone(), parent.index),
                (&parent.outcome, parent.controller),
            );
            for (listener, _) in parent.outcome.iter().flatten() {
                let (namespace, name) = parent.gateway.clone();
                attached
                    .entry((namespace, name, *listener))
                    .or_default()
                    .insert(object.clone());
            }
        }
    }
    (attached, outcomes)
}

fn class_statuses(snapshot: &ConfigSnapshot) -> Vec<ObjectStatus> {
    snapshot
        .gateway_classes()
        .filter_map(|(class, loaded)| {
            gateway_controller(snapshot, loaded.object.name())?;
            let stamp = Stamp::of(loaded);
            let accepted = stamp.condition(
                "Accepted",
                true,
                "Accepted",
                format!(
                    "weft runs Gateways of this class (controllerName {})",
                    class.spec.controller_name
                ),
            );
            let version = stamp.condition(
                "SupportedVersion",
                true,
                "SupportedVersion",
                "weft reads the standard-channel Gateway API v1 kinds",
            );
            Some(ObjectStatus::new(
                loaded,
                Status::GatewayClass(GatewayClassStatus {
                    conditions: vec![accepted, version],
                }),
            ))
        })
        .collect()
}

fn route_status(
    snapshot: &ConfigSnapshot,
    loaded: &LoadedObject,
    outcomes: &Outcomes<'_>,
) -> Option<ObjectStatus> {
    let view = route_view(&loaded.object)?;
    let stamp = Stamp::of(loaded);
    let object = loaded.object.object_ref();
    let namespace = loaded.object.namespace().unwrap_or_default();
    let resolved = backend_refs(snapshot, &stamp, &object, &view.backends);
    let mut parents = Vec::new();
    for (index, parent) in view.parents.iter().enumerate() {
        let accepted = match outcomes.get(&(object.clone(), index)) {
            Some((outcome, controller)) => Some((parent_accepted(&stamp, outcome), *controller)),
            None => other_parent(snapshot, &stamp, parent, namespace),
        };
        let Some((accepted, controller)) = accepted else {
            continue;
        };
        parents.push(RouteParentStatus {
            parent_ref: parent_reference(parent, namespace),
            controller_name: controller.to_owned(),
            conditions: vec![accepted, resolved.clone()],
            parent_index: index,
        });
    }
    (!parents.is_empty()).then(|| ObjectStatus::new(loaded, Status::Route(RouteStatus { parents })))
}

fn parent_accepted(stamp: &Stamp, outcome: &Outcome) -> Condition {
    match outcome {
        Ok(listeners) => stamp.condition(
            "Accepted",
            true,
            "Accepted",
            format!("attached to {} listener(s)", listeners.len()),
        ),
        Err((reason, message)) => stamp.condition("Accepted", false, reason, message.clone()),
    }
}

/// Status for a parentRef that names no Gateway weft runs: a missing Gateway
/// (`NoMatchingParent`), or a waypoint, or a Service/ServiceEntry bound to an existing
/// waypoint (accepted by the mesh); `None` for parents weft does not report on.
fn other_parent(
    snapshot: &ConfigSnapshot,
    stamp: &Stamp,
    parent: &RouteRef<'_>,
    route_namespace: &str,
) -> Option<(Condition, &'static str)> {
    let (namespace, name) = match parent_target(parent, route_namespace) {
        ParentTarget::Gateway(namespace, name) => (namespace, name),
        ParentTarget::ListenerSet(kind, namespace, name) => {
            return missing_listener_set(snapshot, stamp, (kind, namespace, name));
        }
        ParentTarget::Other => return mesh_parent(snapshot, stamp, parent, route_namespace),
    };
    match snapshot
        .get(Kind::Gateway, Some(namespace), name)
        .map(|l| &l.object)
    {
        None => Some((
            stamp.condition(
                "Accepted",
                false,
                "NoMatchingParent",
                format!("Gateway {namespace}/{name} does not exist"),
            ),
            WEFT_CONTROLLER,
        )),
        Some(Object::Gateway(g)) if g.spec.gateway_class_name == WAYPOINT_CLASS => Some((
            stamp.condition(
                "Accepted",
                true,
                "Accepted",
                format!("applied by waypoint {namespace}/{name}"),
            ),
            MESH_CONTROLLER,
        )),
        Some(_) => None,
    }
}

/// A ListenerSet parent no Gateway weft runs took: `NoMatchingParent` when it does not
/// exist or names a Gateway that does not exist; `None` when its Gateway is another
/// controller's.
fn missing_listener_set(
    snapshot: &ConfigSnapshot,
    stamp: &Stamp,
    (kind, namespace, name): (Kind, &str, &str),
) -> Option<(Condition, &'static str)> {
    let found = snapshot.get(kind, Some(namespace), name);
    let message = match found.map(|l| &l.object) {
        Some(Object::ListenerSet(set) | Object::XListenerSet(set)) => {
            let (gateway_namespace, gateway) = parent_gateway(set, namespace)?;
            if snapshot
                .get(Kind::Gateway, Some(gateway_namespace), gateway)
                .is_some()
            {
                return None;
            }
            format!(
                "the Gateway {gateway_namespace}/{gateway} of {kind} {namespace}/{name} does not exist"
            )
        }
        _ => format!("{kind} {namespace}/{name} does not exist"),
    };
    let condition = stamp.condition("Accepted", false, "NoMatchingParent", message);
    Some((condition, WEFT_CONTROLLER))
}

/// A Service or ServiceEntry parent whose waypoint exists: the waypoint applies the route.
fn mesh_parent(
    snapshot: &ConfigSnapshot,
    stamp: &Stamp,
    parent: &RouteRef<'_>,
    route_namespace: &str,
) -> Option<(Condition, &'static str)> {
    let kind = match (parent.group.unwrap_or(""), parent.kind?) {
        ("" | "core", "Service") => Kind::Service,
        (ISTIO_NETWORKING_GROUP, "ServiceEntry") => Kind::ServiceEntry,
        _ => return None,
    };
    let namespace = parent.namespace.unwrap_or(route_namespace);
    let (waypoint_namespace, waypoint) =
        crate::analyze::target_waypoint(snapshot, kind, namespace, parent.name)?;
    let is_waypoint = matches!(
        snapshot.get(Kind::Gateway, Some(&waypoint_namespace), &waypoint).map(|l| &l.object),
        Some(Object::Gateway(g)) if g.spec.gateway_class_name == WAYPOINT_CLASS
    );
    let message = format!(
        "{kind} {namespace}/{} is served by waypoint {waypoint_namespace}/{waypoint}, which applies the route",
        parent.name
    );
    is_waypoint.then(|| {
        (
            stamp.condition("Accepted", true, "Accepted", message),
            MESH_CONTROLLER,
        )
    })
}

/// The parentRef as status echoes it: group, kind and namespace with their defaults filled
/// in (a Gateway of the route's namespace), section name and port as written.
fn parent_reference(parent: &RouteRef<'_>, route_namespace: &str) -> ParentReference {
    ParentReference {
        group: Some(parent.group.unwrap_or(GATEWAY_GROUP).to_owned()),
        kind: Some(parent.kind.unwrap_or("Gateway").to_owned()),
        namespace: Some(parent.namespace.unwrap_or(route_namespace).to_owned()),
        name: parent.name.to_owned(),
        section_name: parent.section_name.map(str::to_owned),
        port: parent.port,
    }
}

/// The route's `ResolvedRefs`: the first unresolved backendRef's reason, every problem in
/// the message.
fn backend_refs(
    snapshot: &ConfigSnapshot,
    stamp: &Stamp,
    route: &ObjectRef,
    backends: &[RouteRef<'_>],
) -> Condition {
    let errors: Vec<(&'static str, String)> = backends
        .iter()
        .filter_map(|backend| {
            let error = resolve_backend(snapshot, route, backend).err()?;
            let at = display_path(&backend.path);
            Some((error.reason.as_str(), format!("{at}: {}", error.message)))
        })
        .collect();
    match errors.first() {
        None => stamp.condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all backendRefs resolved",
        ),
        Some((reason, _)) => {
            let messages: Vec<&str> = errors.iter().map(|(_, m)| m.as_str()).collect();
            stamp.condition("ResolvedRefs", false, reason, messages.join("; "))
        }
    }
}
