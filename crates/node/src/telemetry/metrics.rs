//! Prometheus metrics of the node proxy: Istio's L4 metrics (names unchanged so existing
//! dashboards work), policy denial counters and HBONE pool metrics.
//!
//! The connection path resolves its label set once per connection
//! ([`Metrics::connection_opened`]) and then only bumps atomics through the returned
//! [`ConnectionMetrics`] handles.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::ConnectionLabels;
use weft_policy::{Decision, Reason};

/// All node proxy metrics. Cheap to clone (handles share the registered metrics).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    opened: Family<ConnectionLabels, Counter>,
    closed: Family<ConnectionLabels, Counter>,
    sent: Family<ConnectionLabels, Counter>,
    received: Family<ConnectionLabels, Counter>,
    failed: Family<ConnectionLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    dry_run_denials: Family<DenialLabels, Counter>,
    /// HBONE connection pool metrics (for the pool to report through).
    pub pool: PoolMetrics,
}

/// Labels of the policy denial counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DenialLabels {
    /// Deciding policy `<ns>/<name>`, or `none` when no ALLOW policy matched.
    pub policy: String,
    /// `deny_matched` or `no_allow_matched`.
    pub reason: &'static str,
    /// Namespace of the protected workload.
    pub destination_workload_namespace: String,
}

/// Counters and gauges the HBONE connection pool reports through.
#[derive(Debug, Clone, Default)]
pub struct PoolMetrics {
    /// TLS+HTTP/2 connections currently open.
    pub connections: Gauge,
    /// Successful TLS handshakes (one per pooled connection created).
    pub handshakes: Counter,
    /// Failed TLS handshakes.
    pub handshake_failures: Counter,
    /// CONNECT streams opened over pooled connections.
    pub streams: Counter,
}

/// Per-connection metric handles (label lookup already done).
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    closed: Counter,
    failed: Counter,
    sent: Counter,
    received: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let connection_counters = [
            (
                "istio_tcp_connections_opened",
                "TCP connections opened",
                &metrics.opened,
            ),
            (
                "istio_tcp_connections_closed",
                "TCP connections closed",
                &metrics.closed,
            ),
            (
                "istio_tcp_sent_bytes",
                "Bytes sent to the source (response direction) on TCP connections",
                &metrics.sent,
            ),
            (
                "istio_tcp_received_bytes",
                "Bytes received from the source (request direction) on TCP connections",
                &metrics.received,
            ),
            (
                "istio_tcp_connections_failed",
                "TCP connections that failed (denied, unreachable, reset)",
                &metrics.failed,
            ),
        ];
        for (name, help, family) in connection_counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "weft_policy_denials",
            "Connections denied by L4 authorization",
            metrics.denials.clone(),
        );
        registry.register(
            "weft_policy_dry_run_denials",
            "Allowed connections that dry-run policies would have denied",
            metrics.dry_run_denials.clone(),
        );
        let pool = &metrics.pool;
        registry.register(
            "weft_hbone_pool_connections",
            "Open pooled HBONE connections",
            pool.connections.clone(),
        );
        registry.register(
            "weft_hbone_pool_handshakes",
            "Completed HBONE TLS handshakes",
            pool.handshakes.clone(),
        );
        registry.register(
            "weft_hbone_pool_handshake_failures",
            "Failed HBONE TLS handshakes",
            pool.handshake_failures.clone(),
        );
        registry.register(
            "weft_hbone_pool_streams",
            "CONNECT streams opened on pooled connections",
            pool.streams.clone(),
        );
        metrics
    }

    /// Counts an established connection and returns its handles.
    #[must_use]
    pub fn connection_opened(&self, labels: &ConnectionLabels) -> ConnectionMetrics {
        self.opened.get_or_create(labels).inc();
        ConnectionMetrics {
            closed: self.closed.get_or_create_owned(labels),
            failed: self.failed.get_or_create_owned(labels),
            sent: self.sent.get_or_create_owned(labels),
            received: self.received.get_or_create_owned(labels),
        }
    }

    /// Counts a connection that failed before it was established (denied, no endpoint,
    /// upstream unreachable).
    pub fn connection_failed(&self, labels: &ConnectionLabels) {
        self.failed.get_or_create(labels).inc();
    }

    /// Counts `decision` if it denies, or if dry-run policies would have denied it.
    pub fn record_decision(&self, decision: &Decision, destination_namespace: &str) {
        let labels = |outcome: &weft_policy::Outcome| DenialLabels {
            policy: outcome.policy.as_deref().unwrap_or("none").to_owned(),
            reason: match outcome.reason {
                Reason::DenyMatched => "deny_matched",
                _ => "no_allow_matched",
            },
            destination_workload_namespace: destination_namespace.to_owned(),
        };
        if !decision.is_allowed() {
            self.denials.get_or_create(&labels(&decision.outcome)).inc();
        } else if let (true, Some(dry)) = (decision.dry_run_would_deny(), &decision.dry_run) {
            self.dry_run_denials.get_or_create(&labels(dry)).inc();
        }
    }
}

impl ConnectionMetrics {
    /// Bytes that flowed from the source to the destination (request direction).
    pub fn add_source_to_destination(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }

    /// Bytes that flowed from the destination back to the source (response direction).
    pub fn add_destination_to_source(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    /// The connection ended normally.
    pub fn closed(self) {
        self.closed.inc();
    }

    /// The connection ended with an error after being established (counted as closed and
    /// failed).
    pub fn failed(self) {
        self.closed.inc();
        self.failed.inc();
    }
}
