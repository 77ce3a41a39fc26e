//! HTTPRoutes and GRPCRoutes attached to a waypoint's services: a parentRef naming a
//! Service (group `""` or `core`, kind `Service`) or a ServiceEntry (group
//! `networking.istio.io`), namespace defaulting to the route's, optional port. Each is
//! converted by `weft_l7::from_api` with [`Resolver`] resolving its backendRefs; a route the
//! converter rejects is left out with a warning naming the route and the field.
//!
//! Gateways use the same conversion ([`convert`]) and resolver for the routes attached to
//! their listeners.

use std::cell::RefCell;

use weft_api::routes::{GrantFrom, GrantTo, RouteRef, reference_grant_allows, route_view};
use weft_api::{Kind, LoadedObject, Object, ObjectRef};
use weft_l7::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use weft_proto::l7::{Route, Service};

use super::super::context::{Context, Dep, Unit};
use super::super::{Warning, kube_hostname, service_key};

const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

/// Adds to `services` (bound to the waypoint `waypoint`) the routes whose parentRefs name
/// them.
pub(super) fn attach_routes(
    context: &Context<'_>,
    waypoint: &str,
    services: &mut [Service],
    unit: &mut Unit,
) {
    let routes = context.snapshot.of_kind(Kind::HttpRoute);
    for loaded in routes.chain(context.snapshot.of_kind(Kind::GrpcRoute)) {
        let Some(view) = route_view(&loaded.object) else {
            continue;
        };
        for (parent, keys) in view
            .parents
            .iter()
            .map(|p| (p, parent_keys(context, loaded, p)))
        {
            for service in services.iter_mut().filter(|s| keys.contains(&s.key)) {
                unit.deps.push(Dep::Object(loaded.object.object_ref()));
                let port = parent.port.and_then(|p| u16::try_from(p).ok());
                let parent = format!("waypoint {waypoint}");
                if let Some(route) = convert(context, loaded, port, &parent, unit) {
                    service.routes.push(route);
                }
            }
        }
    }
    for service in services {
        service.routes.sort_by(|a, b| {
            let key = |r: &Route| (r.kind, r.namespace.clone(), r.name.clone(), r.port);
            key(a).cmp(&key(b))
        });
    }
}

/// The waypoints (names) whose services a route's parentRefs name.
pub(super) fn waypoints_of_route(context: &Context<'_>, object: &ObjectRef) -> Vec<String> {
    let Some(loaded) = context
        .snapshot
        .get(object.kind, object.namespace.as_deref(), &object.name)
    else {
        return Vec::new();
    };
    let Some(view) = route_view(&loaded.object) else {
        return Vec::new();
    };
    let index = context.waypoint_index();
    let keys = view
        .parents
        .iter()
        .flat_map(|p| parent_keys(context, loaded, p));
    keys.filter_map(|key| index.waypoint_of(&key).map(str::to_owned))
        .collect()
}

/// The service keys a parentRef names (none for a Gateway parent).
fn parent_keys(context: &Context<'_>, route: &LoadedObject, parent: &RouteRef<'_>) -> Vec<String> {
    let namespace = parent
        .namespace
        .or(route.object.namespace())
        .unwrap_or_default();
    match (
        parent.group.unwrap_or("gateway.networking.k8s.io"),
        parent.kind,
    ) {
        ("" | "core", Some("Service")) => {
            let hostname = format!(
                "{}.{namespace}.svc.{}",
                parent.name, context.options.domain_suffix
            );
            vec![service_key(namespace, &hostname)]
        }
        (ISTIO_NETWORKING_GROUP, Some("ServiceEntry")) => {
            let entry = context
                .snapshot
                .get(Kind::ServiceEntry, Some(namespace), parent.name);
            let hosts = match entry.map(|l| &l.object) {
                Some(Object::ServiceEntry(entry)) => entry.spec.hosts.clone(),
                _ => Vec::new(),
            };
            hosts.iter().map(|h| service_key(namespace, h)).collect()
        }
        _ => Vec::new(),
    }
}

/// The wire route of an HTTPRoute or GRPCRoute attached to `parent` (`waypoint ns/name`,
/// `gateway ns/name`, for the warning), or `None` with a warning when the converter
/// rejects it. Every Service its backends name is a dependency of `unit`.
pub(crate) fn convert(
    context: &Context<'_>,
    loaded: &LoadedObject,
    port: Option<u16>,
    parent: &str,
    unit: &mut Unit,
) -> Option<Route> {
    let object = loaded.object.object_ref();
    let resolver = Resolver::new(context, &object);
    let converted = match &loaded.object {
        Object::HttpRoute(route) => http_route(route, port, &resolver),
        Object::GrpcRoute(route) => grpc_route(route, port, &resolver),
        _ => return None,
    };
    unit.deps.extend(resolver.into_deps());
    match converted {
        Ok(route) => Some(route),
        Err(error) => {
            let message = format!("not attached to {parent}: {error}; its requests get no route");
            unit.warnings.push(Warning { object, message });
            None
        }
    }
}

/// Resolves a route's backendRefs to service keys: a Service in the route's namespace, or
/// in another one that a ReferenceGrant opens to the route. Each Service it looks up is a
/// dependency (so creating a missing one re-translates the waypoint).
pub(crate) struct Resolver<'c, 'a> {
    context: &'c Context<'a>,
    route: &'c ObjectRef,
    deps: RefCell<Vec<Dep>>,
}

impl<'c, 'a> Resolver<'c, 'a> {
    /// A resolver for the backendRefs of `route`.
    pub(crate) fn new(context: &'c Context<'a>, route: &'c ObjectRef) -> Self {
        Resolver {
            context,
            route,
            deps: RefCell::new(Vec::new()),
        }
    }

    /// The Services it looked up (dependencies of the resource being translated).
    pub(crate) fn into_deps(self) -> Vec<Dep> {
        self.deps.into_inner()
    }
}

impl BackendResolver for Resolver<'_, '_> {
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String> {
        let group = if target.group == "core" {
            ""
        } else {
            target.group
        };
        let kind = if target.kind.is_empty() {
            "Service"
        } else {
            target.kind
        };
        let what = format!("{kind} {}/{}", target.namespace, target.name);
        if !group.is_empty() || kind != "Service" {
            let group = if group.is_empty() { "core" } else { group };
            return Err(format!(
                "InvalidKind: backendRef {what} (group {group}) is not a Service"
            ));
        }
        let route_namespace = self.route.namespace.as_deref().unwrap_or_default();
        if target.namespace != route_namespace && !self.granted(target) {
            return Err(format!(
                "RefNotPermitted: {what} is in another namespace and no ReferenceGrant there \
                 allows {} {route_namespace}/{} to use it",
                self.route.kind, self.route.name
            ));
        }
        self.deps.borrow_mut().push(Dep::Object(ObjectRef {
            kind: Kind::Service,
            namespace: Some(target.namespace.to_owned()),
            name: target.name.to_owned(),
        }));
        let snapshot = self.context.snapshot;
        let Some(Object::Service(service)) = snapshot
            .get(Kind::Service, Some(target.namespace), target.name)
            .map(|l| &l.object)
        else {
            return Err(format!("BackendNotFound: {what} does not exist"));
        };
        if let Some(port) = target.port {
            let mut ports = service.spec.iter().flat_map(|s| s.ports.iter().flatten());
            if !ports.any(|p| p.port == i32::from(port)) {
                return Err(format!("BackendNotFound: {what} has no port {port}"));
            }
        }
        let hostname = kube_hostname(service, self.context.options);
        Ok(service_key(target.namespace, &hostname))
    }
}

impl Resolver<'_, '_> {
    fn granted(&self, target: &BackendTarget<'_>) -> bool {
        let from = GrantFrom {
            kind: self.route.kind,
            namespace: self.route.namespace.as_deref().unwrap_or_default(),
        };
        let to = GrantTo {
            namespace: target.namespace,
            group: "",
            kind: "Service",
            name: target.name,
        };
        reference_grant_allows(self.context.snapshot, &from, &to)
    }
}
