//! Prometheus metrics of the xDS server.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set naming a resource type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub(crate) type_url: String,
}

/// Server metrics; cloning shares the underlying values.
#[derive(Debug, Clone)]
pub(crate) struct ServerMetrics {
    pushes: Family<TypeLabel, Counter>,
    nacks: Family<TypeLabel, Counter>,
    push_latency: Histogram,
    connected: Gauge,
    streams_refused: Counter,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            pushes: Family::default(),
            nacks: Family::default(),
            // 1 ms .. ~33 s
            push_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            connected: Gauge::default(),
            streams_refused: Counter::default(),
        }
    }
}

impl ServerMetrics {
    /// Registers every metric under `registry` (names prefixed `weft_xds_` by the caller's
    /// registry prefix, if any, plus `xds_`).
    pub(crate) fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("xds");
        registry.register(
            "pushes",
            "xDS responses sent to proxies, by type URL",
            self.pushes.clone(),
        );
        registry.register(
            "nacks",
            "xDS responses rejected (NACKed) by proxies, by type URL",
            self.nacks.clone(),
        );
        registry.register(
            "push_latency_seconds",
            "Time from a configuration change to its push being queued to a proxy",
            self.push_latency.clone(),
        );
        registry.register(
            "connected_proxies",
            "Proxies with an open xDS stream",
            self.connected.clone(),
        );
        registry.register(
            "streams_refused",
            "New xDS streams refused because their caller holds its limit of open streams",
            self.streams_refused.clone(),
        );
    }

    pub(crate) fn record_stream_refused(&self) {
        self.streams_refused.inc();
    }

    pub(crate) fn record_push(&self, type_url: &str, latency: Option<Duration>) {
        self.pushes.get_or_create(&label(type_url)).inc();
        if let Some(latency) = latency {
            self.push_latency.observe(latency.as_secs_f64());
        }
    }

    pub(crate) fn record_nack(&self, type_url: &str) {
        self.nacks.get_or_create(&label(type_url)).inc();
    }

    pub(crate) fn proxy_connected(&self) -> ConnectedGuard {
        self.connected.inc();
        ConnectedGuard(self.connected.clone())
    }
}

fn label(type_url: &str) -> TypeLabel {
    TypeLabel {
        type_url: type_url.to_owned(),
    }
}

/// Decrements the connected-proxies gauge when the stream ends, however it ends.
#[derive(Debug)]
pub(crate) struct ConnectedGuard(Gauge);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
