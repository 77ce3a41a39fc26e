//! Certificate expiry per proxy, read from the gauges weft's proxies serve on their metrics
//! page: `weft_certificate_expiry_timestamp_seconds{identity}` and
//! `weft_certificate_not_before_timestamp_seconds{identity}`, one series per certificate
//! held (a node proxy's workload certificates, a waypoint's or gateway's own), and on
//! gateways `weft_gateway_certificate_{expiry,not_before}_timestamp_seconds{listener,
//! certificate}` for the listeners' serving certificates (Secrets and auto-certificates).
//! The page shows the certificate that expires first and flags it when less than a tenth of
//! its lifetime is left, or when it has expired.

use crate::prom::Sample;
use serde::Serialize;
use std::collections::BTreeMap;
use weft_node::proxy::{EXPIRY_METRIC, NOT_BEFORE_METRIC};

/// A gateway listener's serving certificate expiry (`weft_waypoint::gateway::cert_metrics`).
pub const GATEWAY_EXPIRY_METRIC: &str = "weft_gateway_certificate_expiry_timestamp_seconds";
/// A gateway listener's serving certificate start of validity.
pub const GATEWAY_NOT_BEFORE_METRIC: &str = "weft_gateway_certificate_not_before_timestamp_seconds";

/// Share of a certificate's lifetime below which it is shown as `expiring`.
pub const EXPIRING_FRACTION: f64 = 0.1;

/// The certificate of a proxy that expires first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertExpiry {
    /// What it certifies: its SPIFFE identity, or for a gateway listener's serving
    /// certificate `listener <name>: <certificate>` (the Secret `<ns>/<name>` or `auto`).
    pub identity: String,
    /// When it expires (seconds since the Unix epoch).
    pub expires_unix: i64,
    /// From when it is valid (seconds since the Unix epoch), when the proxy reports it.
    pub not_before_unix: Option<i64>,
    /// Seconds left at the time of the scrape (negative once expired).
    pub seconds_left: i64,
    /// `valid`, `expiring` (under a tenth of its lifetime left) or `expired`.
    pub state: &'static str,
    /// How many certificates the proxy holds.
    pub certificates: usize,
}

/// The soonest-expiring certificate among a scrape's samples, as of `now_unix`; `None`
/// when the proxy reports no certificate (not a weft proxy, or none fetched yet).
#[must_use]
pub fn soonest(samples: &[Sample], now_unix: i64) -> Option<CertExpiry> {
    let mut not_before: BTreeMap<String, i64> = BTreeMap::new();
    let mut expiry: BTreeMap<String, i64> = BTreeMap::new();
    for sample in samples {
        let (into, key) = match sample.name.as_str() {
            EXPIRY_METRIC => (&mut expiry, sample.label("identity").to_owned()),
            NOT_BEFORE_METRIC => (&mut not_before, sample.label("identity").to_owned()),
            GATEWAY_EXPIRY_METRIC => (&mut expiry, serving_cert(sample)),
            GATEWAY_NOT_BEFORE_METRIC => (&mut not_before, serving_cert(sample)),
            _ => continue,
        };
        // The gauges carry whole seconds; `as` saturates anything out of range.
        #[allow(clippy::cast_possible_truncation)]
        into.insert(key, sample.value as i64);
    }
    let (identity, expires_unix) = expiry.iter().min_by_key(|(_, at)| **at)?;
    let not_before_unix = not_before.get(identity).copied();
    let seconds_left = expires_unix.saturating_sub(now_unix);
    Some(CertExpiry {
        identity: identity.clone(),
        expires_unix: *expires_unix,
        not_before_unix,
        seconds_left,
        state: state(
            seconds_left,
            not_before_unix.map(|from| expires_unix.saturating_sub(from)),
        ),
        certificates: expiry.len(),
    })
}

/// How a gateway listener's serving certificate is named on the page.
fn serving_cert(sample: &Sample) -> String {
    let (listener, certificate) = (sample.label("listener"), sample.label("certificate"));
    format!("listener {listener}: {certificate}")
}

/// `expired`, `expiring` (less than [`EXPIRING_FRACTION`] of `lifetime` left) or `valid`.
fn state(seconds_left: i64, lifetime: Option<i64>) -> &'static str {
    if seconds_left <= 0 {
        return "expired";
    }
    match lifetime {
        #[allow(clippy::cast_precision_loss)]
        Some(lifetime) if (seconds_left as f64) < lifetime as f64 * EXPIRING_FRACTION => "expiring",
        _ => "valid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, identity: &str, value: i64) -> Sample {
        #[allow(clippy::cast_precision_loss)]
        Sample {
            name: name.to_owned(),
            labels: [("identity".to_owned(), identity.to_owned())].into(),
            value: value as f64,
        }
    }

    fn held(certs: &[(&str, i64, i64)]) -> Vec<Sample> {
        certs
            .iter()
            .flat_map(|(id, from, until)| {
                [
                    sample(NOT_BEFORE_METRIC, id, *from),
                    sample(EXPIRY_METRIC, id, *until),
                ]
            })
            .collect()
    }

    #[test]
    fn picks_the_certificate_that_expires_first() {
        let samples = held(&[
            ("spiffe://td/ns/a/sa/x", 0, 5000),
            ("spiffe://td/ns/b/sa/y", 0, 3000),
        ]);
        let soonest = soonest(&samples, 1000).expect("certificates reported");
        assert_eq!(soonest.identity, "spiffe://td/ns/b/sa/y");
        assert_eq!(soonest.expires_unix, 3000);
        assert_eq!(soonest.seconds_left, 2000);
        assert_eq!(soonest.state, "valid");
        assert_eq!(soonest.certificates, 2);
    }

    /// A gateway's listener certificates count beside its own identity's: the one that
    /// expires first is named by listener and certificate.
    #[test]
    fn counts_gateway_serving_certificates() {
        let serving = |name: &str, value: i64| {
            #[allow(clippy::cast_precision_loss)]
            Sample {
                name: name.to_owned(),
                labels: [
                    ("listener".to_owned(), "https".to_owned()),
                    ("certificate".to_owned(), "ns/site".to_owned()),
                ]
                .into(),
                value: value as f64,
            }
        };
        let mut samples = held(&[("spiffe://td/ns/a/sa/gw", 0, 5000)]);
        samples.push(serving(GATEWAY_NOT_BEFORE_METRIC, 0));
        samples.push(serving(GATEWAY_EXPIRY_METRIC, 1050));
        let soonest = soonest(&samples, 1000).expect("certificates reported");
        assert_eq!(soonest.identity, "listener https: ns/site");
        assert_eq!(
            (soonest.expires_unix, soonest.not_before_unix),
            (1050, Some(0))
        );
        assert_eq!((soonest.state, soonest.certificates), ("expiring", 2));
    }

    #[test]
    fn flags_under_a_tenth_of_the_lifetime_left_and_expired() {
        let samples = held(&[("spiffe://td/ns/a/sa/x", 1000, 11_000)]);
        assert_eq!(soonest(&samples, 9_999).unwrap().state, "valid");
        assert_eq!(soonest(&samples, 10_001).unwrap().state, "expiring");
        let expired = soonest(&samples, 11_000).unwrap();
        assert_eq!((expired.state, expired.seconds_left), ("expired", 0));
    }

    /// A proxy's metrics page is its own to write: values far out of range give an answer,
    /// not an overflow.
    #[test]
    fn out_of_range_values_saturate() {
        let id = "spiffe://td/ns/a/sa/x";
        let far_past = [sample(EXPIRY_METRIC, id, i64::MIN)];
        assert_eq!(soonest(&far_past, 1000).unwrap().state, "expired");
        let samples = held(&[(id, i64::MIN, i64::MAX)]);
        let forever = soonest(&samples, -1000).unwrap();
        assert_eq!((forever.state, forever.seconds_left), ("valid", i64::MAX));
    }

    #[test]
    fn no_certificate_series_is_unknown() {
        assert_eq!(soonest(&[sample("istio_build", "", 1)], 0), None);
        let only_expiry = [sample(EXPIRY_METRIC, "spiffe://td/ns/a/sa/x", 50)];
        let without_lifetime = soonest(&only_expiry, 49).unwrap();
        assert_eq!(without_lifetime.state, "valid");
        assert_eq!(without_lifetime.not_before_unix, None);
    }
}
