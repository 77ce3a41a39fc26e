//! The control plane's admin port (default 15014): readiness, Prometheus metrics, and the
//! debug pages `weft status` and users read.

use crate::translate::Output;
use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use weft_api::ConfigStore;
use weft_telemetry::{Page, Router};
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
    /// The config store, for file errors.
    pub store: Arc<ConfigStore>,
}

/// Default admin port.
pub const DEFAULT_ADMIN_PORT: u16 = 15014;

/// The admin pages.
pub fn admin_router(state: AdminState) -> Router {
    let metrics = Arc::clone(&state.registry);
    let syncz = state.xds.clone();
    let output = Arc::clone(&state.output);
    let store = Arc::clone(&state.store);
    Router::new()
        .page("/ready", |_| Page::text("ready\n"))
        .page("/metrics", move |_| Page::metrics(&metrics))
        .page("/debug/syncz", move |_| Page::json(&syncz.sync_status()))
        .page("/debug/configz", move |_| {
            Page::json(&configz(&output.load()))
        })
        .page("/debug/config_errors", move |_| {
            let errors: Vec<String> = store
                .file_errors()
                .iter()
                .map(ToString::to_string)
                .collect();
            Page::json(&errors)
        })
}

/// The translated resources in the proto JSON mapping, with names and versions.
pub fn configz(output: &Output) -> Value {
    let render = |full_name: &str, message: &dyn Fn() -> Result<Value, weft_proto::JsonError>| {
        message().unwrap_or_else(|err| json!({ "error": err.to_string(), "type": full_name }))
    };
    let addresses: Vec<Value> = output
        .addresses
        .values()
        .map(|r| {
            json!({
                "name": r.name,
                "version": r.version,
                "aliases": r.aliases,
                "resource": render("istio.workload.Address", &|| {
                    weft_proto::to_json("istio.workload.Address", &r.message)
                }),
            })
        })
        .collect();
    let authorizations: Vec<Value> = output
        .authorizations
        .values()
        .map(|r| {
            json!({
                "name": r.name,
                "version": r.version,
                "resource": render("istio.security.Authorization", &|| {
                    weft_proto::to_json("istio.security.Authorization", &r.message)
                }),
            })
        })
        .collect();
    let warnings: Vec<String> = output.all_warnings().map(ToString::to_string).collect();
    json!({
        weft_proto::ADDRESS_TYPE_URL: addresses,
        weft_proto::AUTHORIZATION_TYPE_URL: authorizations,
        "warnings": warnings,
    })
}
