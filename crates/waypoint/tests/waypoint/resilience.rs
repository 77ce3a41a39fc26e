//! Failures through the waypoint: timeouts, retries hiding a failing endpoint, outlier
//! ejection, an unresolved backend, and tunnels before the first configuration.

use std::sync::atomic::Ordering;
use std::time::Duration;

use weft_proto::l7 as pb;
use weft_waypoint::OutlierConfig;

use crate::harness::*;

fn rule_to_echo(edit: impl FnOnce(&mut pb::Rule)) -> pb::Waypoint {
    let mut rule = pb::Rule {
        backends: vec![pb::Backend {
            service: key("echo"),
            port: 80,
            weight: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    edit(&mut rule);
    let route = pb::Route {
        namespace: NS.into(),
        name: "r".into(),
        rules: vec![rule],
        ..Default::default()
    };
    waypoint_resource(&[("echo", vec![route])], vec![])
}

fn failing(name: &'static str, status: u16) -> BackendSpec {
    BackendSpec {
        behaviour: Behaviour { fail: Some(status) },
        ..backend(name, "echo")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_answers_504() {
    let resource = rule_to_echo(|r| r.backend_request_timeout_ms = 200);
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let slow = send(&mut h1, get("/", &[("x-delay-ms", "2000")])).await;
    assert_eq!(
        (slow.status, slow.body.as_str()),
        (504, "upstream request timeout")
    );
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let fast = send(&mut h1, get("/", &[])).await;
    assert_eq!(fast.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_cuts_a_slow_response_body() {
    use http_body_util::BodyExt;
    let resource = rule_to_echo(|r| r.request_timeout_ms = 300);
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    h1.ready().await.unwrap();
    let slow = get("/", &[("x-body-delay-ms", "5000")]);
    let response = h1.send_request(slow).await.expect("response head");
    assert_eq!(response.status(), 200, "the head came in time");
    let started = std::time::Instant::now();
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "the body is cut, not completed: {body:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at the deadline"
    );
    eventually("the cut response counted with flag UT", || async {
        mesh.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"UT\""))
    })
    .await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let fast = send(&mut h1, get("/", &[("x-body-delay-ms", "10")])).await;
    assert_eq!(
        (fast.status, fast.body.as_str()),
        (200, "first echo-a GET / 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_failing_endpoint() {
    let resource = rule_to_echo(|r| {
        r.retry = Some(pb::Retry {
            attempts: 3,
            codes: vec![503],
            backoff_ms: 1,
        });
    });
    let never_eject = OutlierConfig {
        consecutive_failures: u32::MAX,
        ..OutlierConfig::default()
    };
    let mesh = Mesh::start_with(
        vec![failing("echo-bad", 503), backend("echo-good", "echo")],
        resource,
        never_eject,
    )
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    for _ in 0..30 {
        let answer = send(&mut h1, get("/", &[])).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert!(
        mesh.backend("echo-bad").requests.load(Ordering::Relaxed) > 0,
        "the failing endpoint was tried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_an_endpoint() {
    let outlier = OutlierConfig {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(60),
        ..OutlierConfig::default()
    };
    let mesh = Mesh::start_with(
        vec![failing("echo-bad", 500), backend("echo-good", "echo")],
        waypoint_resource(&[("echo", vec![])], vec![]),
        outlier,
    )
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let mut failures = 0;
    for _ in 0..60 {
        failures += u32::from(send(&mut h1, get("/", &[])).await.status == 500);
    }
    assert_eq!(failures, 3, "ejected after 3 consecutive failures");
    assert_eq!(mesh.backend("echo-bad").requests.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolved_backend_answers_500() {
    let resource = rule_to_echo(|r| {
        r.backends = vec![pb::Backend {
            weight: 1,
            unresolved: "Service ns/missing not found".into(),
            ..Default::default()
        }];
    });
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let answer = send(&mut h1, get("/", &[])).await;
    assert_eq!(answer.status, 500, "{answer:?}");
    assert!(answer.body.contains("Service ns/missing not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_not_bound_to_the_waypoint_is_refused() {
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo")],
        waypoint_resource(&[], vec![]),
    )
    .await;
    let client = mesh.client().await;
    let refused = client.tunnel(mesh.net.vip(1)).await.expect_err("refused");
    assert_eq!(refused.status(), Some(404), "{refused}");
}
