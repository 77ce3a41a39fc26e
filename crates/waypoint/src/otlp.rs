//! Request tracing exported over OTLP: the waypoint's [`Tracer`] that continues each
//! request's trace (W3C or B3, through [`weft_l7::trace`]), makes the waypoint's span the
//! upstream's parent, and exports one SERVER span per sampled request to `--otlp-endpoint`
//! (without an endpoint it only propagates), keeping the last sampled spans in memory when
//! asked ([`OtlpOptions::recent_spans`], served as `/debug/traces`).
//!
//! The transport follows the endpoint URL ([`Transport::of`]): a path of `/v1/traces` or
//! port 4318 is OTLP/HTTP (protobuf body, POST to `/v1/traces`), anything else OTLP/gRPC
//! (conventionally port 4317). Spans are queued and sent in batches by the
//! `opentelemetry_sdk` batch processor on its own thread; the queue is bounded, so a slow or
//! absent collector drops spans instead of slowing requests.
//!
//! The span's ids are the ones the trace context chose before the request went upstream
//! (the processor takes finished [`SpanData`]), so the exported span, the access log's trace
//! id and the upstream's `traceparent` always agree.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use weft_l7::trace::{Sampler, TraceContext};

use crate::recent_spans::{RecentSpan, RecentSpans};
use crate::telemetry::AccessEntry;
use crate::{Span, Tracer};

/// Time allowed for one export call.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read over HTTP.
const MAX_RESPONSE: usize = 64 * 1024;

/// What the tracer needs.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// Collector URL: `http://host:4317` (gRPC) or `http://host:4318[/v1/traces]` (HTTP);
    /// None: trace context is propagated but nothing is exported.
    pub endpoint: Option<String>,
    /// Share of new traces sampled, 0.0 to 1.0 (a caller's decision is kept).
    pub sampling_rate: f64,
    /// `service.name` of the exported resource (e.g. `<gateway>.<namespace>`).
    pub service_name: String,
    /// How long spans wait before a batch is sent.
    pub batch_delay: Duration,
    /// How many of the last sampled spans to keep for `/debug/traces` (0: none).
    pub recent_spans: usize,
}

impl OtlpOptions {
    /// Exports to `endpoint` (None: propagation only), sampling every new trace.
    pub fn new(endpoint: Option<String>, service_name: impl Into<String>) -> Self {
        Self {
            endpoint,
            sampling_rate: 1.0,
            service_name: service_name.into(),
            batch_delay: Duration::from_secs(1),
            recent_spans: 0,
        }
    }
}

/// An endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("--otlp-endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("OTLP exporter for {endpoint:?} could not be built: {source}")]
    Build {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// How spans travel to the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC to this origin.
    Grpc(String),
    /// OTLP/HTTP protobuf, POST to this URL (ending in `/v1/traces`).
    Http(String),
}

impl Transport {
    /// Reads the endpoint URL: `http://` only (no TLS to the collector yet); a path of
    /// `/v1/traces` or port 4318 selects HTTP, otherwise gRPC.
    pub fn of(endpoint: &str) -> Result<Self, OtlpError> {
        let error = |reason: &str| OtlpError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = endpoint.parse().map_err(|_| error("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(error("https is not supported; use http://")),
            _ => return Err(error("must start with http://")),
        }
        let authority = uri.authority().ok_or_else(|| error("has no host"))?;
        let origin = format!("http://{authority}");
        let path = uri.path().trim_end_matches('/');
        if path.ends_with("/v1/traces") {
            Ok(Self::Http(format!("{origin}{path}")))
        } else if !path.is_empty() {
            Err(error(
                "the path must be empty (gRPC) or end in /v1/traces (HTTP)",
            ))
        } else if authority.port_u16() == Some(4318) {
            Ok(Self::Http(format!("{origin}/v1/traces")))
        } else {
            Ok(Self::Grpc(origin))
        }
    }
}

/// The waypoint's tracer: trace context propagation, plus OTLP export when an endpoint is
/// configured. Build it inside the tokio runtime that serves requests; cheap to clone
/// (clones share the batch processor).
#[derive(Clone)]
pub struct OtlpTracer(Arc<Shared>);

struct Shared {
    sampler: Sampler,
    export: Option<Export>,
    /// The last sampled spans, when kept.
    recent: Option<RecentSpans>,
    /// `service.name`, the proxy a kept span names.
    service_name: String,
}

/// The exporting half.
struct Export {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    transport: Transport,
}

impl std::fmt::Debug for OtlpTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpTracer")
            .field("transport", &self.transport())
            .field("sampler", &self.0.sampler)
            .finish_non_exhaustive()
    }
}

impl OtlpTracer {
    /// Builds the tracer, with its exporter and batch processor when an endpoint is set.
    ///
    /// # Errors
    /// A bad endpoint URL, or an exporter the SDK cannot build.
    ///
    /// # Panics
    /// With an endpoint, outside a tokio runtime.
    pub fn new(options: &OtlpOptions) -> Result<Self, OtlpError> {
        let export = match &options.endpoint {
            Some(endpoint) => Some(Export::new(endpoint, options)?),
            None => None,
        };
        Ok(Self(Arc::new(Shared {
            sampler: Sampler::from_percent(options.sampling_rate * 100.0),
            export,
            recent: (options.recent_spans > 0).then(|| RecentSpans::new(options.recent_spans)),
            service_name: options.service_name.clone(),
        })))
    }

    /// Where spans go (None: not exported).
    #[must_use]
    pub fn transport(&self) -> Option<&Transport> {
        self.0.export.as_ref().map(|e| &e.transport)
    }

    /// Sends the queued spans now and waits for the export (for tests and shutdown).
    pub fn flush(&self) {
        if let Some(Err(e)) = self.0.export.as_ref().map(|e| e.processor.force_flush()) {
            tracing::warn!(error = %e, "OTLP span export failed");
        }
    }

    /// Flushes and stops the batch thread.
    pub fn shutdown(&self) {
        if let Some(Err(e)) = self.0.export.as_ref().map(|e| e.processor.shutdown()) {
            tracing::debug!(error = %e, "OTLP shutdown");
        }
    }
}

impl Export {
    fn new(endpoint: &str, options: &OtlpOptions) -> Result<Self, OtlpError> {
        let transport = Transport::of(endpoint)?;
        let build = |source| OtlpError::Build {
            endpoint: endpoint.to_owned(),
            source,
        };
        let exporter = match &transport {
            Transport::Grpc(url) => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
            Transport::Http(url) => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(RuntimeHttpClient::new())
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
        }
        .map_err(build)?;
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(options.batch_delay)
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(options.service_name.clone())
                .build(),
        );
        Ok(Self {
            processor,
            scope: InstrumentationScope::builder("weft-waypoint")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            transport,
        })
    }
}

impl Tracer for OtlpTracer {
    fn start(&self, request: &mut http::request::Parts) -> Box<dyn Span> {
        let context = TraceContext::begin(&request.headers, &self.0.sampler, &mut rand::rng());
        context.inject(&mut request.headers);
        Box::new(RequestSpan {
            tracer: Arc::clone(&self.0),
            started: SystemTime::now(),
            context,
        })
    }

    fn shutdown(&self) {
        OtlpTracer::shutdown(self);
    }

    fn recent_spans(&self) -> Option<Vec<RecentSpan>> {
        self.0.recent.as_ref().map(RecentSpans::snapshot)
    }
}

/// One request's span until the response ends.
struct RequestSpan {
    tracer: Arc<Shared>,
    started: SystemTime,
    context: TraceContext,
}

impl Span for RequestSpan {
    fn finish(self: Box<Self>, entry: &AccessEntry) {
        if !self.context.sampled {
            return;
        }
        if let Some(recent) = &self.tracer.recent {
            let proxy = &self.tracer.service_name;
            recent.push(RecentSpan::new(proxy, &self.context, entry, self.started));
        }
        if let Some(export) = &self.tracer.export {
            let data = span_data(&self.context, entry, self.started, SystemTime::now());
            export.processor.on_end(SpanData {
                instrumentation_scope: export.scope.clone(),
                ..data
            });
        }
    }
}

/// The exported form of one request: name `<method> <route or path>`, kind SERVER, the
/// HTTP semantic-convention attributes and weft's own (upstream, request id, flags).
#[must_use]
pub fn span_data(
    context: &TraceContext,
    entry: &AccessEntry,
    start: SystemTime,
    end: SystemTime,
) -> SpanData {
    let state = context
        .tracestate
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let span_context = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(context.trace_id.0),
        opentelemetry::trace::SpanId::from_bytes(context.span_id.0),
        TraceFlags::SAMPLED,
        false,
        state,
    );
    let path = entry.path.split('?').next().unwrap_or_default().to_owned();
    let target = entry.route.clone().unwrap_or_else(|| path.clone());
    let status = if entry.status >= 500 {
        Status::error(format!("HTTP {}", entry.status))
    } else {
        Status::Unset
    };
    SpanData {
        span_context,
        parent_span_id: context
            .parent_span_id
            .map_or(opentelemetry::trace::SpanId::INVALID, |p| {
                opentelemetry::trace::SpanId::from_bytes(p.0)
            }),
        parent_span_is_remote: context.parent_span_id.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(format!("{} {target}", entry.method)),
        start_time: start,
        end_time: end,
        attributes: attributes(context, entry, path),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::default(),
    }
}

fn attributes(context: &TraceContext, entry: &AccessEntry, path: String) -> Vec<KeyValue> {
    let optional = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    vec![
        KeyValue::new("http.request.method", entry.method.clone()),
        KeyValue::new("url.path", path),
        KeyValue::new("http.response.status_code", i64::from(entry.status)),
        KeyValue::new("server.address", entry.authority.clone()),
        KeyValue::new("network.protocol.name", "http"),
        KeyValue::new("upstream", optional(&entry.upstream_host)),
        KeyValue::new("upstream.service", optional(&entry.upstream_service)),
        KeyValue::new("http.route", optional(&entry.route)),
        KeyValue::new("response_flags", entry.flags),
        KeyValue::new("request_id", context.request_id.clone()),
        KeyValue::new("source.principal", entry.source_principal.clone()),
        KeyValue::new("trace_id", context.trace_id.to_string()),
        KeyValue::new("span_id", context.span_id.to_string()),
        KeyValue::new(
            "parent_span_id",
            context
                .parent_span_id
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ),
    ]
}

/// OTLP/HTTP client for the batch processor's thread: each request runs on the tokio
/// runtime the tracer was built in (hyper needs its reactor), the thread awaits the result.
#[derive(Debug)]
struct RuntimeHttpClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RuntimeHttpClient {
    fn new() -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, exchange).await });
        match task.await? {
            Ok(result) => result,
            Err(_) => Err("OTLP/HTTP export timed out".into()),
        }
    }
}
