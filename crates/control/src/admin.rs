//! The control plane's admin port (default 15014): readiness, Prometheus metrics, and the
//! debug pages `weft status` and users read (`/debug/gatewayz`: the computed Gateway API
//! status of every GatewayClass, Gateway and route, as `weft x status` prints it; `/debug/caz`:
//! where a root rotation stands).

use crate::ca_service::RotationDriver;
use crate::translate::Output;
use crate::translate::render::{render_resources, warning_lines};
use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use weft_api::gateway_status;
use weft_api::{LoadedObject, Object, ObjectSource};
use weft_l7::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use weft_serve::{Page, Router};
use weft_xds::XdsServer;

/// What the admin pages read.
#[derive(Clone)]
pub struct AdminState {
    /// Control-plane metrics (xDS, CA).
    pub registry: Arc<Mutex<Registry>>,
    /// The xDS server, for per-proxy sync status.
    pub xds: XdsServer,
    /// The latest translation.
    pub output: Arc<ArcSwap<Output>>,
    /// The object source, for its errors (files or API objects that could not be used).
    pub store: Arc<dyn ObjectSource>,
    /// The CA's root rotation.
    pub rotation: Arc<RotationDriver>,
}

/// Default admin port.
pub const DEFAULT_ADMIN_PORT: u16 = 15014;

/// The admin pages.
pub fn admin_router(state: AdminState) -> Router {
    let metrics = Arc::clone(&state.registry);
    let syncz = state.xds.clone();
    let output = Arc::clone(&state.output);
    let store = Arc::clone(&state.store);
    let gateways = Arc::clone(&state.store);
    let rotation = Arc::clone(&state.rotation);
    Router::new()
        .page("/ready", |_| Page::text("ready\n"))
        .page("/healthz/live", |_| Page::text("live\n"))
        .page("/metrics", move |_| Page::metrics(&metrics))
        .page("/debug/syncz", move |_| Page::json(&syncz.sync_status()))
        .page("/debug/configz", move |_| {
            Page::json(&configz(&output.load()))
        })
        .page("/debug/config_errors", move |_| {
            let errors: Vec<String> = store.errors().iter().map(ToString::to_string).collect();
            Page::json(&errors)
        })
        .page("/debug/caz", move |_| Page::json(&rotation.status_json()))
        .page("/debug/gatewayz", move |_| {
            let snapshot = gateways.snapshot();
            Page::json(&gateway_status::statuses_with(&snapshot, &route_check))
        })
}

/// Whether the data plane can apply a route: HTTPRoutes and GRPCRoutes go through the L7
/// converter the translation uses (backends are not resolved here: the status's
/// `ResolvedRefs` says which are missing). Passed to
/// [`gateway_status::statuses_with`] so the status says why a route is left out.
///
/// # Errors
/// The converter's error, naming the field.
pub fn route_check(route: &LoadedObject) -> Result<(), String> {
    struct AnyBackend;
    impl BackendResolver for AnyBackend {
        fn resolve(&self, _: &BackendTarget<'_>) -> Result<String, String> {
            Ok(String::new())
        }
    }
    let converted = match &route.object {
        Object::HttpRoute(r) => http_route(r, None, &AnyBackend).map(drop),
        Object::GrpcRoute(r) => grpc_route(r, None, &AnyBackend).map(drop),
        _ => Ok(()),
    };
    converted.map_err(|err| err.to_string())
}

/// The translated resources (proto JSON mapping, with names and versions) and warnings:
/// the same rendering as `weft x translate`.
pub fn configz(output: &Output) -> Value {
    match render_resources(output) {
        Ok(mut rendered) => {
            rendered["warnings"] = json!(warning_lines(output));
            rendered
        }
        Err(err) => json!({ "error": err.to_string() }),
    }
}
