//! The service graph from the proxies' Istio metrics: one edge per source, destination and
//! protocol, with rates over the window, success, latency quantiles, bytes and whether
//! every series was mutual TLS. Each call is counted by several proxies (the source's and
//! the destination's node proxy, a waypoint); an edge takes the series of one reporter
//! only, the one that saw most (`destination`, else `waypoint`, else `source`), so nothing
//! is counted twice.

use crate::history::Increases;
use crate::prom::Sample;
use serde::Serialize;
use std::collections::BTreeMap;

/// One end of an edge: a workload, or the service when no workload is known (a request
/// answered by the waypoint itself, such as a 403).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// `<namespace>/<workload>` (or `<namespace>/<service>`, or `unknown`).
    pub id: String,
    /// `workload`, `service` or `unknown`.
    pub kind: &'static str,
}

/// Traffic between two endpoints over one protocol.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Edge {
    /// `<source id>-><destination id>`.
    pub id: String,
    /// Source endpoint id.
    pub source: String,
    /// Destination endpoint id.
    pub destination: String,
    /// `http` (requests, from a waypoint or gateway) or `tcp` (connections).
    pub protocol: String,
    /// The reporter whose series the edge shows.
    pub reporter: String,
    /// Requests (http) or connections opened (tcp) per second over the window.
    pub rate: f64,
    /// Requests or connections in the window.
    pub count: f64,
    /// Requests or connections since the reporting proxies started.
    pub total: f64,
    /// Share of the window's calls that succeeded (http: status below 400; tcp: not
    /// failed); `None` without calls in the window.
    pub success_rate: Option<f64>,
    /// Requests denied by policy (flag `RBAC`) or refused connections since start.
    pub denied: f64,
    /// Failed calls since start (http: status 5xx; tcp: failed connections).
    pub failed: f64,
    /// Median request duration in milliseconds (http).
    pub p50_ms: Option<f64>,
    /// 99th percentile request duration in milliseconds (http).
    pub p99_ms: Option<f64>,
    /// Bytes per second in both directions over the window.
    pub bytes_per_second: f64,
    /// Whether every series of the edge was mutual TLS.
    pub mtls: bool,
}

/// The endpoint a series' `prefix` (`source` / `destination`) labels name.
#[must_use]
pub fn endpoint(sample: &Sample, prefix: &str) -> Endpoint {
    let known = |value: &str| !value.is_empty() && value != "unknown";
    let workload = sample.label(&format!("{prefix}_workload"));
    let namespace = sample.label(&format!("{prefix}_workload_namespace"));
    if known(workload) && known(namespace) {
        return Endpoint {
            id: format!("{namespace}/{workload}"),
            kind: "workload",
        };
    }
    let service = sample.label(&format!("{prefix}_service_name"));
    let service_namespace = sample.label(&format!("{prefix}_service_namespace"));
    if known(service) && known(service_namespace) {
        return Endpoint {
            id: format!("{service_namespace}/{service}"),
            kind: "service",
        };
    }
    Endpoint {
        id: "unknown".into(),
        kind: "unknown",
    }
}

const REPORTER_PREFERENCE: [&str; 3] = ["destination", "waypoint", "source"];

/// What one reporter saw of one edge.
#[derive(Debug, Default)]
struct Tally {
    calls: f64,
    total: f64,
    bad_in_window: f64,
    denied: f64,
    failed: f64,
    bytes: f64,
    all_mtls: bool,
    seen: bool,
    /// `le` bound -> bucket increase (window) and total.
    buckets: BTreeMap<Bound, (f64, f64)>,
}

/// A histogram bucket bound, ordered numerically.
#[derive(Debug, Clone, Copy)]
struct Bound(f64);
impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

type EdgeKey = (Endpoint, Endpoint, &'static str);

/// Every edge seen in the proxies' latest scrapes, with rates over each one's window.
#[must_use]
pub fn edges(proxies: &[Increases<'_>]) -> Vec<(Edge, Endpoint, Endpoint)> {
    // (edge, reporter) -> tally, and the window seconds of the proxies reporting it.
    let mut tallies: BTreeMap<(EdgeKey, &str), (Tally, f64)> = BTreeMap::new();
    for increases in proxies {
        for change in &increases.series {
            let sample = change.sample;
            let Some(protocol) = protocol_of(&sample.name) else {
                continue;
            };
            let reporter = sample.label("reporter");
            if !REPORTER_PREFERENCE.contains(&reporter) {
                continue;
            }
            let key = (
                endpoint(sample, "source"),
                endpoint(sample, "destination"),
                protocol,
            );
            let (tally, seconds) = tallies.entry((key, reporter)).or_insert_with(|| {
                (
                    Tally {
                        all_mtls: true,
                        ..Tally::default()
                    },
                    0.0,
                )
            });
            *seconds = seconds.max(increases.seconds.unwrap_or(0.0));
            add(tally, sample, change.increase);
        }
    }
    let mut chosen: BTreeMap<EdgeKey, (&str, Tally, f64)> = BTreeMap::new();
    for ((key, reporter), (tally, seconds)) in tallies {
        let rank = |r: &str| REPORTER_PREFERENCE.iter().position(|p| *p == r);
        let better = chosen
            .get(&key)
            .is_none_or(|(current, _, _)| rank(reporter) < rank(current));
        if tally.seen && better {
            chosen.insert(key, (reporter, tally, seconds));
        }
    }
    chosen
        .into_iter()
        .map(
            |((source, destination, protocol), (reporter, tally, seconds))| {
                let edge = finish(&source, &destination, protocol, reporter, &tally, seconds);
                (edge, source, destination)
            },
        )
        .collect()
}

/// `http` for request metrics, `tcp` for connection metrics, `None` for others.
fn protocol_of(name: &str) -> Option<&'static str> {
    if name.starts_with("istio_request") || name.starts_with("istio_response_bytes") {
        Some("http")
    } else if name.starts_with("istio_tcp_") {
        Some("tcp")
    } else {
        None
    }
}

fn add(tally: &mut Tally, sample: &Sample, increase: f64) {
    let name = sample.name.as_str();
    let mtls = sample.label("connection_security_policy") == "mutual_tls";
    match name {
        "istio_requests_total" => {
            tally.seen = true;
            tally.all_mtls &= mtls;
            tally.calls += increase;
            tally.total += sample.value;
            let code: u16 = sample.label("response_code").parse().unwrap_or(0);
            if code >= 400 {
                tally.bad_in_window += increase;
            }
            if sample.label("response_flags") == "RBAC" {
                tally.denied += sample.value;
            }
            if code >= 500 {
                tally.failed += sample.value;
            }
        }
        "istio_tcp_connections_opened_total" => {
            tally.seen = true;
            tally.all_mtls &= mtls;
            tally.calls += increase;
            tally.total += sample.value;
        }
        "istio_tcp_connections_failed_total" => {
            tally.seen = true;
            tally.all_mtls &= mtls;
            tally.bad_in_window += increase;
            tally.failed += sample.value;
            // A refused connection was never opened: count it as a call too.
            tally.calls += increase;
            tally.total += sample.value;
        }
        "istio_tcp_sent_bytes_total"
        | "istio_tcp_received_bytes_total"
        | "istio_request_bytes_sum"
        | "istio_response_bytes_sum" => tally.bytes += increase,
        "istio_request_duration_milliseconds_bucket" => {
            // Rust reads `+Inf` as infinity, as the exposition format writes it.
            if let Ok(bound) = sample.label("le").parse::<f64>() {
                let bucket = tally.buckets.entry(Bound(bound)).or_default();
                bucket.0 += increase;
                bucket.1 += sample.value;
            }
        }
        _ => {}
    }
}

fn finish(
    source: &Endpoint,
    destination: &Endpoint,
    protocol: &str,
    reporter: &str,
    tally: &Tally,
    seconds: f64,
) -> Edge {
    let per_second = |value: f64| if seconds > 0.0 { value / seconds } else { 0.0 };
    // Latency from the window's requests, else from every request since start.
    let recent = tally.buckets.values().any(|(window, _)| *window > 0.0);
    let cumulative: Vec<(f64, f64)> = tally
        .buckets
        .iter()
        .map(|(bound, (window, total))| (bound.0, if recent { *window } else { *total }))
        .collect();
    // A connection refused is reported by the destination as failed; the policy refused it.
    let denied = if protocol == "tcp" {
        tally.failed
    } else {
        tally.denied
    };
    Edge {
        id: format!("{}->{}", source.id, destination.id),
        source: source.id.clone(),
        destination: destination.id.clone(),
        protocol: protocol.to_owned(),
        reporter: reporter.to_owned(),
        rate: per_second(tally.calls),
        count: tally.calls,
        total: tally.total,
        success_rate: (tally.calls > 0.0).then(|| 1.0 - tally.bad_in_window / tally.calls),
        denied,
        failed: tally.failed,
        p50_ms: quantile(0.5, &cumulative),
        p99_ms: quantile(0.99, &cumulative),
        bytes_per_second: per_second(tally.bytes),
        mtls: tally.all_mtls,
    }
}

/// The `q` quantile of a cumulative histogram (`(upper bound, count)` in bound order),
/// interpolated linearly within its bucket as Prometheus' `histogram_quantile` does; the
/// largest finite bound when it falls in the `+Inf` bucket.
#[must_use]
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let share = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_within_the_bucket() {
        let buckets = [
            (1.0, 0.0),
            (5.0, 50.0),
            (10.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile(0.5, &buckets), Some(5.0));
        assert_eq!(quantile(0.75, &buckets), Some(7.5));
        assert_eq!(quantile(0.99, &buckets), Some(9.9));
        let overflow = [(1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.99, &overflow), Some(1.0));
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }
}
