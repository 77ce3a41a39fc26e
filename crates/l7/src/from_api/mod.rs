//! Gateway API `HTTPRoute` and `GRPCRoute` (weft-api's typed model) to the wire routes of
//! `weft.l7.v1`, as the control plane sends them to a waypoint. Backend references are
//! resolved through the caller's [`BackendResolver`]; a reference it cannot resolve stays
//! in the route as `unresolved` (its share of requests is answered 500).
//!
//! The converter checks what the wire cannot express (durations, filter shapes against
//! their `type`, unsupported filters and fields, ports, weights) and then compiles its
//! result with the table's own compiler, so a route it returns is one a waypoint accepts:
//! every error, from either step, names the field of the user's route.

mod filters;
mod grpc;
mod http;
#[cfg(test)]
mod tests;

pub use grpc::grpc_route;
pub use http::http_route;

use crate::routes::{FieldError, RouteError, RouteKind, RouteName, compile_route};
use filters::BackendRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weft_proto::l7 as pb;

/// A `backendRef` (or mirror `backendRef`) to resolve, with the defaults of the spec
/// filled in: group `""` (core), kind `Service`, the route's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTarget<'a> {
    /// API group (`""` for core).
    pub group: &'a str,
    /// Kind (`Service` when unset).
    pub kind: &'a str,
    /// Namespace, defaulted to the route's.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Port, when given.
    pub port: Option<u16>,
}

/// Turns a backend reference into the workload API's service key.
pub trait BackendResolver {
    /// The service key `<namespace>/<hostname>`, or why the reference cannot be used
    /// (missing Service, no ReferenceGrant, unsupported kind), which becomes `unresolved`.
    ///
    /// # Errors
    /// The reason, as the text of the wire's `unresolved`.
    fn resolve(&self, target: &BackendTarget<'_>) -> Result<String, String>;
}

/// Weft's retry defaults where Gateway API leaves them to the implementation.
pub mod defaults {
    /// Retries when `retry.attempts` is unset.
    pub const RETRY_ATTEMPTS: u32 = 2;
    /// Minimum wait before a retry when `retry.backoff` is unset, in milliseconds.
    pub const RETRY_BACKOFF_MS: u64 = 25;
}

/// The route's name and the wire route's identifying fields.
fn wire_route(
    kind: RouteKind,
    metadata: &ObjectMeta,
    parent_port: Option<u16>,
) -> (RouteName, pb::Route) {
    let name = RouteName {
        kind,
        namespace: metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name: metadata.name.clone().unwrap_or_default(),
    };
    let wire_kind = match kind {
        RouteKind::Http => pb::route::Kind::Http,
        RouteKind::Grpc => pb::route::Kind::Grpc,
    };
    let route = pb::Route {
        kind: wire_kind.into(),
        namespace: name.namespace.clone(),
        name: name.name.clone(),
        created: metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        port: parent_port.map_or(0, u32::from),
        ..pb::Route::default()
    };
    (name, route)
}

/// Attaches the route's name to a field error.
fn named(name: &RouteName) -> impl Fn(FieldError) -> RouteError + '_ {
    |(field, message)| RouteError {
        route: name.clone(),
        field,
        message,
    }
}

/// Runs the table's compiler over a converted route: regexes, header names, paths and
/// filter combinations are checked once, in one place.
fn checked(route: pb::Route) -> Result<pb::Route, RouteError> {
    compile_route(&route)?;
    Ok(route)
}

/// Resolves a backend reference of a route in `namespace` into a wire backend.
fn backend(
    reference: &BackendRef,
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<pb::Backend, FieldError> {
    let group = reference.group.as_deref().unwrap_or("");
    let kind = reference.kind.as_deref().unwrap_or("Service");
    let port = match reference.port {
        None if group.is_empty() && kind == "Service" => {
            return Err((
                format!("{at}.port"),
                "required when referring to a Service".into(),
            ));
        }
        None => None,
        Some(port) => Some(
            u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| (format!("{at}.port"), format!("{port} is not a port")))?,
        ),
    };
    let weight = match reference.weight {
        None => 1,
        Some(w) => u32::try_from(w)
            .ok()
            .filter(|w| *w <= 1_000_000)
            .ok_or_else(|| (format!("{at}.weight"), format!("{w} is not in 0..=1000000")))?,
    };
    let target = BackendTarget {
        group,
        kind,
        namespace: reference.namespace.as_deref().unwrap_or(namespace),
        name: &reference.name,
        port,
    };
    let (service, unresolved) = match resolver.resolve(&target) {
        Ok(key) => (key, String::new()),
        Err(reason) => (format!("{}/{}", target.namespace, target.name), reason),
    };
    Ok(pb::Backend {
        service,
        port: port.map_or(0, u32::from),
        weight,
        filters: filters::convert(
            &reference.filters,
            namespace,
            resolver,
            &format!("{at}.filters"),
        )?,
        unresolved,
        via_waypoint: false,
    })
}

/// A Gateway API duration in milliseconds (`0s` is 0: no limit).
fn duration_ms(value: Option<&str>, at: &str) -> Result<u64, FieldError> {
    let Some(value) = value else { return Ok(0) };
    let duration: gateway_api::Duration = value
        .parse()
        .map_err(|e| (at.to_owned(), format!("{value:?} is not a duration: {e}")))?;
    u64::try_from(duration.as_millis()).map_err(|_| (at.to_owned(), "too long".to_owned()))
}
