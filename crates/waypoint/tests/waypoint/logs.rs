//! The access log: one JSON event per request on the `weft::access` target, with the
//! request id, status, flags, upstream and route. A subscriber writing JSON into a buffer
//! is installed once for this test binary; tests find their lines by request id.

use std::sync::{Arc, Mutex, OnceLock};

use weft_proto::l7 as pb;

use crate::harness::*;

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let buffer = LOGS.get_or_init(Arc::default).clone();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || LogBuffer(Arc::clone(&buffer)))
        .try_init();
}

/// The access-log event of the request with `id`, as JSON fields.
fn access_event(id: &str) -> Option<serde_json::Value> {
    let buffer = LOGS.get()?.lock().unwrap().clone();
    String::from_utf8_lossy(&buffer)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|event| event["target"] == "weft::access" && event["fields"]["request_id"] == id)
        .map(|event| event["fields"].clone())
}

/// A waypoint resource whose route `ns/<name>` sends everything to the `echo` service.
fn to_echo(name: &str) -> pb::Waypoint {
    let route = pb::Route {
        namespace: NS.into(),
        name: name.into(),
        rules: vec![pb::Rule {
            backends: vec![pb::Backend {
                service: key("echo"),
                port: 80,
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    waypoint_resource(&[("echo", vec![route])], vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_writes_one_access_log_event() {
    capture_logs();
    let resource = to_echo("logged");
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let id = "8a7f5c1e-0000-4000-8000-00000000a11c";
    let answer = send(&mut h1, get("/logged?x=1", &[("x-request-id", id)])).await;
    assert_eq!(answer.header("x-seen-x-request-id"), id, "kept end to end");
    let mut event = None;
    eventually("the access-log event", || {
        event = access_event(id);
        std::future::ready(event.is_some())
    })
    .await;
    let event = event.unwrap();
    assert_eq!(event["method"], "GET");
    assert_eq!(event["path"], "/logged?x=1");
    assert_eq!(event["response_code"], 200);
    assert_eq!(event["response_flags"], "-");
    assert_eq!(event["route"], "ns/logged");
    assert_eq!(event["upstream_service"], key("echo"));
    let upstream = format!("{}:8080", mesh.backend("echo-a").ip);
    assert_eq!(event["upstream_host"], upstream.as_str());
    assert_eq!(
        event["source_principal"],
        "spiffe://cluster.local/ns/ns/sa/client"
    );
    assert_eq!(event["bytes_sent"], answer.body.len());
}

/// `--access-log-format off`: requests are served and counted in the metrics, and no
/// access-log event is written for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_off_writes_no_event_but_keeps_the_metrics() {
    capture_logs();
    let resource = to_echo("unlogged");
    let options = weft_waypoint::WaypointOptions {
        access_log: weft_node::telemetry::AccessLogFormat::Off,
        ..options(weft_waypoint::OutlierConfig::default())
    };
    let backends = vec![backend("echo-a", "echo")];
    let mesh = Mesh::start_with_options(backends, resource, options, None).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let id = "8a7f5c1e-0000-4000-8000-0000000000ff";
    let answer = send(&mut h1, get("/unlogged", &[("x-request-id", id)])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    eventually("the request in the metrics", || async {
        mesh.metrics().await.contains("istio_requests_total{")
    })
    .await;
    // The metrics are recorded in the same step that writes the access log, just before
    // it: once they show the request, a line would have been written.
    assert_eq!(
        access_event(id),
        None,
        "no access-log event with the log off"
    );
}
