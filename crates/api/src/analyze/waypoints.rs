//! Waypoint labels: `istio.io/use-waypoint` must name an existing waypoint Gateway, and one
//! in another namespace (`istio.io/use-waypoint-namespace`) must allow the labelled object's
//! namespace on its HBONE listener.

use super::{Context, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL};
use crate::finding::{Code, Finding};
use crate::gateway::{Gateway, WAYPOINT_CLASS};
use crate::gateway_status::listeners::namespace_allowed;
use crate::object::{Kind, LoadedObject, Object};
use crate::snapshot::ConfigSnapshot;
use std::collections::BTreeMap;

/// Port of a waypoint's HBONE listener.
const HBONE_PORT: i32 = 15008;

/// Whether objects of `namespace` may use `waypoint` (in `waypoint_namespace`): always from
/// its own namespace, else as its HBONE listener (port 15008, protocol `HBONE`)'s
/// `allowedRoutes.namespaces` says (Same when unset or when there is no such listener), as
/// Istio decides.
#[must_use]
pub fn waypoint_allows_namespace(
    snapshot: &ConfigSnapshot,
    waypoint: &Gateway,
    waypoint_namespace: &str,
    namespace: &str,
) -> bool {
    if waypoint_namespace == namespace {
        return true;
    }
    let mut listeners = waypoint.spec.listeners.iter();
    let hbone = listeners.find(|l| l.protocol == "HBONE" && l.port == HBONE_PORT);
    hbone.is_some_and(|l| namespace_allowed(snapshot, l, waypoint_namespace, namespace))
}

pub(super) fn check_waypoint_labels(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let mut reported_owners = std::collections::HashSet::new();
    let labelled = context
        .snapshot
        .objects()
        .iter()
        .filter(|o| matches!(o.object.kind(), Kind::Namespace | Kind::Service | Kind::Pod));
    for loaded in labelled {
        let own_namespace = loaded.object.namespace().unwrap_or(loaded.object.name());
        check_waypoint_label(
            context,
            loaded,
            loaded.object.labels(),
            own_namespace,
            findings,
        );
    }
    for pod in context.pods.iter().filter(|p| p.owner.is_some()) {
        let Some(owner) = pod
            .owner
            .as_ref()
            .filter(|o| reported_owners.insert((*o).clone()))
        else {
            continue;
        };
        let Some(loaded) =
            context
                .snapshot
                .get(owner.kind, owner.namespace.as_deref(), &owner.name)
        else {
            continue;
        };
        check_waypoint_label(context, loaded, &pod.labels(), pod.namespace(), findings);
    }
}

fn check_waypoint_label(
    context: &Context<'_>,
    loaded: &LoadedObject,
    labels: &BTreeMap<String, String>,
    own_namespace: &str,
    findings: &mut Vec<Finding>,
) {
    let Some(waypoint) = labels.get(USE_WAYPOINT_LABEL).filter(|w| *w != "none") else {
        return;
    };
    let namespace = labels
        .get(USE_WAYPOINT_NAMESPACE_LABEL)
        .map_or(own_namespace, String::as_str);
    let found = context
        .snapshot
        .get(Kind::Gateway, Some(namespace), waypoint);
    let (code, message) = match found.map(|l| &l.object) {
        Some(Object::Gateway(gateway)) if gateway.spec.gateway_class_name == WAYPOINT_CLASS => {
            if waypoint_allows_namespace(context.snapshot, gateway, namespace, own_namespace) {
                return;
            }
            let message = format!(
                "label {USE_WAYPOINT_LABEL}={waypoint} names waypoint {namespace}/{waypoint}, whose HBONE listener \
                 (port 15008) does not allow namespace {own_namespace} in allowedRoutes.namespaces; the waypoint is \
                 not used. Allow the namespace there (from: All or Selector) or use a waypoint of {own_namespace}"
            );
            (Code::WaypointNamespaceNotAllowed, message)
        }
        other => {
            let why = if other.is_some() {
                format!(
                    "Gateway {namespace}/{waypoint} exists but its gatewayClassName is not {WAYPOINT_CLASS}"
                )
            } else {
                format!("no Gateway {namespace}/{waypoint} exists")
            };
            let message = format!(
                "label {USE_WAYPOINT_LABEL}={waypoint} names a missing waypoint: {why}; traffic for it cannot be delivered. \
                 Create it (gatewayClassName: {WAYPOINT_CLASS}, listener {{name: mesh, port: 15008, protocol: HBONE}}) or remove the label"
            );
            (Code::WaypointNotFound, message)
        }
    };
    findings.push(Finding::new(
        code,
        Some(loaded.object.object_ref()),
        loaded.source.clone(),
        message,
    ));
}
