//! The control plane's admin port (default 15014): readiness ([`crate::readiness`]),
//! liveness, Prometheus metrics, and the
//! debug pages `weft status` and users read (`/debug/gatewayz`: the computed Gateway API
//! status of every GatewayClass, Gateway and route, as `weft x status` prints it; `/debug/caz`:
//! where a root rotation stands; `/debug/analyzez`: `weft analyze`'s findings on the live
//! configuration).

use crate::ca_service::RotationDriver;
use crate::readiness::Readiness;
use crate::translate::Output;
use crate::translate::render::{render_resources, warning_lines};
use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, OnceLock};
use weft_api::gateway_status;
use weft_api::{LoadedObject, Object, ObjectSource};
use weft_l7::from_api::{BackendResolver, BackendTarget, grpc_route, http_route};
use weft_serve::{AdminRequest, Page, Router};
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

/// The admin pages. `/ready` and `/healthz/live` answer from the start; the others once
/// `state` is set (503 before: the control plane is still starting).
pub fn admin_router(readiness: Readiness, state: Arc<OnceLock<AdminState>>) -> Router {
    Router::new()
        .page("/ready", move |_| readiness.page())
        .page("/healthz/live", |_| Page::text("live\n"))
        .page(
            "/metrics",
            with_state(&state, |s| Page::metrics(&s.registry)),
        )
        .page(
            "/debug/syncz",
            with_state(&state, |s| Page::json(&s.xds.sync_status())),
        )
        .page(
            "/debug/configz",
            with_state(&state, |s| Page::json(&configz(&s.output.load()))),
        )
        .page(
            "/debug/config_errors",
            with_state(&state, |s| {
                let errors: Vec<String> =
                    s.store.errors().iter().map(ToString::to_string).collect();
                Page::json(&errors)
            }),
        )
        .page(
            "/debug/caz",
            with_state(&state, |s| Page::json(&s.rotation.status_json())),
        )
        .page(
            "/debug/analyzez",
            with_state(&state, |s| {
                Page::json(&weft_api::analyze(&s.store.snapshot()))
            }),
        )
        .page(
            "/debug/gatewayz",
            with_state(&state, |s| {
                let snapshot = s.store.snapshot();
                Page::json(&gateway_status::statuses_with(&snapshot, &route_check))
            }),
        )
}

/// A page of the started control plane: 503 while `state` is not set yet.
fn with_state(
    state: &Arc<OnceLock<AdminState>>,
    page: impl Fn(&AdminState) -> Page + Send + Sync + 'static,
) -> impl Fn(AdminRequest) -> Page + Send + Sync + 'static {
    let state = Arc::clone(state);
    move |_| match state.get() {
        Some(state) => page(state),
        None => Page::with_status(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "starting: see /ready\n",
        ),
    }
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
