//! Admin (127.0.0.1:15000), metrics (15020) and readiness (15021) pages, served by
//! weft-serve's router.
//!
//! Admin pages: `/config_dump` (state as JSON: workloads and services in the proto JSON
//! mapping, policies summarized), `/certs` (managed identities and their certificates),
//! `/connections` (open connections), `/pool` (HBONE pool counters) and
//! `/logging?level=<filter>` (changes the log filter when the process supports it).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use weft_hbone::PoolStatsSnapshot;
use weft_serve::{AdminRequest, Page, Router};

use super::Node;
use crate::state::MeshState;

impl Node {
    /// Pages of the admin port (bind it to localhost).
    #[must_use]
    pub fn admin_router(&self) -> Router {
        let dump = self.clone();
        let certs = self.clone();
        let conns = self.clone();
        let pool = self.clone();
        let logging = self.clone();
        Router::new()
            .page("/config_dump", move |_| {
                Page::json(&config_dump(&dump.store().snapshot()))
            })
            .page("/certs", move |_| Page::json(&certs.certs_page()))
            .page("/connections", move |_| Page::json(&conns.connections()))
            .page("/pool", move |_| Page::json(&pool_json(pool.pool_stats())))
            .page("/logging", move |req| logging.logging_page(&req))
    }

    /// `/metrics` (and Envoy's `/stats/prometheus` alias) for the metrics port.
    #[must_use]
    pub fn metrics_router(&self) -> Router {
        let last = Arc::new(Mutex::new(PoolStatsSnapshot::default()));
        let page = {
            let node = self.clone();
            move |_: AdminRequest| {
                node.sync_pool_metrics(&last);
                Page::metrics(node.registry())
            }
        };
        let alias = page.clone();
        Router::new()
            .page("/metrics", page)
            .page("/stats/prometheus", alias)
    }

    /// `/healthz/ready` for the readiness port: 200 once configuration and local workload
    /// certificates are loaded, 503 with the reason before.
    /// `/healthz/live` answers 200 while the process serves at all (the liveness probe:
    /// a proxy waiting for its configuration is alive, only not ready).
    #[must_use]
    pub fn readiness_router(&self) -> Router {
        let node = self.clone();
        Router::new()
            .page("/healthz/live", |_| Page::text("live\n"))
            .page("/healthz/ready", move |_| match node.readiness() {
                Ok(()) => Page::text("ready\n"),
                Err(reason) => {
                    Page::with_status(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
                }
            })
    }

    /// Copies the pool's atomic counters into the registered pool metrics.
    fn sync_pool_metrics(&self, last: &Mutex<PoolStatsSnapshot>) {
        let now = self.pool_stats();
        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = &self.inner.metrics.pool;
        pool.connections
            .set(i64::try_from(now.connections_open).unwrap_or(i64::MAX));
        pool.handshakes
            .inc_by(now.handshakes.saturating_sub(last.handshakes));
        pool.handshake_failures.inc_by(
            now.handshake_failures
                .saturating_sub(last.handshake_failures),
        );
        pool.streams
            .inc_by(now.streams_opened.saturating_sub(last.streams_opened));
        *last = now;
    }

    fn certs_page(&self) -> Value {
        let manager = self.certs().manager();
        let identities: Vec<Value> = manager
            .identities()
            .iter()
            .map(|identity| match self.certs().current(identity) {
                Some(cert) => json!({
                    "identity": identity.to_string(),
                    "state": "valid",
                    "serial": hex(cert.serial()),
                    "not_before_unix": unix_secs(cert.not_before()),
                    "not_after_unix": unix_secs(cert.not_after()),
                    "chain_length": cert.chain().len(),
                }),
                None => json!({ "identity": identity.to_string(), "state": "pending or expired" }),
            })
            .collect();
        json!({
            "trust_domains": self.certs().trust().trust_domains(),
            "roots": self.certs().trust().roots().len(),
            "identities": identities,
        })
    }

    fn logging_page(&self, request: &AdminRequest) -> Page {
        let Some(control) = &self.inner.log_control else {
            return Page::with_status(
                StatusCode::NOT_IMPLEMENTED,
                "this process cannot change its log filter at runtime\n",
            );
        };
        let Some(level) = request.query.get("level") else {
            return Page::with_status(
                StatusCode::BAD_REQUEST,
                "usage: /logging?level=<filter>, e.g. level=debug or level=weft=debug,info\n",
            );
        };
        match control(level) {
            Ok(now) => Page::text(format!("log filter is now {now}\n")),
            Err(reason) => Page::with_status(StatusCode::BAD_REQUEST, format!("{reason}\n")),
        }
    }
}

/// The state as JSON (workloads and services in the proto JSON mapping).
fn config_dump(state: &MeshState) -> Value {
    let mut workloads: Vec<Value> = state
        .workloads()
        .map(|w| {
            weft_proto::to_json("istio.workload.Workload", w.proto())
                .unwrap_or_else(|err| json!({ "uid": w.uid(), "error": err.to_string() }))
        })
        .collect();
    workloads.sort_by_key(|w| w.get("uid").map(ToString::to_string));
    let mut services: Vec<Value> = state
        .services()
        .map(|s| {
            weft_proto::to_json("istio.workload.Service", s.proto())
                .unwrap_or_else(|err| json!({ "key": s.key(), "error": err.to_string() }))
        })
        .collect();
    services.sort_by_key(|s| s.get("hostname").map(ToString::to_string));
    let policies: Vec<Value> = state
        .policies()
        .map(|p| {
            json!({
                "name": p.key().to_string(),
                "scope": format!("{:?}", p.scope()),
                "action": format!("{:?}", p.action()),
                "rules": p.rule_count(),
                "dry_run": p.dry_run(),
            })
        })
        .collect();
    json!({
        "generation": state.generation(),
        "workloads": workloads,
        "services": services,
        "policies": policies,
    })
}

fn pool_json(stats: PoolStatsSnapshot) -> Value {
    json!({
        "handshakes": stats.handshakes,
        "handshake_failures": stats.handshake_failures,
        "connections_open": stats.connections_open,
        "streams_open": stats.streams_open,
        "streams_opened": stats.streams_opened,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            out.push_str(&format!("{b:02x}"));
            out
        })
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Registers the standard `process_*` metrics, read from `/proc` at each scrape.
pub(super) fn register_process_metrics(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector {
        start_time: unix_secs(SystemTime::now()),
    }));
}

#[derive(Debug)]
struct ProcessCollector {
    start_time: u64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let page_size = 4096;
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * page_size);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count);
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                Some(self.start_time),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                resident,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                open_fds.map(|n| n as u64),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
