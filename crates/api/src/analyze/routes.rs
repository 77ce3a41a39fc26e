//! Route analysis: every parentRef and backendRef must name something that exists, be
//! allowed to attach, and cross namespaces only where a ReferenceGrant permits it.

use super::Context;
use crate::finding::{Code, Finding};
use crate::gateway::GatewayListeners;
use crate::object::{Kind, LoadedObject, Object};
use crate::routes::{
    GATEWAY_GROUP, GrantFrom, GrantTo, RouteRef, RouteView, reference_grant_allows, route_view,
};
use crate::suggest::{Segment, display_path};

const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

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
            (GATEWAY_GROUP, "ListenerSet") => {
                if !context.snapshot.contains(
                    Kind::ListenerSet,
                    Some(parent_namespace),
                    parent.name,
                ) {
                    report(
                        Code::RouteParentNotFound,
                        &parent.path,
                        format!(
                            "{at}: ListenerSet {parent_namespace}/{} does not exist",
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
        report(
            Code::RouteParentNotFound,
            &parent.path,
            format!(
                "{at}: Gateway {parent_namespace}/{} does not exist",
                parent.name
            ),
        );
        return;
    };
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
    let namespace_labels = context.snapshot.namespace_labels(namespace);
    if !listeners
        .iter()
        .any(|l| listener_allows(l, parent_namespace, namespace, &namespace_labels))
    {
        let message = format!(
            "{at}: no listener of Gateway {parent_namespace}/{} allows routes from namespace {namespace} \
             (listener allowedRoutes.namespaces.from defaults to Same); set it to All or a matching Selector",
            parent.name
        );
        report(Code::RouteParentNotAllowed, &parent.path, message);
    }
}

fn listener_allows(
    listener: &GatewayListeners,
    gateway_namespace: &str,
    route_namespace: &str,
    route_namespace_labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    use gateway_api::gateways::GatewayListenersAllowedRoutesNamespacesFrom as From;
    let namespaces = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        Some(From::All) => true,
        Some(From::Selector) => {
            namespaces
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|selector| {
                    let match_labels = selector.match_labels.clone().unwrap_or_default();
                    selector
                        .match_expressions
                        .as_ref()
                        .is_none_or(Vec::is_empty)
                        && crate::selector::labels_match(&match_labels, route_namespace_labels)
                })
        }
        Some(From::Same) | None => gateway_namespace == route_namespace,
    }
}

fn check_backends(
    context: &Context<'_>,
    loaded: &LoadedObject,
    view: &RouteView<'_>,
    report: &mut impl FnMut(Code, &[Segment], String),
) {
    let namespace = route_namespace(loaded);
    for backend in &view.backends {
        let backend_namespace = backend.namespace.unwrap_or(namespace);
        let at = display_path(&backend.path);
        let (group, kind) = (
            backend.group.unwrap_or(""),
            backend.kind.unwrap_or("Service"),
        );
        let exists = match (group, kind) {
            ("" | "core", "Service") => {
                service_has_port(context, backend_namespace, backend, &at, report)
            }
            (ISTIO_NETWORKING_GROUP, "ServiceEntry") => {
                context
                    .snapshot
                    .contains(Kind::ServiceEntry, Some(backend_namespace), backend.name)
            }
            (ISTIO_NETWORKING_GROUP, "Hostname") => true,
            _ => {
                report(
                    Code::RouteBackendNotFound,
                    &backend.path,
                    format!("{at}: backend kind {kind} ({group}) is not supported"),
                );
                continue;
            }
        };
        if !exists {
            report(
                Code::RouteBackendNotFound,
                &backend.path,
                format!(
                    "{at}: {kind} {backend_namespace}/{} does not exist",
                    backend.name
                ),
            );
        } else if backend_namespace != namespace
            && !grant_allows(
                context,
                &loaded.object,
                backend_namespace,
                group,
                kind,
                backend.name,
            )
        {
            let message = format!(
                "{at}: {kind} {backend_namespace}/{} is in another namespace and no ReferenceGrant in {backend_namespace} \
                 allows {} from namespace {namespace} to refer to it; the reference is refused",
                backend.name,
                loaded.object.kind()
            );
            report(Code::RouteCrossNamespaceNoGrant, &backend.path, message);
        }
    }
}

/// Whether the Service exists; reports a missing port separately (and still returns true).
fn service_has_port(
    context: &Context<'_>,
    namespace: &str,
    backend: &RouteRef<'_>,
    at: &str,
    report: &mut impl FnMut(Code, &[Segment], String),
) -> bool {
    let Some(Object::Service(service)) = context
        .snapshot
        .get(Kind::Service, Some(namespace), backend.name)
        .map(|o| &o.object)
    else {
        return false;
    };
    let ports: Vec<i32> = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect();
    if let Some(port) = backend.port.filter(|p| !ports.contains(p)) {
        let listed: Vec<String> = ports.iter().map(ToString::to_string).collect();
        let message = format!(
            "{at}: Service {namespace}/{} has no port {port} (ports: {})",
            backend.name,
            listed.join(", ")
        );
        report(Code::RouteBackendNotFound, &backend.path, message);
    }
    true
}

/// Whether a ReferenceGrant in `target_namespace` lets `route` refer to `group/kind name`.
fn grant_allows(
    context: &Context<'_>,
    route: &Object,
    target_namespace: &str,
    group: &str,
    kind: &str,
    name: &str,
) -> bool {
    let from = GrantFrom {
        kind: route.kind(),
        namespace: route.namespace().unwrap_or_default(),
    };
    let to = GrantTo {
        namespace: target_namespace,
        group,
        kind,
        name,
    };
    reference_grant_allows(context.snapshot, &from, &to)
}
