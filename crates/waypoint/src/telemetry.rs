//! The waypoint's and gateway's telemetry: Istio's request metrics with
//! `reporter="waypoint"` (a gateway: `reporter="source"`)
//! (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`), the node proxy's `istio_tcp_*` metrics for TCP passthrough, and
//! one access-log event per request (target `weft::access`, structured fields, so a JSON
//! subscriber writes one JSON object per request).
//!
//! The standard `source_*` / `destination_*` labels come from the node proxy's
//! [`ConnectionLabels::derive`], so both proxies label the same workload the same way.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weft_node::telemetry::{AccessLogFormat, ConnectionLabels, Metrics as TcpMetrics};

/// Labels of the request metrics: the standard set plus the response's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The standard source/destination labels (`request_protocol` is `http` or `grpc`).
    #[prometheus(flatten)]
    pub connection: ConnectionLabels,
    /// HTTP status sent to the client.
    pub response_code: u16,
    /// `grpc-status` of a gRPC response, else empty.
    pub grpc_response_status: String,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric of the waypoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    request_bytes: HistogramFamily,
    response_bytes: HistogramFamily,
    /// `istio_tcp_*` for TCP passthrough (and the HBONE pool counters).
    pub tcp: TcpMetrics,
    /// Mirrored copies not sent because the most allowed were in flight.
    mirrors_dropped: Counter,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
        30000.0, 60000.0,
    ])
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 10.0, 9))
}

/// What one finished request contributes.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Labels.
    pub labels: RequestLabels,
    /// Milliseconds from the request's arrival to the end of the response.
    pub duration_ms: f64,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            request_bytes: Family::new_with_constructor(size_histogram),
            response_bytes: Family::new_with_constructor(size_histogram),
            tcp: TcpMetrics::register(registry),
            mirrors_dropped: Counter::default(),
        };
        registry.register(
            "weft_request_mirrors_dropped",
            "Mirrored request copies not sent because --max-mirrors-in-flight were in flight",
            metrics.mirrors_dropped.clone(),
        );
        registry.register(
            "istio_requests",
            "Requests handled by the waypoint",
            metrics.requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration",
            metrics.duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes",
            metrics.request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes",
            metrics.response_bytes.clone(),
        );
        metrics
    }

    /// Counts a mirrored copy that was not sent.
    pub(crate) fn mirror_dropped(&self) {
        self.mirrors_dropped.inc();
    }

    /// Records one finished request.
    pub fn record(&self, record: &RequestRecord) {
        self.series(&record.labels).observe(
            record.duration_ms,
            record.request_bytes,
            record.response_bytes,
        );
    }

    /// The series of `labels` in every request metric (created when new). A caller that
    /// keeps it records later requests with the same labels without building or hashing
    /// the labels again.
    #[must_use]
    pub fn series(&self, labels: &RequestLabels) -> RequestSeries {
        RequestSeries {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        }
    }
}

/// One label set's series of the request metrics (shared with the registry: updates are
/// what the metrics endpoint reports).
#[derive(Debug, Clone)]
pub struct RequestSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl RequestSeries {
    /// Counts one finished request of `duration_ms` with its body sizes.
    pub fn observe(&self, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.observe(duration_ms);
        #[allow(clippy::cast_precision_loss)] // sizes far below 2^52
        {
            self.request_bytes.observe(request_bytes as f64);
            self.response_bytes.observe(response_bytes as f64);
        }
    }
}

/// The access-log fields of one request.
#[derive(Debug, Clone, Default)]
pub struct AccessEntry {
    /// Method.
    pub method: String,
    /// `:authority` / Host.
    pub authority: String,
    /// Path with query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// Status sent.
    pub status: u16,
    /// Envoy-style response flags (`-` when none).
    pub flags: &'static str,
    /// `<ip>:<port>` of the endpoint the request went to.
    pub upstream_host: Option<String>,
    /// The service key the request went to.
    pub upstream_service: Option<String>,
    /// Total duration in milliseconds.
    pub duration_ms: u64,
    /// Time to the upstream's response headers, in milliseconds.
    pub upstream_ms: Option<u64>,
    /// Request body bytes.
    pub bytes_received: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// `x-request-id`.
    pub request_id: String,
    /// W3C trace id of the request, if it carried one.
    pub trace_id: Option<String>,
    /// The caller's SPIFFE id.
    pub source_principal: String,
    /// Original client address.
    pub remote_ip: String,
    /// The route that matched, `<kind> <ns>/<name>`.
    pub route: Option<String>,
    /// `waypoint` or `source` (a gateway).
    pub reporter: &'static str,
}

impl AccessEntry {
    /// Emits the access-log event in `format`.
    pub fn log_as(&self, format: AccessLogFormat) {
        match format {
            AccessLogFormat::Text => self.log(),
            AccessLogFormat::Json => {
                if tracing::enabled!(target: "weft::access", tracing::Level::INFO) {
                    tracing::info!(target: "weft::access", "{}", self.json());
                }
            }
            AccessLogFormat::Off => {}
        }
    }

    /// The entry as one JSON object (the same field names as the text form), serialized
    /// straight from borrowed fields: one string per line, no intermediate map.
    #[must_use]
    pub fn json(&self) -> String {
        let line = JsonLine {
            reporter: self.reporter,
            method: &self.method,
            authority: &self.authority,
            path: &self.path,
            protocol: self.protocol,
            response_code: self.status,
            response_flags: self.flags,
            upstream_host: self.upstream_host.as_deref().unwrap_or("-"),
            upstream_service: self.upstream_service.as_deref().unwrap_or("-"),
            route: self.route.as_deref().unwrap_or("-"),
            duration_ms: self.duration_ms,
            upstream_service_time_ms: self.upstream_ms,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            request_id: &self.request_id,
            trace_id: self.trace_id.as_deref().unwrap_or("-"),
            source_principal: &self.source_principal,
            downstream_remote_address: &self.remote_ip,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Emits the access-log event (structured fields).
    pub fn log(&self) {
        tracing::info!(
            target: "weft::access",
            reporter = self.reporter,
            method = %self.method,
            authority = %self.authority,
            path = %self.path,
            protocol = self.protocol,
            response_code = self.status,
            response_flags = self.flags,
            upstream_host = self.upstream_host.as_deref().unwrap_or("-"),
            upstream_service = self.upstream_service.as_deref().unwrap_or("-"),
            route = self.route.as_deref().unwrap_or("-"),
            duration_ms = self.duration_ms,
            upstream_service_time_ms = self.upstream_ms,
            bytes_received = self.bytes_received,
            bytes_sent = self.bytes_sent,
            request_id = %self.request_id,
            trace_id = self.trace_id.as_deref().unwrap_or("-"),
            source_principal = %self.source_principal,
            downstream_remote_address = %self.remote_ip,
            "request"
        );
    }
}

/// One JSON access-log line, borrowing the entry's fields (field order is the text form's).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    reporter: &'a str,
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    protocol: &'a str,
    response_code: u16,
    response_flags: &'a str,
    upstream_host: &'a str,
    upstream_service: &'a str,
    route: &'a str,
    duration_ms: u64,
    upstream_service_time_ms: Option<u64>,
    bytes_received: u64,
    bytes_sent: u64,
    request_id: &'a str,
    trace_id: &'a str,
    source_principal: &'a str,
    downstream_remote_address: &'a str,
}

/// The trace id of a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`).
#[must_use]
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_entries_are_one_object_with_the_text_field_names() {
        let entry = super::AccessEntry {
            method: "GET".into(),
            path: "/a \"quoted\"".into(),
            status: 200,
            flags: "-",
            reporter: "source",
            ..super::AccessEntry::default()
        };
        let json: serde_json::Value = serde_json::from_str(&entry.json()).expect("JSON");
        assert_eq!(json["reporter"], "source");
        assert_eq!(json["response_code"], 200);
        assert_eq!(json["path"], "/a \"quoted\"");
        assert_eq!(json["upstream_host"], "-");
    }

    #[test]
    fn trace_ids_come_from_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            super::trace_id(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        assert_eq!(super::trace_id("garbage"), None);
    }
}
