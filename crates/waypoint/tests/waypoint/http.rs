//! HTTP through the waypoint: HTTP/1.1 and h2c on the default route, L7 denials, routing,
//! weighted splits, WebSocket, streamed bodies and the request metrics.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use weft_proto::l7 as pb;
use weft_proto::security::{Action, Clause, Rule};

use crate::harness::*;

fn one_service(routes: Vec<pb::Route>, policies: Vec<pb::Policy>) -> pb::Waypoint {
    waypoint_resource(&[("echo", routes)], policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_reach_the_service_with_the_waypoint_identity() {
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], one_service(vec![], vec![])).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    for _ in 0..3 {
        let answer = send(&mut h1, get("/hello", &[])).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, "echo-a GET /hello 0");
        assert_eq!(
            answer.header("x-peer"),
            "spiffe://cluster.local/ns/ns/sa/wp"
        );
        assert_eq!(
            answer.header("x-seen-x-request-id").len(),
            36,
            "request id added"
        );
        assert_eq!(answer.header("x-seen-x-forwarded-proto"), "http");
    }
    let mut h2 = client.h2(mesh.net.vip(1)).await;
    let request = Request::get("http://echo/two").body(empty()).unwrap();
    let answer = read(h2.send_request(request).await.expect("h2 response")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "echo-a GET /two 0")
    );
    assert_eq!(
        mesh.backend("echo-a")
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l7_deny_answers_403_and_metrics_count_it() {
    let deny_admin = policy(
        "no-admin",
        Action::Deny,
        vec![Rule {
            clauses: vec![Clause {
                matches: vec![path_match(&["/admin*"])],
            }],
        }],
        &["echo"],
    );
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo")],
        one_service(vec![], vec![deny_admin]),
    )
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let denied = send(&mut h1, get("/admin/users", &[])).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, "RBAC: access denied");
    assert_eq!(denied.header("content-type"), "text/plain");
    let allowed = send(&mut h1, get("/public", &[])).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        mesh.backend("echo-a")
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let metrics = mesh.metrics().await;
    let count = |code: &str, flags: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains("reporter=\"waypoint\""))
            .filter(|l| l.contains(&format!("response_code=\"{code}\"")))
            .filter(|l| l.contains(&format!("response_flags=\"{flags}\"")))
            .filter(|l| l.contains("source_principal=\"spiffe://cluster.local/ns/ns/sa/client\""))
            .filter(|l| l.contains("source_workload=\"client\""))
            .filter(|l| l.contains("destination_service=\"echo.ns.svc.cluster.local\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    eventually_count(&mesh, "403 counted").await;
    assert_eq!(count("403", "RBAC"), 1, "{metrics}");
    let metrics = mesh.metrics().await;
    assert!(
        metrics.contains("istio_request_duration_milliseconds_bucket{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("destination_workload=\"echo-a\""),
        "{metrics}"
    );
}

async fn eventually_count(mesh: &Mesh, what: &str) {
    eventually(what, || async {
        mesh.metrics().await.contains("response_code=\"200\"")
    })
    .await;
}

fn route(name: &str, rules: Vec<pb::Rule>) -> pb::Route {
    pb::Route {
        namespace: NS.into(),
        name: name.into(),
        rules,
        ..Default::default()
    }
}

fn to(service: &str, weight: u32) -> pb::Backend {
    pb::Backend {
        service: key(service),
        port: 80,
        weight,
        ..Default::default()
    }
}

fn path_prefix(prefix: &str) -> pb::Match {
    pb::Match {
        path: Some(pb::PathMatch {
            r#type: pb::MatchType::Prefix.into(),
            value: prefix.into(),
        }),
        ..Default::default()
    }
}

fn header_is(name: &str, value: &str) -> pb::Match {
    pb::Match {
        headers: vec![pb::KeyMatch {
            name: name.into(),
            r#type: pb::MatchType::Exact.into(),
            value: value.into(),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_choose_backends_by_header_and_path_and_unmatched_is_404() {
    let rules = vec![
        pb::Rule {
            matches: vec![header_is("x-version", "v2")],
            backends: vec![to("echo-v2", 1)],
            ..Default::default()
        },
        pb::Rule {
            matches: vec![path_prefix("/api")],
            backends: vec![to("echo", 1)],
            filters: vec![pb::Filter {
                kind: Some(pb::filter::Kind::ResponseHeaderModifier(
                    pb::HeaderModifier {
                        set: vec![pb::Header {
                            name: "x-routed".into(),
                            value: "api".into(),
                        }],
                        ..Default::default()
                    },
                )),
            }],
            ..Default::default()
        },
    ];
    let resource = one_service(vec![route("split", rules)], vec![]);
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")],
        resource,
    )
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let v2 = send(&mut h1, get("/anything", &[("x-version", "v2")])).await;
    assert_eq!(v2.header("x-backend"), "echo-v2", "{v2:?}");
    let api = send(&mut h1, get("/api/users", &[])).await;
    assert_eq!(
        (api.header("x-backend"), api.header("x-routed")),
        ("echo-a", "api")
    );
    let none = send(&mut h1, get("/other", &[])).await;
    assert_eq!(none.status, 404, "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_stays_within_three_sigma() {
    let rules = vec![pb::Rule {
        backends: vec![to("echo", 90), to("echo-v2", 10)],
        ..Default::default()
    }];
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")],
        one_service(vec![route("split", rules)], vec![]),
    )
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let total = 1000_u32;
    let mut v2 = 0_u32;
    for _ in 0..total {
        let answer = send(&mut h1, get("/", &[])).await;
        assert_eq!(answer.status, 200);
        v2 += u32::from(answer.header("x-backend") == "echo-v2");
    }
    // Binomial(1000, 0.1): mean 100, sigma ~9.5.
    let sigma = (f64::from(total) * 0.1 * 0.9).sqrt();
    let off = (f64::from(v2) - f64::from(total) * 0.1).abs();
    assert!(off <= 3.0 * sigma, "{v2} of {total} went to v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_spliced() {
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], one_service(vec![], vec![])).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let request = Request::get("/ws")
        .header("host", "echo")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(empty())
        .unwrap();
    h1.ready().await.unwrap();
    let response = h1.send_request(request).await.expect("101");
    assert_echoes(response, b"ping over the upgrade").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_stream_to_the_backend_before_the_client_finishes() {
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], one_service(vec![], vec![])).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let (chunks, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).boxed();
    let request = Request::post("/upload")
        .header("host", "echo")
        .body(body)
        .unwrap();
    h1.ready().await.unwrap();
    let response = tokio::spawn(h1.send_request(request));
    let chunk = Bytes::from(vec![7_u8; 1 << 20]);
    chunks.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    // The rest is sent only once the backend has seen the first megabyte: a waypoint that
    // buffered whole bodies would never get there.
    tokio::time::timeout(WAIT, mesh.backend("echo-a").first_bytes.notified())
        .await
        .expect("the backend sees data before the body ends");
    for _ in 1..64 {
        chunks.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    }
    drop(chunks);
    let answer = read(response.await.unwrap().expect("response")).await;
    assert_eq!(answer.body, format!("echo-a POST /upload {}", 64 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_comes_from_the_trailers() {
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], one_service(vec![], vec![])).await;
    let client = mesh.client().await;
    let mut h2 = client.h2(mesh.net.vip(1)).await;
    let request = Request::post("http://echo/pkg.Echo/Say")
        .header("content-type", "application/grpc")
        .header("x-grpc-status", "5")
        .body(empty())
        .unwrap();
    let response = h2.send_request(request).await.expect("h2 response");
    let (_, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "5");
    eventually("the gRPC request is counted", || async {
        mesh.metrics().await.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("request_protocol=\"grpc\"")
                && l.contains("grpc_response_status=\"5\"")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_port_declared_http2_gets_http2_from_an_http1_client() {
    let to_v2 = route(
        "to-v2",
        vec![pb::Rule {
            backends: vec![to("echo-v2", 1)],
            ..Default::default()
        }],
    );
    let mut resource = waypoint_resource(&[("echo", vec![to_v2]), ("echo-v2", vec![])], vec![]);
    resource.services[1].ports[0].protocol = pb::Protocol::Http2.into();
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let mesh = Mesh::start(specs, resource).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let answer = send(&mut h1, get("/", &[])).await;
    assert_eq!(answer.header("x-backend"), "echo-v2", "{answer:?}");
    assert_eq!(answer.header("x-version"), "HTTP/2.0");
    let mut h1 = client.h1(mesh.net.vip(2)).await;
    let refused = h1.send_request(get("/", &[])).await;
    assert!(
        refused.is_err(),
        "an HTTP2 port does not speak HTTP/1.1: {refused:?}"
    );
}
