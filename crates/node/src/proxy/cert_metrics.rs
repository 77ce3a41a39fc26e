//! Certificate expiry on the metrics port: for every certificate a proxy holds (a node
//! proxy's workload certificates, a waypoint's or gateway's own), the Unix times at which
//! it became valid and at which it expires, labelled by identity. Read from the
//! certificate manager at each scrape, so a rotated certificate shows at once and an
//! expired one (renewals failing) stays visible with its past expiry.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use weft_identity::{CertManager, WorkloadCert};

/// Gauge: Unix time (seconds) at which the certificate of `identity` expires (`notAfter`).
pub const EXPIRY_METRIC: &str = "weft_certificate_expiry_timestamp_seconds";
/// Gauge: Unix time (seconds) from which the certificate of `identity` is valid
/// (`notBefore`); with the expiry it gives the certificate's lifetime.
pub const NOT_BEFORE_METRIC: &str = "weft_certificate_not_before_timestamp_seconds";

/// Registers the two certificate gauges of `manager`'s certificates in `registry`.
pub fn register_cert_metrics(registry: &mut Registry, manager: CertManager) {
    registry.register_collector(Box::new(CertExpiry { manager }));
}

/// One of a certificate's validity bounds, in Unix seconds.
type Bound = fn(&Arc<WorkloadCert>) -> i64;

#[derive(Debug)]
struct CertExpiry {
    manager: CertManager,
}

impl Collector for CertExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let held = self.manager.held();
        let gauges: [(&str, &str, Bound); 2] = [
            (
                EXPIRY_METRIC,
                "Unix time at which the certificate of the identity expires",
                |cert| unix_secs(cert.not_after()),
            ),
            (
                NOT_BEFORE_METRIC,
                "Unix time from which the certificate of the identity is valid",
                |cert| unix_secs(cert.not_before()),
            ),
        ];
        encode_time_gauges(&mut encoder, &gauges, &held, |cert| {
            [("identity", cert.identity().to_string())]
        })
    }
}

/// One gauge family: its name, its help text and how a row gives its value.
pub type TimeGauge<'a, R> = (&'a str, &'a str, fn(&R) -> i64);

/// Encodes one gauge family per `(name, help, value)` of `gauges`, each with one series
/// per row of `rows` labelled by `labels`; nothing when there are no rows. Shared by the
/// identity certificates here and a gateway's serving certificates.
///
/// # Errors
/// When the encoder fails.
pub fn encode_time_gauges<R, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    gauges: &[TimeGauge<'_, R>],
    rows: &[R],
    labels: impl Fn(&R) -> L,
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    for (name, help, time) in gauges {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstGauge::new(0_i64).metric_type())?;
        for row in rows {
            ConstGauge::new(time(row)).encode(family.encode_family(&labels(row))?)?;
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 before it, saturating far after it).
#[must_use]
pub fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
