//! CA metrics (prometheus-client): certificates issued, requests rejected by reason, the
//! root certificate's expiry time, and token file reloads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::SystemTime;

/// Label set of the rejection counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// One of `unauthenticated`, `invalid_request`, `invalid_csr`, `weak_key`,
    /// `identity_not_allowed`, `san_mismatch`, `dns_name_not_allowed`, `signing_failed`.
    pub reason: &'static str,
}

/// Label set of the token file reload counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok`, or `error` (the last good tokens stay in force).
    pub result: &'static str,
}

/// The CA's metrics. Cheap to clone (shared counters).
#[derive(Debug, Clone, Default)]
pub struct CaMetrics {
    issued: Counter,
    rejected: Family<RejectLabels, Counter>,
    root_expiry: Gauge,
    token_reloads: Family<ReloadLabels, Counter>,
}

impl CaMetrics {
    /// Fresh, unregistered metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the metrics under `registry`'s prefix (`weft_control_` in the process):
    /// `ca_certificates_issued_total`, `ca_certificates_rejected_total{reason}`,
    /// `ca_root_expiry_timestamp_seconds`, `token_file_reloads_total{result}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ca_certificates_issued",
            "Workload certificates issued by the mesh CA",
            self.issued.clone(),
        );
        registry.register(
            "ca_certificates_rejected",
            "Certificate requests refused by the mesh CA, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "ca_root_expiry_timestamp_seconds",
            "Expiry time of the mesh root certificate (unix seconds)",
            self.root_expiry.clone(),
        );
        registry.register(
            "token_file_reloads",
            "Re-reads of the edited token file, by result (error keeps the last good tokens)",
            self.token_reloads.clone(),
        );
    }

    pub(crate) fn issued(&self) {
        self.issued.inc();
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    pub(crate) fn token_file_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.token_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Records the root's expiry.
    pub fn set_root_expiry(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.root_expiry.set(secs);
    }
}
