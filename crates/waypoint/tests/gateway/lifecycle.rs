//! The gateway's lifecycle: closed before its configuration, ports following configuration
//! changes without dropping open connections, a bad resource NACKed with the previous one
//! kept, and a drain that finishes the requests in flight.

use std::time::Duration;

use crate::fixture::*;
use crate::harness::backend;

fn one_listener(port: u16) -> weft_proto::l7::Gateway {
    gateway(vec![listener(
        "any",
        port,
        "",
        vec![route("r", vec![to_all(vec![to("echo", 1)])])],
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_unready_until_the_configuration_arrives() {
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], None).await;
    let addr = fixture.gateway.metrics.unwrap().to_string();
    let (status, _) = weft_serve::get(&addr, "/healthz/ready").await.unwrap();
    assert_eq!(status, 503);
    assert!(
        tokio::net::TcpStream::connect(fixture.addr(PORT))
            .await
            .is_err(),
        "no listener port before the configuration"
    );
    fixture.publish(&one_listener(PORT));
    fixture.wait_ready().await;
    let mut client = fixture.h1(PORT).await;
    assert_eq!(send(&mut client, get("a.test", "/", &[])).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_follow_the_configuration_and_open_connections_stay() {
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(one_listener(PORT))).await;
    let mut open = fixture.h1(PORT).await;
    assert_eq!(send(&mut open, get("a.test", "/1", &[])).await.status, 200);
    let mut both = one_listener(PORT);
    both.listeners.push(listener(
        "second",
        PORT + 1,
        "",
        vec![route("r2", vec![to_all(vec![to("echo", 1)])])],
    ));
    fixture.publish(&both);
    fixture
        .gateway
        .wait_ports(|ports| ports.contains_key(&(PORT + 1)))
        .await;
    let second = send(&mut open, get("a.test", "/2", &[])).await;
    assert_eq!(
        second.status, 200,
        "the open connection on the unchanged port works"
    );
    let mut new = fixture.h1(PORT + 1).await;
    assert_eq!(send(&mut new, get("a.test", "/3", &[])).await.status, 200);
    fixture.publish(&one_listener(PORT + 1));
    fixture
        .gateway
        .wait_ports(|ports| !ports.contains_key(&PORT))
        .await;
    assert!(
        tokio::net::TcpStream::connect(fixture.addr(PORT))
            .await
            .is_err(),
        "the removed listener's port is closed"
    );
    assert_eq!(send(&mut new, get("a.test", "/4", &[])).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_resource_is_refused_and_the_last_good_one_serves() {
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(one_listener(PORT))).await;
    let mut bad = one_listener(PORT);
    bad.listeners[0].port = 70000;
    fixture.publish(&bad);
    crate::harness::eventually("the NACK", || async { fixture.gateway_nacks() >= 1 }).await;
    assert!(
        fixture.gateway.ports().contains_key(&PORT),
        "the good listener stays"
    );
    let mut client = fixture.h1(PORT).await;
    assert_eq!(send(&mut client, get("a.test", "/", &[])).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(one_listener(PORT))).await;
    let mut client = fixture.h1(PORT).await;
    let slow = tokio::spawn(async move {
        send(
            &mut client,
            get("a.test", "/slow", &[("x-delay-ms", "300")]),
        )
        .await
    });
    let backend = std::sync::Arc::clone(fixture.backend("echo-a"));
    crate::harness::eventually("the request reached the backend", || async {
        backend.requests.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    let Fixture { gateway, .. } = fixture;
    let addr = gateway.ports().get(&PORT).copied().expect("port bound");
    gateway.shutdown(Duration::from_secs(5)).await;
    let answer = slow.await.expect("request task");
    assert_eq!(
        answer.status, 200,
        "the request in flight was finished: {answer:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_dump_shows_the_resource_without_private_keys() {
    let mut resource = one_listener(PORT);
    let mut https = listener("secure", PORT + 1, "", vec![]);
    https.protocol = weft_proto::l7::listener::Protocol::Https.into();
    https.certificates.push(weft_proto::l7::Certificate {
        source: "ns/cert".into(),
        cert_chain: "not a certificate".into(),
        private_key: "the-private-key".into(),
    });
    resource.listeners.push(https);
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let admin = fixture.gateway.admin.expect("admin").to_string();
    let (status, body) = weft_serve::get(&admin, "/config_dump").await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("secure") && body.contains("<redacted>"),
        "{body}"
    );
    assert!(!body.contains("the-private-key"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_held_by_another_socket_is_bound_once_it_is_free() {
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], None).await;
    let blocker = std::net::TcpListener::bind(fixture.addr(PORT)).expect("hold the port");
    fixture.publish(&one_listener(PORT));
    let addr = fixture.gateway.metrics.unwrap().to_string();
    crate::harness::eventually("configured", || async {
        fixture.gateway.gateway.engine().is_loaded()
    })
    .await;
    let (status, _) = weft_serve::get(&addr, "/healthz/ready").await.unwrap();
    assert_eq!(status, 503, "not ready while a listener port is not bound");
    drop(blocker);
    fixture
        .gateway
        .wait_ports(|ports| ports.contains_key(&PORT))
        .await;
    fixture.wait_ready().await;
    let mut client = fixture.h1(PORT).await;
    assert_eq!(send(&mut client, get("a.test", "/", &[])).await.status, 200);
}
