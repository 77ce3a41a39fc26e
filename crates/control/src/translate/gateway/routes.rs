//! The routes attached to one gateway listener, as `weft_api::gateway_status::attach`
//! decided: HTTPRoutes and GRPCRoutes converted like a waypoint's (one converter, one
//! backend resolver: `l7::routes`), their hostnames replaced by the ones intersected with
//! the listener's; TLSRoutes and TCPRoutes as [`L4Route`]s with weighted backends resolved
//! the same way.
//!
//! A backend Service labelled `istio.io/ingress-use-waypoint: "true"` (or in a namespace
//! so labelled) that has a waypoint is marked `via_waypoint`: the gateway sends its
//! traffic through that waypoint, which applies the service's L7 policy.

use weft_api::routes::{GATEWAY_GROUP, route_view};
use weft_api::{ConfigSnapshot, LoadedObject, Object, ObjectRef};
use weft_l7::from_api::{BackendResolver, BackendTarget};
use weft_proto::l7::{Backend, L4Route, Listener, Route, filter, listener};

use super::super::Warning;
use super::super::context::{Context, Dep, ServiceSource, Unit};
use super::super::l7::routes::{Resolver, convert};
use weft_api::gateway_status::ListenerAttachment;

/// Label of a Service (or Namespace) whose gateway traffic goes through its waypoint.
pub const INGRESS_USE_WAYPOINT_LABEL: &str = "istio.io/ingress-use-waypoint";

/// Adds the routes `attached` lists to `listener`, sorted by kind, namespace and name.
pub(super) fn attach(
    context: &Context<'_>,
    parent: &str,
    attached: &ListenerAttachment,
    listener: &mut Listener,
    unit: &mut Unit,
) {
    let http = matches!(
        listener.protocol(),
        listener::Protocol::Http | listener::Protocol::Https
    );
    for route in &attached.routes {
        unit.deps.push(Dep::Object(route.route.clone()));
        let object = &route.route;
        let Some(loaded) =
            context
                .snapshot
                .get(object.kind, object.namespace.as_deref(), &object.name)
        else {
            continue;
        };
        match (&loaded.object, http) {
            (Object::HttpRoute(_) | Object::GrpcRoute(_), true) => {
                if let Some(mut wire) = convert(context, loaded, None, parent, unit) {
                    wire.hostnames.clone_from(&route.hostnames);
                    mark_via_waypoint(context, &mut wire);
                    listener.http_routes.push(wire);
                }
            }
            (Object::TlsRoute(_) | Object::TcpRoute(_), false) => {
                let wire = l4_route(context, loaded, &route.hostnames, parent, unit);
                listener.l4_routes.extend(wire);
            }
            _ => {}
        }
    }
    listener.http_routes.sort_by(|a, b| {
        let key = |r: &Route| (r.kind, r.namespace.clone(), r.name.clone());
        key(a).cmp(&key(b))
    });
    listener
        .l4_routes
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
}

/// A TLSRoute or TCPRoute: the backends of its first rule (the wire has one list).
fn l4_route(
    context: &Context<'_>,
    loaded: &LoadedObject,
    hostnames: &[String],
    parent: &str,
    unit: &mut Unit,
) -> Option<L4Route> {
    let object = loaded.object.object_ref();
    let (rules, metadata) = match &loaded.object {
        Object::TlsRoute(route) => (&route.spec.rules, &route.metadata),
        Object::TcpRoute(route) => (&route.spec.rules, &route.metadata),
        _ => return None,
    };
    if rules.len() > 1 {
        unit.warnings.push(Warning {
            object: object.clone(),
            message: format!(
                "on {parent}: only spec.rules[0] is used ({} rules; a TLS or TCP connection \
                 has nothing to choose a rule by)",
                rules.len()
            ),
        });
    }
    let resolver = Resolver::new(context, &object);
    let namespace = object.namespace.as_deref().unwrap_or_default();
    let refs = rules
        .first()
        .map(|r| r.backend_refs.as_slice())
        .unwrap_or_default();
    let backends = refs
        .iter()
        .map(|reference| {
            let port = reference.port.and_then(|p| u16::try_from(p).ok());
            let target = BackendTarget {
                group: reference.group.as_deref().unwrap_or_default(),
                kind: reference.kind.as_deref().unwrap_or("Service"),
                namespace: reference.namespace.as_deref().unwrap_or(namespace),
                name: &reference.name,
                port,
            };
            let weight = reference
                .weight
                .map_or(1, |w| u32::try_from(w).unwrap_or(0));
            l4_backend(context, &resolver, &target, weight)
        })
        .collect();
    unit.deps.extend(resolver.into_deps());
    Some(L4Route {
        namespace: namespace.to_owned(),
        name: object.name.clone(),
        created: metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        hostnames: hostnames.to_vec(),
        backends,
    })
}

/// One resolved (or unresolved, with the reason) backend of an L4 route.
fn l4_backend(
    context: &Context<'_>,
    resolver: &Resolver<'_, '_>,
    target: &BackendTarget<'_>,
    weight: u32,
) -> Backend {
    let resolved = match target.port {
        None if target.kind == "Service" && matches!(target.group, "" | "core") => Err(format!(
            "BackendNotFound: backendRef Service {}/{} has no port (required for a Service)",
            target.namespace, target.name
        )),
        _ => resolver.resolve(target),
    };
    let mut backend = Backend {
        port: target.port.map_or(0, u32::from),
        weight,
        ..Backend::default()
    };
    match resolved {
        Ok(service) => {
            backend.via_waypoint = uses_waypoint(context, &service);
            backend.service = service;
        }
        Err(reason) => backend.unresolved = reason,
    }
    backend
}

/// Marks the route's resolved backends (and mirror backends) that go through a waypoint.
fn mark_via_waypoint(context: &Context<'_>, route: &mut Route) {
    for rule in &mut route.rules {
        let filters = rule
            .filters
            .iter_mut()
            .chain(rule.backends.iter_mut().flat_map(|b| b.filters.iter_mut()));
        let mirrors: Vec<&mut Backend> = filters
            .filter_map(|f| match &mut f.kind {
                Some(filter::Kind::RequestMirror(mirror)) => mirror.backend.as_mut(),
                _ => None,
            })
            .collect();
        for backend in mirrors {
            backend.via_waypoint =
                backend.unresolved.is_empty() && uses_waypoint(context, &backend.service);
        }
        for backend in &mut rule.backends {
            backend.via_waypoint =
                backend.unresolved.is_empty() && uses_waypoint(context, &backend.service);
        }
    }
}

/// Whether gateway traffic to the service `key` goes through its waypoint: it has one,
/// and it (or its namespace) carries `istio.io/ingress-use-waypoint: "true"`.
fn uses_waypoint(context: &Context<'_>, key: &str) -> bool {
    if context.waypoint_index().waypoint_of(key).is_none() {
        return false;
    }
    let Some(ServiceSource::Kube(service)) = context.services.get(key).and_then(|s| s.first())
    else {
        return false;
    };
    let is_true = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels
            .and_then(|l| l.get(INGRESS_USE_WAYPOINT_LABEL))
            .is_some_and(|v| v == "true")
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    is_true(service.metadata.labels.as_ref())
        || is_true(Some(&context.snapshot.namespace_labels(namespace)))
}

/// Every service key a listener's routes send to (for BackendTLSPolicies).
pub(super) fn backend_services(listener: &Listener) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |backend: &Backend| {
        if backend.unresolved.is_empty() && !backend.service.is_empty() {
            out.push(backend.service.clone());
        }
    };
    for rule in listener.http_routes.iter().flat_map(|r| &r.rules) {
        let filters = rule
            .filters
            .iter()
            .chain(rule.backends.iter().flat_map(|b| &b.filters));
        for filter in filters {
            if let Some(filter::Kind::RequestMirror(mirror)) = &filter.kind {
                mirror.backend.iter().for_each(&mut add);
            }
        }
        rule.backends.iter().for_each(&mut add);
    }
    listener
        .l4_routes
        .iter()
        .flat_map(|r| &r.backends)
        .for_each(add);
    out
}

/// The Gateways (`<ns>/<name>`) a route's parentRefs name.
pub(super) fn gateways_of_route(snapshot: &ConfigSnapshot, object: &ObjectRef) -> Vec<String> {
    let found = snapshot.get(object.kind, object.namespace.as_deref(), &object.name);
    let Some(view) = found.and_then(|l| route_view(&l.object)) else {
        return Vec::new();
    };
    let namespace = object.namespace.as_deref().unwrap_or_default();
    view.parents
        .iter()
        .filter(|p| p.group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP)
        .filter(|p| p.kind.unwrap_or("Gateway") == "Gateway")
        .map(|p| format!("{}/{}", p.namespace.unwrap_or(namespace), p.name))
        .collect()
}
