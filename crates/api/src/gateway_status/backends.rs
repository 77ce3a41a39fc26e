//! Whether a route's `backendRef` resolves: the one rule behind a route's `ResolvedRefs`
//! condition, `weft analyze`'s backend findings and the control plane's route translation.
//! A backend is a core `Service` (with the port, when one is given), an Istio
//! `ServiceEntry` or an Istio `Hostname` (`networking.istio.io`); in another namespace it
//! needs a `ReferenceGrant` there that opens it to the route's kind and namespace.

use crate::object::{Kind, Object, ObjectRef};
use crate::routes::{GrantFrom, GrantTo, RouteRef, reference_grant_allows};
use crate::snapshot::ConfigSnapshot;
use k8s_openapi::api::core::v1::Service;

/// Istio's networking API group (ServiceEntry, Hostname backends).
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

/// Why a backendRef does not resolve: the route `ResolvedRefs` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendReason {
    /// The group/kind is not one weft routes to.
    InvalidKind,
    /// Another namespace, and no ReferenceGrant there allows it.
    RefNotPermitted,
    /// The object (or its port) does not exist.
    BackendNotFound,
}

impl BackendReason {
    /// The condition reason string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackendReason::InvalidKind => "InvalidKind",
            BackendReason::RefNotPermitted => "RefNotPermitted",
            BackendReason::BackendNotFound => "BackendNotFound",
        }
    }
}

/// A backendRef that does not resolve, and why (the message names the target, not the
/// field path: callers add that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    /// The reason.
    pub reason: BackendReason,
    /// What is wrong.
    pub message: String,
}

/// What a backendRef resolved to.
#[derive(Debug, Clone)]
pub enum ResolvedBackend<'a> {
    /// A core Service.
    Service(&'a Service),
    /// An Istio ServiceEntry.
    ServiceEntry(&'a crate::istio::ServiceEntry),
    /// An Istio `Hostname` backend (the name is the host).
    Hostname(String),
}

/// Resolves one backendRef of `route` (kind and namespace of the route matter). Checks, in
/// order: kind, cross-namespace grant, existence, port.
pub fn resolve_backend<'s>(
    snapshot: &'s ConfigSnapshot,
    route: &ObjectRef,
    backend: &RouteRef<'_>,
) -> Result<ResolvedBackend<'s>, BackendError> {
    let route_namespace = route.namespace.as_deref().unwrap_or_default();
    let namespace = backend.namespace.unwrap_or(route_namespace);
    let group = match backend.group.unwrap_or("") {
        "core" => "",
        other => other,
    };
    let kind = backend.kind.unwrap_or("Service");
    let what = format!("{kind} {namespace}/{}", backend.name);
    let fail = |reason, message| Err(BackendError { reason, message });
    let target_kind = match (group, kind) {
        ("", "Service") => Kind::Service,
        (ISTIO_NETWORKING_GROUP, "ServiceEntry") => Kind::ServiceEntry,
        (ISTIO_NETWORKING_GROUP, "Hostname") => {
            return Ok(ResolvedBackend::Hostname(backend.name.to_owned()));
        }
        _ => {
            let shown = if group.is_empty() { "core" } else { group };
            let message = format!(
                "backendRef {what} (group {shown}) is not a kind weft routes to: use a Service, or a ServiceEntry or Hostname of {ISTIO_NETWORKING_GROUP}"
            );
            return fail(BackendReason::InvalidKind, message);
        }
    };
    if namespace != route_namespace {
        let from = GrantFrom {
            kind: route.kind,
            namespace: route_namespace,
        };
        let to = GrantTo {
            namespace,
            group,
            kind,
            name: backend.name,
        };
        if !reference_grant_allows(snapshot, &from, &to) {
            let message = format!(
                "{what} is in another namespace and no ReferenceGrant in {namespace} allows {} from namespace {route_namespace} to refer to it",
                route.kind
            );
            return fail(BackendReason::RefNotPermitted, message);
        }
    }
    match snapshot
        .get(target_kind, Some(namespace), backend.name)
        .map(|l| &l.object)
    {
        Some(Object::Service(service)) => check_port(service, &what, backend.port),
        Some(Object::ServiceEntry(entry)) => Ok(ResolvedBackend::ServiceEntry(entry)),
        _ => fail(
            BackendReason::BackendNotFound,
            format!("{what} does not exist"),
        ),
    }
}

fn check_port<'s>(
    service: &'s Service,
    what: &str,
    port: Option<i32>,
) -> Result<ResolvedBackend<'s>, BackendError> {
    let ports: Vec<i32> = service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect();
    match port.filter(|p| !ports.contains(p)) {
        None => Ok(ResolvedBackend::Service(service)),
        Some(port) => {
            let listed: Vec<String> = ports.iter().map(ToString::to_string).collect();
            Err(BackendError {
                reason: BackendReason::BackendNotFound,
                message: format!("{what} has no port {port} (ports: {})", listed.join(", ")),
            })
        }
    }
}
