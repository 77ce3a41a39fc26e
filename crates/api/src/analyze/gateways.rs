//! Gateway API status as findings: every condition of the computed status
//! ([`crate::gateway_status::statuses`]) that is not as it should be becomes one finding on
//! the field it is about. Listener `Accepted`/`ResolvedRefs` False and `Conflicted` True
//! (`spec.listeners[i]`), the Gateway's `ResolvedRefs` False
//! (`spec.tls.backend.clientCertificateRef`), route `Accepted` False per parent
//! (`spec.parentRefs[i]`). Not
//! repeated: a route's `ResolvedRefs` (reported per backendRef by `super::routes`), a
//! Gateway's own `Accepted`/`Programmed` and a listener's `Programmed` (they follow from
//! the listener findings or from the gateway's pod, which is not configuration).

use super::Context;
use crate::finding::{Code, Finding};
use crate::gateway_status::{Condition, Status, statuses};
use crate::object::{LoadedObject, Object};
use crate::suggest::Segment;

pub(super) fn check_gateway_status(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for status in statuses(context.snapshot) {
        let Some(object) = status.object_ref() else {
            continue;
        };
        let Some(loaded) =
            context
                .snapshot
                .get(object.kind, object.namespace.as_deref(), &object.name)
        else {
            continue;
        };
        let mut report = |code: Code, path: Vec<Segment>, condition: &Condition| {
            let at = crate::suggest::display_path(&path);
            let message = format!(
                "{at}: {}={} ({}): {}",
                condition.type_, condition.status, condition.reason, condition.message
            );
            findings.push(Finding::new(
                code,
                Some(object.clone()),
                loaded.source_at(&path),
                message,
            ));
        };
        match &status.status {
            Status::Gateway(gateway) => {
                let unresolved = gateway.conditions.iter();
                let unresolved = unresolved.filter(|c| c.type_ == "ResolvedRefs" && !c.is_true());
                for condition in unresolved {
                    report(Code::GatewayRefsNotResolved, backend_field(), condition);
                }
                for (index, listener) in gateway.listeners.iter().enumerate() {
                    let path = field("listeners", listener_index(loaded, &listener.name, index));
                    for condition in &listener.conditions {
                        if let Some(code) = listener_code(condition) {
                            report(code, path.clone(), condition);
                        }
                    }
                }
            }
            Status::Route(route) => {
                for parent in &route.parents {
                    let path = field("parentRefs", parent.parent_index);
                    for condition in parent.conditions.iter().filter(|c| c.type_ == "Accepted") {
                        if let Some(code) = route_code(condition) {
                            report(code, path.clone(), condition);
                        }
                    }
                }
            }
            Status::GatewayClass(_) => {}
        }
    }
}

fn field(list: &str, index: usize) -> Vec<Segment> {
    vec![
        Segment::Key("spec".to_owned()),
        Segment::Key(list.to_owned()),
        Segment::Index(index),
    ]
}

/// `spec.tls.backend.clientCertificateRef`, the one reference of a Gateway itself.
fn backend_field() -> Vec<Segment> {
    ["spec", "tls", "backend", "clientCertificateRef"]
        .into_iter()
        .map(|k| Segment::Key(k.to_owned()))
        .collect()
}

/// The index of the listener named `name` (names are unique; `fallback` otherwise).
fn listener_index(loaded: &LoadedObject, name: &str, fallback: usize) -> usize {
    match &loaded.object {
        Object::Gateway(gateway) => gateway
            .spec
            .listeners
            .iter()
            .position(|l| l.name == name)
            .unwrap_or(fallback),
        _ => fallback,
    }
}

fn listener_code(condition: &Condition) -> Option<Code> {
    match (condition.type_.as_str(), condition.is_true()) {
        ("Accepted", false) => Some(Code::GatewayListenerNotAccepted),
        ("ResolvedRefs", false) => Some(Code::GatewayListenerRefsNotResolved),
        ("Conflicted", true) => Some(Code::GatewayListenerConflicted),
        _ => None,
    }
}

fn route_code(condition: &Condition) -> Option<Code> {
    if condition.is_true() {
        return None;
    }
    Some(match condition.reason.as_str() {
        "NotAllowedByListeners" => Code::RouteParentNotAllowed,
        "NoMatchingListenerHostname" => Code::RouteNoMatchingHostname,
        _ => Code::RouteParentNotFound,
    })
}
