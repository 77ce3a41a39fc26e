//! ListenerSets (GEP-1713): listeners declared outside a Gateway and merged into it.
//!
//! A ListenerSet is taken by the Gateway its `spec.parentRef` names when the Gateway's
//! `spec.allowedListeners.namespaces` admits the ListenerSet's namespace (`from: None`, the
//! default, admits none; `Same`; `All`; `Selector` over the namespace's labels). The Gateway
//! then serves the merged list: its own listeners first, then those of the ListenerSets it
//! took, oldest first (`metadata.creationTimestamp`), ties by `namespace/name`. Conflicts are
//! judged on that list, so a ListenerSet's listener never displaces one of the Gateway's.
//! A ListenerSet's listeners resolve certificates and `allowedRoutes.namespaces: Same` in
//! the ListenerSet's namespace, and routes reach them only through a parentRef of kind
//! `ListenerSet` (a parentRef to the Gateway attaches to the Gateway's own listeners).

use super::conditions::{Condition, GatewayStatus, ObjectStatus, Stamp, Status};
use super::listeners::Problem;
use super::parents::{GatewayView, ListenerSource};
use crate::gateway::{Gateway, ListenerSet};
use crate::object::LoadedObject;
use crate::routes::GATEWAY_GROUP;
use crate::snapshot::ConfigSnapshot;
use gateway_api::gateways::GatewayAllowedListenersNamespacesFrom as From;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A ListenerSet naming a Gateway as its parent.
pub(crate) struct SetEval<'s> {
    pub loaded: &'s LoadedObject,
    pub set: &'s ListenerSet,
    pub namespace: &'s str,
    /// `Err((NotAllowed, why))` when the Gateway's `allowedListeners` refuses it.
    pub admitted: Result<(), Problem>,
}

impl SetEval<'_> {
    pub(crate) fn name(&self) -> &str {
        self.loaded.object.name()
    }
}

/// The `namespace/name` of the Gateway a ListenerSet in `namespace` names, if its
/// parentRef is a Gateway.
pub(crate) fn parent_gateway<'s>(
    set: &'s ListenerSet,
    namespace: &'s str,
) -> Option<(&'s str, &'s str)> {
    let parent = &set.spec.parent_ref;
    let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    (group == GATEWAY_GROUP && kind == "Gateway").then(|| {
        let parent_namespace = parent.namespace.as_deref().unwrap_or(namespace);
        (parent_namespace, parent.name.as_str())
    })
}

/// The ListenerSets whose parentRef names Gateway `namespace/name`, in merge order, each
/// with whether the Gateway admits it.
pub(crate) fn sets_of<'s>(
    snapshot: &'s ConfigSnapshot,
    gateway: &Gateway,
    namespace: &str,
    name: &str,
) -> Vec<SetEval<'s>> {
    let mut sets: Vec<SetEval<'s>> = snapshot
        .listener_sets()
        .filter_map(|(set, loaded)| {
            let set_namespace = loaded.object.namespace().unwrap_or_default();
            (parent_gateway(set, set_namespace)? == (namespace, name)).then(|| SetEval {
                loaded,
                set,
                namespace: set_namespace,
                admitted: admitted(snapshot, gateway, namespace, set_namespace),
            })
        })
        .collect();
    sets.sort_by(|a, b| {
        let created = |s: &SetEval<'_>| s.set.metadata.creation_timestamp.clone().map(|t| t.0);
        (created(a).is_none(), created(a), a.namespace, a.name()).cmp(&(
            created(b).is_none(),
            created(b),
            b.namespace,
            b.name(),
        ))
    });
    sets
}

/// Whether `gateway` (in `gateway_namespace`) takes ListenerSets of `set_namespace`.
fn admitted(
    snapshot: &ConfigSnapshot,
    gateway: &Gateway,
    gateway_namespace: &str,
    set_namespace: &str,
) -> Result<(), Problem> {
    let namespaces = (gateway.spec.allowed_listeners.as_ref()).and_then(|a| a.namespaces.as_ref());
    let allowed = match namespaces.and_then(|n| n.from.as_ref()) {
        Some(From::All) => true,
        Some(From::Same) => gateway_namespace == set_namespace,
        Some(From::Selector) => namespaces.and_then(|n| n.selector.as_ref()).is_some_and(|s| {
            let selector = LabelSelector {
                match_labels: s.match_labels.clone(),
                match_expressions: s.match_expressions.as_ref().map(|list| {
                    let requirement = |e: &_| {
                        let e: &gateway_api::gateways::GatewayAllowedListenersNamespacesSelectorMatchExpressions = e;
                        LabelSelectorRequirement {
                            key: e.key.clone(),
                            operator: e.operator.clone(),
                            values: e.values.clone(),
                        }
                    };
                    list.iter().map(requirement).collect()
                }),
            };
            let mut labels = snapshot.namespace_labels(set_namespace);
            labels.insert("kubernetes.io/metadata.name".to_owned(), set_namespace.to_owned());
            crate::selector::label_selector_matches(&selector, &labels)
        }),
        Some(From::None) | None => false,
    };
    if allowed {
        return Ok(());
    }
    let from = match namespaces.and_then(|n| n.from.as_ref()) {
        Some(From::Same) => "Same",
        Some(From::Selector) => "a Selector that does not match it",
        _ => "None (the default)",
    };
    Err((
        "NotAllowed",
        format!(
            "the Gateway does not allow ListenerSets from namespace {set_namespace}: its spec.allowedListeners.namespaces.from is {from}"
        ),
    ))
}

/// The status of every ListenerSet naming the Gateway of `view`: `Accepted`, `Programmed`
/// and its listeners' conditions (`listener_status` gives each listener's, as for the
/// Gateway's own). A ListenerSet's status has the Gateway status's shape without addresses.
pub(super) fn set_statuses(
    view: &GatewayView<'_>,
    has_address: bool,
    listener_status: &dyn Fn(&Stamp, usize) -> super::conditions::ListenerStatus,
) -> Vec<ObjectStatus> {
    let gateway = format!("Gateway {}/{}", view.namespace, view.name());
    view.sets
        .iter()
        .enumerate()
        .map(|(set_index, set)| {
            let stamp = Stamp::of(set.loaded);
            let mine: Vec<usize> = (view.sources.iter().enumerate())
                .filter(|(_, s)| **s == ListenerSource::Set(set_index))
                .map(|(i, _)| i)
                .collect();
            let listeners = mine.iter().map(|&i| listener_status(&stamp, i)).collect();
            let valid = mine
                .iter()
                .filter(|&&i| view.listeners[i].attachable())
                .count();
            let served = mine.iter().any(|&i| view.listeners[i].programmed());
            let accepted = set_accepted(&stamp, set, &gateway, valid, mine.len());
            let programmed = set_programmed(&stamp, &accepted, served, has_address);
            let status = GatewayStatus {
                addresses: Vec::new(),
                attached_listener_sets: None,
                conditions: vec![accepted, programmed],
                listeners,
            };
            ObjectStatus::new(set.loaded, Status::Gateway(status))
        })
        .collect()
}

fn set_accepted(
    stamp: &Stamp,
    set: &SetEval<'_>,
    gateway: &str,
    valid: usize,
    total: usize,
) -> Condition {
    if let Err((reason, message)) = &set.admitted {
        return stamp.condition("Accepted", false, reason, message.clone());
    }
    if valid == 0 {
        let message = format!("no listener of the ListenerSet is valid on {gateway}");
        return stamp.condition("Accepted", false, "ListenersNotValid", message);
    }
    let message = if valid == total {
        format!("its listeners are merged into {gateway}")
    } else {
        format!("{valid} of its {total} listeners are merged into {gateway}")
    };
    stamp.condition("Accepted", true, "Accepted", message)
}

fn set_programmed(
    stamp: &Stamp,
    accepted: &Condition,
    served: bool,
    has_address: bool,
) -> Condition {
    let (ok, reason, message) = if !accepted.is_true() {
        (false, "Invalid", "the ListenerSet is not accepted")
    } else if !served {
        (
            false,
            "Invalid",
            "no listener of the ListenerSet can be served",
        )
    } else if !has_address {
        (false, "Pending", "the Gateway has no address yet")
    } else {
        (
            true,
            "Programmed",
            "the Gateway serves the ListenerSet's valid listeners",
        )
    };
    stamp.condition("Programmed", ok, reason, message)
}

/// The Gateway's `AttachedListenerSets` condition and `status.attachedListenerSets` count;
/// `None` when no ListenerSet names the Gateway.
pub(super) fn attached_condition(
    view: &GatewayView<'_>,
    stamp: &Stamp,
) -> Option<(Condition, i32)> {
    if view.sets.is_empty() {
        return None;
    }
    let attached = (view.sets.iter().enumerate())
        .filter(|(i, s)| {
            s.admitted.is_ok()
                && (view.sources.iter().zip(&view.listeners))
                    .any(|(source, l)| *source == ListenerSource::Set(*i) && l.attachable())
        })
        .count();
    let count = i32::try_from(attached).unwrap_or(i32::MAX);
    let condition = if attached > 0 {
        let message = format!("{attached} ListenerSet(s) attached");
        stamp.condition(
            "AttachedListenerSets",
            true,
            "ListenerSetsAttached",
            message,
        )
    } else if view.sets.iter().any(|s| s.admitted.is_err()) {
        let message =
            "ListenerSets name this Gateway, but spec.allowedListeners does not allow them";
        stamp.condition(
            "AttachedListenerSets",
            false,
            "ListenerSetsNotAllowed",
            message,
        )
    } else {
        let message = "no ListenerSet naming this Gateway has a valid listener";
        stamp.condition(
            "AttachedListenerSets",
            false,
            "NoListenerSetsAttached",
            message,
        )
    };
    Some((condition, count))
}
