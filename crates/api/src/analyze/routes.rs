//! Route analysis: every parentRef and backendRef must name something that exists, be
//! allowed to attach, and cross namespaces only where a ReferenceGrant permits it. Parents
//! that are Gateways weft runs (or missing Gateways) are judged by the route status
//! ([`crate::gateway_status`], reported by `super::gateways`); backendRefs by
//! [`resolve_backend`], the rule behind the status's `ResolvedRefs`.

use super::Context;
use crate::finding::{Code, Finding};
use crate::gateway::GatewayListeners;
use crate::gateway_status::backends::{BackendReason, ISTIO_NETWORKING_GROUP, resolve_backend};
use crate::gateway_status::listeners::namespace_allowed;
use crate::gateway_status::{LISTENER_SET_GROUP, gateway_controller};
use crate::object::{Kind, LoadedObject, Object};
use crate::routes::{GATEWAY_GROUP, RouteRef, RouteView, route_view};
use crate::suggest::{Segment, display_path};

pub(super) fn check_routes(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for loaded in context.snapshot.objects() {
        let Some(view) = route_view(&loaded.object) else {
            continue;
        };
        let mut report = |code: Code, at: &[Segment], message: String| {
            findings.push(Finding::new(
                code,
                Some(loaded.object.object_ref()),
                loaded.source_at(at),
                message,
            ));
        };
        check_parents(context, loaded, &view, &mut report);
        check_backends(context, loaded, &view, &mut report);
    }
}

fn route_namespace(loaded: &LoadedObject) -> &str {
    loaded.object.namespace().unwrap_or_default()
}

fn check_parents(
    context: &Context<'_>,
    loaded: &LoadedObject,
    view: &RouteView<'_>,
    report: &mut impl FnMut(Code, &[Segment], String),
) {
    let namespace = route_namespace(loaded);
    for parent in &view.parents {
        let parent_namespace = parent.namespace.unwrap_or(namespace);
        let at = display_path(&parent.path);
        match (
            parent.group.unwrap_or(GATEWAY_GROUP),
            parent.kind.unwrap_or("Gateway"),
        ) {
            (GATEWAY_GROUP, "Gateway") => check_gateway_parent(context, loaded, parent, report),
            (GATEWAY_GROUP, "ListenerSet") | (LISTENER_SET_GROUP, "XListenerSet") => {
                let kind = match parent.kind {
                    Some("XListenerSet") => Kind::XListenerSet,
                    _ => Kind::ListenerSet,
                };
                if !context
                    .snapshot
                    .contains(kind, Some(parent_namespace), parent.name)
                {
                    report(
                        Code::RouteParentNotFound,
                        &parent.path,
                        format!(
                            "{at}: {kind} {parent_namespace}/{} does not exist",
                            parent.name
                        ),
                    );
                }
            }
            ("" | "core", "Service") => {
                if !context
                    .snapshot
                    .contains(Kind::Service, Some(parent_namespace), parent.name)
                {
                    report(
                        Code::RouteParentNotFound,
                        &parent.path,
                        format!(
                            "{at}: Service {parent_namespace}/{} does not exist",
                            parent.name
                        ),
                    );
                } else if context
                    .service_waypoint(parent_namespace, parent.name)
                    .is_none()
                {
                    let message = format!(
                        "{at}: Service {parent_namespace}/{} has no waypoint; in ambient mode a route attached to a Service is \
                         applied by the service's waypoint, so this route has no effect. Label the Service or its namespace \
                         istio.io/use-waypoint=<waypoint>",
                        parent.name
                    );
                    report(Code::RouteNeedsWaypoint, &parent.path, message);
                }
            }
            (ISTIO_NETWORKING_GROUP, "ServiceEntry") => {
                if !context.snapshot.contains(
                    Kind::ServiceEntry,
                    Some(parent_namespace),
                    parent.name,
                ) {
                    report(
                        Code::RouteParentNotFound,
                        &parent.path,
                        format!(
                            "{at}: ServiceEntry {parent_namespace}/{} does not exist",
                            parent.name
                        ),
                    );
                }
            }
            (group, kind) => report(
                Code::RouteParentNotFound,
                &parent.path,
                format!("{at}: parent kind {kind} ({group}) is not supported"),
            ),
        }
    }
}

/// A parent Gateway weft does not run as a gateway (a waypoint, another controller's
/// class): it must have the listener named and allow the route's namespace. Gateways weft
/// runs, and missing ones, are judged by the route status instead.
fn check_gateway_parent(
    context: &Context<'_>,
    loaded: &LoadedObject,
    parent: &RouteRef<'_>,
    report: &mut impl FnMut(Code, &[Segment], String),
) {
    let namespace = route_namespace(loaded);
    let parent_namespace = parent.namespace.unwrap_or(namespace);
    let at = display_path(&parent.path);
    let Some(Object::Gateway(gateway)) = context
        .snapshot
        .get(Kind::Gateway, Some(parent_namespace), parent.name)
        .map(|o| &o.object)
    else {
        return;
    };
    if gateway_controller(context.snapshot, &gateway.spec.gateway_class_name).is_some() {
        return;
    }
    let listeners: Vec<&GatewayListeners> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| {
            parent.section_name.is_none_or(|s| s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
        })
        .collect();
    if listeners.is_empty() {
        let wanted = parent.section_name.map_or_else(
            || format!("port {}", parent.port.unwrap_or_default()),
            |s| format!("listener \"{s}\""),
        );
        report(
            Code::RouteParentNotFound,
            &parent.path,
            format!(
                "{at}: Gateway {parent_namespace}/{} has no {wanted}",
                parent.name
            ),
        );
        return;
    }
    if !listeners
        .iter()
        .any(|l| namespace_allowed(context.snapshot, l, parent_namespace, namespace))
    {
        let message = format!(
            "{at}: no listener of Gateway {parent_namespace}/{} allows routes from namespace {namespace} \
             (listener allowedRoutes.namespaces.from defaults to Same); set it to All or a matching Selector",
            parent.name
        );
        report(Code::RouteParentNotAllowed, &parent.path, message);
    }
}

fn check_backends(
    context: &Context<'_>,
    loaded: &LoadedObject,
    view: &RouteView<'_>,
    report: &mut impl FnMut(Code, &[Segment], String),
) {
    let route = loaded.object.object_ref();
    for backend in &view.backends {
        let Err(error) = resolve_backend(context.snapshot, &route, backend) else {
            continue;
        };
        let code = match error.reason {
            BackendReason::InvalidKind => Code::RouteBackendInvalidKind,
            BackendReason::RefNotPermitted => Code::RouteCrossNamespaceNoGrant,
            BackendReason::BackendNotFound => Code::RouteBackendNotFound,
        };
        let at = display_path(&backend.path);
        let message = format!(
            "{at}: {} (ResolvedRefs: {}); requests routed to it fail with 500",
            error.message,
            error.reason.as_str()
        );
        report(code, &backend.path, message);
    }
}
