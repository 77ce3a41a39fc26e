//! Builds [`ObjectStatus`] documents from the evaluated Gateways and routes.

use super::backends::{ISTIO_NETWORKING_GROUP, resolve_backend};
use super::conditions::{
    Condition, GatewayClassStatus, GatewayStatus, GatewayStatusAddress, ListenerStatus,
    ObjectStatus, ParentReference, RouteGroupKind, RouteParentStatus, RouteStatus, Stamp, Status,
};
use super::listeners::ListenerEval;
use super::parents::{
    GatewayView, Outcome, ParentTarget, ROUTE_KINDS, evaluate_routes, parent_target,
};
use super::{MESH_CONTROLLER, WEFT_CONTROLLER, gateway_addresses, gateway_controller};
use crate::gateway::WAYPOINT_CLASS;
use crate::object::{Kind, LoadedObject, Object, ObjectRef};
use crate::routes::{GATEWAY_GROUP, RouteRef, route_view};
use crate::snapshot::ConfigSnapshot;
use crate::suggest::display_path;
use std::collections::{BTreeSet, HashMap};

/// Routes attached per (gateway namespace, gateway name, listener index).
type Attached = HashMap<(String, String, usize), BTreeSet<ObjectRef>>;

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
    for (route, parents) in &mut routes {
        let Err(why) = check(route) else {
            continue;
        };
        for parent in parents.iter_mut().filter(|p| p.outcome.is_ok()) {
            let message = format!("the route cannot be applied: {why}");
            parent.outcome = Err(("UnsupportedValue", message));
        }
    }
    let mut attached = Attached::new();
    let mut outcomes: HashMap<(ObjectRef, usize), (&Outcome, &'static str)> = HashMap::new();
    for (route, parents) in &routes {
        for parent in parents {
            let view = views.iter().find(|v| {
                (v.namespace, v.name()) == (&parent.gateway.0[..], &parent.gateway.1[..])
            });
            let controller = view.map_or(WEFT_CONTROLLER, |v| v.controller);
            outcomes.insert(
                (route.object.object_ref(), parent.index),
                (&parent.outcome, controller),
            );
            for (listener, _) in parent.outcome.iter().flatten() {
                let key = (
                    parent.gateway.0.clone(),
                    parent.gateway.1.clone(),
                    *listener,
                );
                attached
                    .entry(key)
                    .or_default()
                    .insert(route.object.object_ref());
            }
        }
    }
    out.extend(views.iter().map(|v| gateway_status(snapshot, v, &attached)));
    for loaded in ROUTE_KINDS.iter().flat_map(|&k| snapshot.of_kind(k)) {
        if let Some(status) = route_status(snapshot, loaded, &outcomes) {
            out.push(status);
        }
    }
    out
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

fn gateway_status(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    attached: &Attached,
) -> ObjectStatus {
    let stamp = Stamp::of(view.loaded);
    let addresses = gateway_addresses(snapshot, view.namespace, view.name());
    let has_address = !addresses.is_empty();
    let listeners: Vec<ListenerStatus> = view
        .listeners
        .iter()
        .enumerate()
        .map(|(index, eval)| {
            let key = (view.namespace.to_owned(), view.name().to_owned(), index);
            let count = attached.get(&key).map_or(0, BTreeSet::len);
            listener_status(&stamp, eval, count, has_address)
        })
        .collect();
    let invalid: Vec<&str> = view
        .listeners
        .iter()
        .filter(|l| !l.attachable())
        .map(|l| l.listener.name.as_str())
        .collect();
    let requested = address_problem(view, &addresses);
    let accepted = if let Some(AddressProblem::Unsupported(message)) = &requested {
        stamp.condition("Accepted", false, "UnsupportedAddress", message.clone())
    } else if invalid.is_empty() {
        stamp.condition("Accepted", true, "Accepted", "all listeners are valid")
    } else {
        let all = invalid.len() == view.listeners.len();
        let message = format!("listeners not valid: {}", invalid.join(", "));
        stamp.condition("Accepted", !all, "ListenersNotValid", message)
    };
    let programmed = if !has_address {
        let message = format!(
            "no pod labelled {}={} runs in namespace {}",
            super::GATEWAY_NAME_LABEL,
            view.name(),
            view.namespace
        );
        stamp.condition("Programmed", false, "AddressNotAssigned", message)
    } else if let Some(AddressProblem::NotUsable(message)) = requested {
        stamp.condition("Programmed", false, "AddressNotUsable", message)
    } else if !accepted.is_true() {
        stamp.condition(
            "Programmed",
            false,
            "Invalid",
            "the gateway is not accepted",
        )
    } else if view.listeners.iter().any(ListenerEval::programmed) {
        stamp.condition(
            "Programmed",
            true,
            "Programmed",
            "the gateway serves its valid listeners",
        )
    } else {
        stamp.condition("Programmed", false, "Invalid", "no listener can be served")
    };
    let addresses = addresses
        .iter()
        .map(|ip| GatewayStatusAddress {
            type_: "IPAddress".to_owned(),
            value: ip.to_string(),
        })
        .collect();
    let status = GatewayStatus {
        addresses,
        conditions: vec![accepted, programmed],
        listeners,
    };
    ObjectStatus::new(view.loaded, Status::Gateway(status))
}

/// What the Gateway's `spec.addresses` ask for that weft cannot give.
enum AddressProblem {
    /// A type other than `IPAddress` (Accepted=False, `UnsupportedAddress`).
    Unsupported(String),
    /// An IP address that is not one of the gateway's pods' (Programmed=False,
    /// `AddressNotUsable`).
    NotUsable(String),
}

/// The first requested address weft cannot give: the gateway's addresses are its pods'
/// (an entry without a value asks for any address, which they are).
fn address_problem(view: &GatewayView<'_>, pods: &[std::net::IpAddr]) -> Option<AddressProblem> {
    let mut requested = view.gateway.spec.addresses.iter().flatten().enumerate();
    requested.find_map(|(index, address)| {
        let kind = address.r#type.as_deref().unwrap_or("IPAddress");
        let value = address.value.as_deref().filter(|v| !v.is_empty());
        if kind != "IPAddress" {
            return Some(AddressProblem::Unsupported(format!(
                "spec.addresses[{index}]: address type {kind} is not supported (IPAddress is)"
            )));
        }
        let value = value?;
        let usable = value.parse::<std::net::IpAddr>().is_ok_and(|ip| pods.contains(&ip));
        (!usable).then(|| {
            AddressProblem::NotUsable(format!(
                "spec.addresses[{index}]: {value} is not an address of the gateway's pods; weft gives a gateway the addresses of the pods that run it"
            ))
        })
    })
}

fn listener_status(
    stamp: &Stamp,
    eval: &ListenerEval<'_>,
    attached_routes: usize,
    has_address: bool,
) -> ListenerStatus {
    let name = &eval.listener.name;
    let accepted = match &eval.protocol {
        Ok(()) => stamp.condition(
            "Accepted",
            true,
            "Accepted",
            format!("listener {name} is valid"),
        ),
        Err((reason, message)) => stamp.condition("Accepted", false, reason, message.clone()),
    };
    let conflicted = match &eval.conflict {
        Some((reason, message)) => stamp.condition("Conflicted", true, reason, message.clone()),
        None => stamp.condition(
            "Conflicted",
            false,
            "NoConflicts",
            "no conflicting listener",
        ),
    };
    let resolved = resolved_refs(stamp, eval);
    let programmed = if !eval.programmed() {
        stamp.condition(
            "Programmed",
            false,
            "Invalid",
            format!("listener {name} cannot be served"),
        )
    } else if has_address {
        stamp.condition(
            "Programmed",
            true,
            "Programmed",
            format!("listener {name} is served"),
        )
    } else {
        stamp.condition(
            "Programmed",
            false,
            "Pending",
            "the gateway has no address yet",
        )
    };
    let supported_kinds = eval
        .kinds
        .iter()
        .map(|k| RouteGroupKind {
            group: GATEWAY_GROUP.to_owned(),
            kind: k.name().to_owned(),
        })
        .collect();
    ListenerStatus {
        name: name.clone(),
        supported_kinds,
        attached_routes: i32::try_from(attached_routes).unwrap_or(i32::MAX),
        conditions: vec![accepted, programmed, resolved, conflicted],
    }
}

fn resolved_refs(stamp: &Stamp, eval: &ListenerEval<'_>) -> Condition {
    if !eval.invalid_kinds.is_empty() {
        let message = format!(
            "allowedRoutes.kinds: {} cannot attach to a {} listener",
            eval.invalid_kinds.join(", "),
            eval.listener.protocol
        );
        return stamp.condition("ResolvedRefs", false, "InvalidRouteKinds", message);
    }
    match eval.certificate_problems.first() {
        None => stamp.condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved",
        ),
        Some((reason, _)) => {
            let messages: Vec<&str> = eval
                .certificate_problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect();
            stamp.condition("ResolvedRefs", false, reason, messages.join("; "))
        }
    }
}

fn route_status(
    snapshot: &ConfigSnapshot,
    loaded: &LoadedObject,
    outcomes: &HashMap<(ObjectRef, usize), (&Outcome, &'static str)>,
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
