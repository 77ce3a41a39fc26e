//! Waypoint binding: `istio.io/use-waypoint` on the object itself, else on its namespace,
//! resolved to the waypoint `Gateway` and checked against its `istio.io/waypoint-for` and,
//! for a waypoint of another namespace, its HBONE listener's `allowedRoutes.namespaces`.

use super::Warning;
use super::context::{Context, Dep, Unit};
use std::collections::BTreeMap;
use weft_api::analyze::waypoint_allows_namespace;
use weft_api::gateway::WAYPOINT_CLASS;
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::workload::{GatewayAddress, NamespacedHostname, gateway_address};

/// Label naming the waypoint that serves an object or namespace.
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// Label naming the namespace of that waypoint (default: the object's namespace).
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
/// Label on a waypoint Gateway saying what traffic it serves.
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";
/// HBONE port of a waypoint.
pub const WAYPOINT_HBONE_PORT: u32 = 15008;

/// What kind of traffic asks for a waypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaypointUser {
    Service,
    Workload,
}

impl WaypointUser {
    fn accepted_by(self, waypoint_for: &str) -> bool {
        matches!(
            (self, waypoint_for),
            (_, "all") | (WaypointUser::Service, "service") | (WaypointUser::Workload, "workload")
        )
    }
}

/// The waypoint of an object with `labels` in `namespace`, recording the dependencies and
/// warnings on `unit`.
pub(crate) fn resolve_waypoint(
    context: &Context<'_>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    user: WaypointUser,
    object: &ObjectRef,
    unit: &mut Unit,
) -> Option<GatewayAddress> {
    let gateway = waypoint_gateway(context, namespace, labels, user, object, unit)?;
    let gateway_namespace = gateway.namespace.unwrap_or_default();
    let hostname = format!(
        "{}.{gateway_namespace}.svc.{}",
        gateway.name, context.options.domain_suffix
    );
    Some(GatewayAddress {
        hbone_mtls_port: WAYPOINT_HBONE_PORT,
        destination: Some(gateway_address::Destination::Hostname(NamespacedHostname {
            namespace: gateway_namespace,
            hostname,
        })),
    })
}

/// The waypoint Gateway serving an object with `labels` in `namespace` (see
/// [`resolve_waypoint`]).
pub(crate) fn waypoint_gateway(
    context: &Context<'_>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    user: WaypointUser,
    object: &ObjectRef,
    unit: &mut Unit,
) -> Option<ObjectRef> {
    let namespace_labels;
    let (chosen, explicit) = if labels.contains_key(USE_WAYPOINT_LABEL) {
        (labels, true)
    } else {
        namespace_labels = context.snapshot.namespace_labels(namespace);
        (&namespace_labels, false)
    };
    let name = chosen.get(USE_WAYPOINT_LABEL)?;
    if name == "none" || name.is_empty() {
        return None;
    }
    let gateway_namespace = chosen
        .get(USE_WAYPOINT_NAMESPACE_LABEL)
        .map_or(namespace, String::as_str);
    let gateway_ref = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some(gateway_namespace.to_owned()),
        name: name.clone(),
    };
    unit.deps.push(Dep::Object(gateway_ref.clone()));
    let mut warn = |message: String| {
        unit.warnings.push(Warning {
            object: object.clone(),
            message,
        });
    };
    let Some(Object::Gateway(gateway)) = context
        .snapshot
        .get(Kind::Gateway, Some(gateway_namespace), name)
        .map(|l| &l.object)
    else {
        warn(format!(
            "waypoint {gateway_namespace}/{name} does not exist; traffic is not sent through a waypoint"
        ));
        return None;
    };
    if gateway.spec.gateway_class_name != WAYPOINT_CLASS {
        warn(format!(
            "Gateway {gateway_namespace}/{name} is not a waypoint (class {:?}, expected {WAYPOINT_CLASS:?}); ignored",
            gateway.spec.gateway_class_name
        ));
        return None;
    }
    if !waypoint_allows_namespace(context.snapshot, gateway, gateway_namespace, namespace) {
        warn(format!(
            "waypoint {gateway_namespace}/{name} does not allow namespace {namespace} on its HBONE listener \
             (port 15008, allowedRoutes.namespaces); not used"
        ));
        return None;
    }
    let waypoint_for = gateway
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(WAYPOINT_FOR_LABEL))
        .map_or("service", String::as_str);
    if !user.accepted_by(waypoint_for) {
        if explicit {
            warn(format!(
                "waypoint {gateway_namespace}/{name} has {WAYPOINT_FOR_LABEL}={waypoint_for}, which does not serve \
                 this {}; not used",
                if user == WaypointUser::Service {
                    "service"
                } else {
                    "workload"
                }
            ));
        }
        return None;
    }
    Some(gateway_ref)
}
