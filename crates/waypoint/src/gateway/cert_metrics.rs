//! Serving-certificate validity on a gateway's metrics page: for every terminating
//! listener, the Unix times from which its certificates are valid and at which they expire,
//! labelled by listener and certificate (the Secret `<namespace>/<name>`, or `auto` for one
//! issued by weft's CA for a `weft.dev/auto-certificate` listener). The proxy's own mesh
//! identity keeps its `weft_certificate_*{identity}` gauges; these are a separate family
//! because a serving certificate has no mesh identity to label it with.
//!
//! Read at each scrape from the configuration in force and the auto-certificate managers,
//! so a new Secret or a rotated auto-certificate shows at once; an auto-certificate whose
//! renewals keep failing stays visible with its past expiry.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use weft_node::proxy::{TimeGauge, encode_time_gauges, unix_secs};
use weft_proto::l7 as pb;

use super::Gateway;
use super::auto_cert::AutoCerts;

/// Gauge: Unix time (seconds) at which a listener's serving certificate expires.
pub const EXPIRY_METRIC: &str = "weft_gateway_certificate_expiry_timestamp_seconds";
/// Gauge: Unix time (seconds) from which a listener's serving certificate is valid.
pub const NOT_BEFORE_METRIC: &str = "weft_gateway_certificate_not_before_timestamp_seconds";
/// The `certificate` label of a CA-issued (auto) certificate.
pub const AUTO: &str = "auto";

/// Registers the serving-certificate gauges of `gateway` (and its `auto` certificates).
pub(crate) fn register(registry: &Mutex<Registry>, gateway: Gateway, auto: Arc<AutoCerts>) {
    let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
    registry.register_collector(Box::new(ServingCerts { gateway, auto }));
}

#[derive(Debug)]
struct ServingCerts {
    gateway: Gateway,
    auto: Arc<AutoCerts>,
}

/// One certificate of one listener: its labels and validity (Unix seconds).
struct Row {
    listener: String,
    certificate: String,
    not_before: i64,
    not_after: i64,
}

impl ServingCerts {
    /// Every terminating listener's certificates in force now (unparsable ones left out:
    /// the listener reports them as errors and serves nothing).
    fn rows(&self) -> Vec<Row> {
        let config = self.gateway.config();
        let mut rows = Vec::new();
        for listener in &config.resource.listeners {
            if listener.auto_certificate {
                rows.extend(self.auto_row(listener));
            }
            rows.extend(listener.certificates.iter().filter_map(|certificate| {
                let (not_before, not_after) = leaf_validity(certificate)?;
                Some(Row {
                    listener: listener.name.clone(),
                    certificate: certificate.source.clone(),
                    not_before,
                    not_after,
                })
            }));
        }
        rows
    }

    fn auto_row(&self, listener: &pb::Listener) -> Option<Row> {
        let (not_before, not_after) = self.auto.validity(&listener.hostname)?;
        Some(Row {
            listener: listener.name.clone(),
            certificate: AUTO.to_owned(),
            not_before: unix_secs(not_before),
            not_after: unix_secs(not_after),
        })
    }
}

/// `(notBefore, notAfter)` of the certificate's leaf, in Unix seconds.
fn leaf_validity(certificate: &pb::Certificate) -> Option<(i64, i64)> {
    let leaf = CertificateDer::pem_slice_iter(certificate.cert_chain.as_bytes()).next()?;
    let info = weft_identity::tls::leaf_info(&leaf.ok()?).ok()?;
    Some((info.not_before, info.not_after))
}

impl Collector for ServingCerts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [TimeGauge<'_, Row>; 2] = [
            (
                EXPIRY_METRIC,
                "Unix time at which the listener's serving certificate expires",
                |row| row.not_after,
            ),
            (
                NOT_BEFORE_METRIC,
                "Unix time from which the listener's serving certificate is valid",
                |row| row.not_before,
            ),
        ];
        encode_time_gauges(&mut encoder, &gauges, &self.rows(), |row| {
            [
                ("listener", row.listener.clone()),
                ("certificate", row.certificate.clone()),
            ]
        })
    }
}
