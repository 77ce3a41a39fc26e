//! Certificate expiry on the metrics port: for every certificate a proxy holds (a node
//! proxy's workload certificates, a waypoint's or gateway's own), the Unix times at which
//! it became valid and at which it expires, labelled by identity. Read from the
//! certificate manager at each scrape, so a rotated certificate shows at once and an
//! expired one (renewals failing) stays visible with its past expiry.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
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

/// One of a certificate's validity bounds.
type Bound = fn(&WorkloadCert) -> SystemTime;

#[derive(Debug)]
struct CertExpiry {
    manager: CertManager,
}

impl Collector for CertExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let held = self.manager.held();
        if held.is_empty() {
            return Ok(());
        }
        let gauges: [(&str, &str, Bound); 2] = [
            (
                EXPIRY_METRIC,
                "Unix time at which the certificate of the identity expires",
                WorkloadCert::not_after,
            ),
            (
                NOT_BEFORE_METRIC,
                "Unix time from which the certificate of the identity is valid",
                WorkloadCert::not_before,
            ),
        ];
        for (name, help, time) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstGauge::new(0_i64).metric_type(),
            )?;
            for cert in &held {
                let labels = [("identity", cert.identity().to_string())];
                let gauge = ConstGauge::new(unix_secs(time(cert)));
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
