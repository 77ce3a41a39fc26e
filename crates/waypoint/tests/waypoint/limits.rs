//! The waypoint's HBONE listener within its inbound limits (`weft waypoint run
//! --hbone-max-tunnels-per-identity` and friends): a caller identity over its tunnel limit
//! is answered 503 and counted on the metrics page, while its open tunnels keep working
//! and another identity still gets through. An HTTP/2 connection without a request in
//! flight for `--http-idle-timeout` is closed.

use std::time::Duration;

use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_hbone::LimitConfig;
use weft_waypoint::{OutlierConfig, WaypointOptions};

use crate::harness::*;

/// The refusal counter's line for tunnels refused by the identity limit.
const REFUSED_TUNNELS: &str =
    "weft_hbone_inbound_refused_total{kind=\"tunnel\",limit=\"identity\"}";

fn limited_to_tunnels_per_identity(tunnels: usize) -> WaypointOptions {
    WaypointOptions {
        inbound_limits: LimitConfig {
            tunnels_per_identity: tunnels,
            ..LimitConfig::default()
        },
        ..options(OutlierConfig::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_over_one_identitys_limit_get_503_while_another_identity_gets_through() {
    let mesh = Mesh::start_with_options(
        vec![backend("echo-a", "echo")],
        waypoint_resource(&[("echo", vec![])], vec![]),
        limited_to_tunnels_per_identity(2),
        None,
    )
    .await;
    let vip = mesh.net.vip(1);
    let client = mesh.client().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut h1 = client.h1(vip).await;
        assert_eq!(send(&mut h1, get("/held", &[])).await.status, 200);
        held.push(h1);
    }

    let refused = client
        .tunnel(vip)
        .await
        .expect_err("a third tunnel of the same identity is refused");
    assert_eq!(refused.status(), Some(503), "{refused}");

    let other = mesh.client_in("other").await;
    let mut h1 = other.h1(vip).await;
    let answer = send(&mut h1, get("/other", &[])).await;
    assert_eq!(
        answer.status, 200,
        "another identity gets through: {answer:?}"
    );

    for h1 in &mut held {
        let answer = send(h1, get("/still", &[])).await;
        assert_eq!(answer.status, 200, "open tunnels keep working: {answer:?}");
    }
    let metrics = mesh.metrics().await;
    assert!(
        metrics.contains(&format!("{REFUSED_TUNNELS} 1\n")),
        "{metrics}"
    );

    // A closed tunnel gives its slot back.
    drop(held.pop());
    eventually("a slot freed by a closed tunnel is taken again", || async {
        client.tunnel(vip).await.is_ok()
    })
    .await;
}

/// A waypoint closing HTTP/2 connections idle for 1 s, and an h2c connection to its
/// service `echo`: the sender, and the connection's task (ends when it is closed).
async fn idle_after_a_second() -> (
    Mesh,
    hyper::client::conn::http2::SendRequest<ClientBody>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let options = WaypointOptions {
        http_idle_timeout: Duration::from_secs(1),
        ..options(OutlierConfig::default())
    };
    let resource = waypoint_resource(&[("echo", vec![])], vec![]);
    let mesh =
        Mesh::start_with_options(vec![backend("echo-a", "echo")], resource, options, None).await;
    let stream = mesh.client().await.tunnel(mesh.net.vip(1)).await;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream.expect("tunnel")))
        .await
        .expect("h2c handshake");
    (mesh, sender, tokio::spawn(connection))
}

async fn assert_closed_soon(connection: tokio::task::JoinHandle<hyper::Result<()>>) {
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    ended
        .expect("the idle connection is closed within 10 s")
        .expect("the connection task")
        .expect("a clean close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_is_closed_once_idle_for_the_timeout_not_while_answering() {
    let (_mesh, mut sender, connection) = idle_after_a_second().await;
    // answered after twice the idle timeout: a request in flight keeps its connection
    let held = Request::get("http://echo/held")
        .header("x-delay-ms", "2000")
        .body(empty())
        .unwrap();
    let answer = read(sender.send_request(held).await.expect("the held answer")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // an answer whose body comes two seconds after its head is in flight until it ends
    let streaming = Request::get("http://echo/streaming")
        .header("x-body-delay-ms", "2000")
        .body(empty())
        .unwrap();
    let answer = read(sender.send_request(streaming).await.expect("the slow body")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let next = Request::get("http://echo/next").body(empty()).unwrap();
    let answer = read(sender.send_request(next).await.expect("no GOAWAY yet")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // then nothing: the waypoint ends the connection (GOAWAY) about a second later
    assert_closed_soon(connection).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_gave_up_on_does_not_keep_its_connection_open() {
    let (mesh, mut sender, connection) = idle_after_a_second().await;
    let held = Request::get("http://echo/held")
        .header("x-delay-ms", "60000")
        .body(empty())
        .unwrap();
    let pending = tokio::spawn(sender.send_request(held));
    let backend = mesh.backend("echo-a");
    eventually("the backend holds the request", || async {
        backend.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    // the client gives up: its stream is reset, and the request ends with it
    pending.abort();
    assert_closed_soon(connection).await;
}
