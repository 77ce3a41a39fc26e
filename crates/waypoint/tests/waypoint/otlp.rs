//! Tracing: the waypoint's OTLP tracer against real OTLP receivers on loopback, a tonic
//! server implementing the collector's `TraceService` (OTLP/gRPC) and a hyper server taking
//! `POST /v1/traces` (OTLP/HTTP protobuf). Request heads go through the tracer as the
//! pipeline runs it (start before forwarding, finish with the access entry), and one request
//! goes through a whole waypoint to an echo backend; each exported span is checked against
//! the caller's and the upstream's `traceparent`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use weft_l7::trace::parse_traceparent;
use weft_waypoint::otlp::{OtlpOptions, OtlpTracer, Transport};
use weft_waypoint::telemetry::AccessEntry;
use weft_waypoint::{OutlierConfig, Tracer};

use crate::harness::{Mesh, backend, get, send, waypoint_resource};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const EXPORT_WAIT: Duration = Duration::from_secs(20);

/// What a receiver got: one export request at a time.
type Received = mpsc::UnboundedReceiver<ExportTraceServiceRequest>;

struct GrpcReceiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (SocketAddr, Received) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router =
        tonic::transport::Server::builder().add_service(TraceServiceServer::new(GrpcReceiver(tx)));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (addr, rx)
}

/// OTLP/HTTP: protobuf `ExportTraceServiceRequest` bodies POSTed to `/v1/traces`.
async fn http_receiver() -> (SocketAddr, Received) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    assert_eq!(
                        (request.method().as_str(), request.uri().path()),
                        ("POST", "/v1/traces")
                    );
                    let body = request.into_body().collect().await?.to_bytes();
                    let _ = tx
                        .send(ExportTraceServiceRequest::decode(body).expect("OTLP protobuf body"));
                    let answer = ExportTraceServiceResponse::default().encode_to_vec();
                    Ok::<_, hyper::Error>(
                        http::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

fn tracer(endpoint: String, sampling_rate: f64) -> OtlpTracer {
    let options = OtlpOptions {
        sampling_rate,
        batch_delay: Duration::from_millis(20),
        ..OtlpOptions::new(Some(endpoint), "wp.ns")
    };
    OtlpTracer::new(&options).expect("tracer")
}

fn entry(status: u16) -> AccessEntry {
    AccessEntry {
        method: "GET".into(),
        authority: "echo.ns.svc.cluster.local".into(),
        path: "/items/7?full=1".into(),
        protocol: "HTTP/1.1",
        status,
        flags: "-",
        upstream_host: Some("10.1.1.1:8080".into()),
        upstream_service: Some("ns/echo.ns.svc.cluster.local".into()),
        route: Some("ns/items".into()),
        ..AccessEntry::default()
    }
}

/// Runs one request head through the tracer: the headers as forwarded upstream.
fn through(tracer: &OtlpTracer, headers: &[(&str, &str)], status: u16) -> http::HeaderMap {
    let mut request = Request::get("http://echo/items/7?full=1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (mut parts, ()) = request.body(()).unwrap().into_parts();
    let span = tracer.start(&mut parts);
    span.finish(&entry(status));
    parts.headers
}

/// The next exported span (waits on the receiver, bounded).
async fn next_span(rx: &mut Received) -> (ProtoSpan, ExportTraceServiceRequest) {
    let request = tokio::time::timeout(EXPORT_WAIT, rx.recv())
        .await
        .expect("a span exported in time")
        .unwrap();
    let span = request.resource_spans[0].scope_spans[0].spans[0].clone();
    (span, request)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &ProtoSpan, key: &str) -> Value {
    let kv = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .unwrap_or_else(|| panic!("no {key}"));
    kv.value.clone().unwrap().value.unwrap()
}

/// The exported span continues the caller's trace and is the upstream's parent.
fn assert_links(span: &ProtoSpan, upstream: &http::HeaderMap) {
    let forwarded = parse_traceparent(upstream["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(hex(&span.trace_id), TRACE);
    assert_eq!(hex(&span.parent_span_id), CALLER_SPAN);
    assert_eq!(forwarded.trace_id.to_string(), TRACE);
    assert_eq!(
        hex(&span.span_id),
        forwarded.span_id.to_string(),
        "upstream's parent is the exported span"
    );
    assert_ne!(hex(&span.span_id), CALLER_SPAN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_links_caller_waypoint_and_upstream() {
    let (addr, mut rx) = grpc_receiver().await;
    let tracer = tracer(format!("http://{addr}"), 0.0);
    assert!(matches!(tracer.transport(), Some(Transport::Grpc(_))));
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let upstream = through(
        &tracer,
        &[("traceparent", &traceparent), ("x-request-id", "r-1")],
        200,
    );
    let (span, request) = next_span(&mut rx).await;
    assert_links(&span, &upstream);
    assert_eq!(span.name, "GET ns/items");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(&span, "http.request.method"),
        Value::StringValue("GET".into())
    );
    assert_eq!(
        attribute(&span, "url.path"),
        Value::StringValue("/items/7".into())
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Value::IntValue(200)
    );
    assert_eq!(
        attribute(&span, "server.address"),
        Value::StringValue("echo.ns.svc.cluster.local".into())
    );
    assert_eq!(
        attribute(&span, "upstream"),
        Value::StringValue("10.1.1.1:8080".into())
    );
    assert_eq!(
        attribute(&span, "request_id"),
        Value::StringValue("r-1".into())
    );
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    let resource = request.resource_spans[0].resource.clone().unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .unwrap();
    assert_eq!(
        service.value.clone().unwrap().value.unwrap(),
        Value::StringValue("wp.ns".into())
    );
    assert_eq!(upstream["x-request-id"], "r-1");
    tracer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_links_b3_caller_and_rewrites_b3_for_upstream() {
    let (addr, mut rx) = http_receiver().await;
    let tracer = tracer(format!("http://{addr}/v1/traces"), 0.0);
    assert!(matches!(tracer.transport(), Some(Transport::Http(_))));
    let b3 = [
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", CALLER_SPAN),
        ("x-b3-sampled", "1"),
    ];
    let upstream = through(&tracer, &b3, 503);
    let (span, _) = next_span(&mut rx).await;
    assert_links(&span, &upstream);
    assert_eq!(
        upstream["x-b3-spanid"].to_str().unwrap(),
        hex(&span.span_id)
    );
    assert_eq!(upstream["x-b3-parentspanid"], CALLER_SPAN);
    assert_eq!(
        span.status.unwrap().code,
        2,
        "5xx marks the server span as an error"
    );
    tracer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_are_not_exported_but_still_propagated() {
    let (addr, mut rx) = grpc_receiver().await;
    let tracer = tracer(format!("http://{addr}"), 1.0);
    let off = format!("00-{TRACE}-{CALLER_SPAN}-00");
    let upstream = through(&tracer, &[("traceparent", &off)], 200);
    assert!(upstream["traceparent"].to_str().unwrap().ends_with("-00"));
    // A new trace (no header) at 100% is exported: it is the first span the receiver sees.
    let fresh = through(&tracer, &[], 200);
    let (span, _) = next_span(&mut rx).await;
    let forwarded = parse_traceparent(fresh["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(hex(&span.trace_id), forwarded.trace_id.to_string());
    assert_eq!(hex(&span.span_id), forwarded.span_id.to_string());
    assert!(
        span.parent_span_id.is_empty(),
        "a trace the waypoint started has no parent"
    );
    assert_eq!(fresh["x-request-id"].len(), 36);
    tracer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_queued_spans() {
    let (addr, mut rx) = grpc_receiver().await;
    let options = OtlpOptions {
        batch_delay: Duration::from_secs(3600),
        ..OtlpOptions::new(Some(format!("http://{addr}")), "wp.ns")
    };
    let tracer = OtlpTracer::new(&options).unwrap();
    let upstream = through(&tracer, &[], 200);
    let hook: Arc<dyn Tracer> = Arc::new(tracer);
    tokio::task::spawn_blocking(move || hook.shutdown())
        .await
        .unwrap();
    let (span, _) = next_span(&mut rx).await;
    let forwarded = parse_traceparent(upstream["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(hex(&span.span_id), forwarded.span_id.to_string());
}

#[test]
fn without_an_endpoint_context_is_propagated_only() {
    let tracer = OtlpTracer::new(&OtlpOptions::new(None, "wp.ns")).unwrap();
    assert!(tracer.transport().is_none());
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let upstream = through(&tracer, &[("traceparent", &traceparent)], 200);
    let forwarded = parse_traceparent(upstream["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(forwarded.trace_id.to_string(), TRACE);
    assert_ne!(forwarded.span_id.to_string(), CALLER_SPAN);
}

#[test]
fn endpoints_choose_the_transport() {
    let rows = [
        (
            "http://collector:4317",
            Some(Transport::Grpc("http://collector:4317".into())),
        ),
        (
            "http://collector:4318",
            Some(Transport::Http("http://collector:4318/v1/traces".into())),
        ),
        (
            "http://collector:9000/v1/traces",
            Some(Transport::Http("http://collector:9000/v1/traces".into())),
        ),
        (
            "http://collector",
            Some(Transport::Grpc("http://collector".into())),
        ),
        ("https://collector:4317", None),
        ("collector:4317", None),
        ("http://collector:4317/other", None),
    ];
    for (endpoint, expected) in rows {
        let got = Transport::of(endpoint);
        match expected {
            Some(t) => assert_eq!(got.unwrap(), t, "{endpoint}"),
            None => assert!(
                got.unwrap_err().to_string().contains(endpoint),
                "{endpoint}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_waypoint_the_upstream_parent_is_the_exported_span() {
    let (addr, mut rx) = grpc_receiver().await;
    let tracer = tracer(format!("http://{addr}"), 0.0);
    let resource = waypoint_resource(&[("echo", vec![])], vec![]);
    let hook: Arc<dyn Tracer> = Arc::new(tracer.clone());
    let specs = vec![backend("echo-a", "echo")];
    let mesh = Mesh::start_traced(specs, resource, OutlierConfig::default(), Some(hook)).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let answer = send(
        &mut h1,
        get("/traced?x=1", &[("traceparent", &traceparent)]),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut upstream = http::HeaderMap::new();
    upstream.insert(
        "traceparent",
        answer.header("x-seen-traceparent").parse().unwrap(),
    );
    let (span, _) = next_span(&mut rx).await;
    assert_links(&span, &upstream);
    assert_eq!(span.name, "GET /traced");
    assert_eq!(
        attribute(&span, "url.path"),
        Value::StringValue("/traced".into())
    );
    let Value::StringValue(endpoint) = attribute(&span, "upstream") else {
        panic!("upstream is a string");
    };
    assert!(endpoint.ends_with(":8080"), "{endpoint}");
    assert_eq!(answer.header("x-seen-x-request-id").len(), 36);
    tracer.shutdown();
}
