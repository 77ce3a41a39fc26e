//! HTTPRoutes and GRPCRoutes attached to a waypoint's services: a parentRef naming a
//! Service (group `""` or `core`, kind `Service`) or a ServiceEntry (group
//! `networking.istio.io`), namespace defaulting to the route's, optional port. Each is
//! converted by `weft_l7::from_api` with [`Resolver`] resolving its backendRefs; a route the
//! converter rejects is left out with a warning naming the route and the field.
//!
//! Gateways use the same conversion ([`convert`]) and resolver for the routes attached to
//! their listeners.

use std::cell::RefCell;

use weft_api::gateway_status::backends::{
    ISTIO_NETWORKING_GROUP, ResolvedBackend, resolve_backend,
};
use weft_api::routes::{RouteRef, route_view};
use weft_api::{Kind, LoadedObject, Object, ObjectRef};
use weft_l7::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use weft_proto::l7::{Backend, Route, Service};

use super::super::context::{Context, Dep, Unit};
use super::super::{Warning, kube_hostname, service_key};

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
                    let routes = to_parent_by_default(route, service);
                    service.routes.extend(routes);
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

/// GAMMA: a rule of a route attached to a Service that has no backendRefs sends to that
/// Service, on the port the request was addressed to. Such a route is given one copy per
/// service port (only its parentRef's port when it names one) whose backendless rules name
/// the Service and that port.
fn to_parent_by_default(route: Route, service: &Service) -> Vec<Route> {
    if route.rules.iter().all(|rule| !rule.backends.is_empty()) {
        return vec![route];
    }
    let ports: Vec<u32> = match route.port {
        0 => service.ports.iter().map(|p| p.port).collect(),
        port => vec![port],
    };
    let copy_for = |port: u32| {
        let mut copy = route.clone();
        copy.port = port;
        for rule in copy.rules.iter_mut().filter(|r| r.backends.is_empty()) {
            rule.backends.push(Backend {
                service: service.key.clone(),
                port,
                weight: 1,
                ..Backend::default()
            });
        }
        copy
    };
    ports.into_iter().map(copy_for).collect()
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
    /// The backendRef rule of the status computation (`gateway_status::backends`), so a
    /// reference status calls resolved is routed and one it rejects is answered 500 with
    /// the same reason: a Service (key of its hostname), a ServiceEntry (key of its first
    /// host) or an Istio `Hostname` (the ServiceEntry host of that name, preferring the
    /// route's namespace).
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String> {
        let reference = RouteRef {
            group: Some(target.group),
            kind: Some(target.kind).filter(|k| !k.is_empty()),
            name: target.name,
            namespace: Some(target.namespace),
            port: target.port.map(i32::from),
            section_name: None,
            path: Vec::new(),
        };
        let kind = match (target.group, target.kind) {
            (ISTIO_NETWORKING_GROUP, "ServiceEntry") => Some(Kind::ServiceEntry),
            ("" | "core", "" | "Service") => Some(Kind::Service),
            _ => None,
        };
        if let Some(kind) = kind {
            // creating, editing or deleting it re-translates what uses it
            self.deps.borrow_mut().push(Dep::Object(ObjectRef {
                kind,
                namespace: Some(target.namespace.to_owned()),
                name: target.name.to_owned(),
            }));
        }
        let snapshot = self.context.snapshot;
        let resolved = resolve_backend(snapshot, self.route, &reference)
            .map_err(|e| format!("{}: {}", e.reason.as_str(), e.message))?;
        match resolved {
            ResolvedBackend::Service(service) => {
                let hostname = kube_hostname(service, self.context.options);
                Ok(service_key(target.namespace, &hostname))
            }
            ResolvedBackend::ServiceEntry(entry) => match entry.spec.hosts.first() {
                Some(host) => Ok(service_key(target.namespace, host)),
                None => Err(format!(
                    "BackendNotFound: ServiceEntry {}/{} has no host",
                    target.namespace, target.name
                )),
            },
            ResolvedBackend::Hostname(host) => self.hostname_key(&host),
        }
    }
}

impl Resolver<'_, '_> {
    /// The service key of an Istio `Hostname` backend: a ServiceEntry host of that name in
    /// the route's namespace, else in any namespace.
    fn hostname_key(&self, host: &str) -> Result<String, String> {
        let route_namespace = self.route.namespace.as_deref().unwrap_or_default();
        let own = service_key(route_namespace, host);
        if self.context.services.contains_key(&own) {
            return Ok(own);
        }
        let suffix = format!("/{host}");
        let mut keys = self.context.services.keys();
        keys.find(|key| key.ends_with(&suffix))
            .cloned()
            .ok_or_else(|| format!("BackendNotFound: no ServiceEntry has host {host}"))
    }
}
