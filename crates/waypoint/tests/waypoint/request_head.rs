//! The request head as policy and routing read it: only WebSocket upgrades are spliced (h2c
//! is forwarded as a plain request, other upgrades refused), paths are normalized before
//! authorization and forwarding, hosts are canonical for policy and routing alike, and the
//! upstream protocol follows the service port, not the client.

use http::Request;
use weft_proto::l7 as pb;
use weft_proto::security::{Action, Clause, Rule};

use crate::harness::*;

/// Service `echo` behind the waypoint with one DENY policy matching `request`.
async fn denying(request: pb::RequestMatch) -> Mesh {
    let deny = policy(
        "deny",
        Action::Deny,
        vec![Rule {
            clauses: vec![Clause {
                matches: vec![request_match(request)],
            }],
        }],
        &["echo"],
    );
    let resource = waypoint_resource(&[("echo", vec![])], vec![deny]);
    Mesh::start(vec![backend("echo-a", "echo")], resource).await
}

async fn deny_admin() -> Mesh {
    denying(pb::RequestMatch {
        paths: vec![string_match("/admin*")],
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_a_plain_request_and_policy_still_applies_after_it() {
    let mesh = deny_admin().await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let h2c = get(
        "/public",
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    );
    let answer = send(&mut h1, h2c).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "echo-a GET /public 0")
    );
    for name in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(
            answer.header(&format!("x-seen-{name}")),
            "",
            "{name} forwarded"
        );
    }
    let denied = send(&mut h1, get("/admin", &[])).await;
    assert_eq!(
        denied.status, 403,
        "the connection is still HTTP/1.1 through the policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_other_than_websocket_are_refused() {
    let mesh = deny_admin().await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let other = get("/public", &[("connection", "upgrade"), ("upgrade", "echo")]);
    let refused = send(&mut h1, other).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body,
        "upgrade to \"echo\" is not allowed: only websocket upgrades are"
    );
    assert_eq!(
        mesh.backend("echo-a")
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_loses_the_other_hop_by_hop_headers() {
    let mesh = deny_admin().await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let request = Request::get("/ws")
        .header("host", "echo")
        .header("connection", "keep-alive, Upgrade, x-private")
        .header("upgrade", "WebSocket")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-private", "1")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(empty())
        .unwrap();
    h1.ready().await.unwrap();
    let response = h1.send_request(request).await.expect("101");
    assert_eq!(response.status(), 101);
    let seen = |name: &str| response.headers().get(format!("x-seen-{name}"));
    for gone in ["keep-alive", "proxy-authorization", "x-private"] {
        assert!(seen(gone).is_none(), "{gone} forwarded");
    }
    assert_eq!(seen("connection").unwrap(), "upgrade");
    assert_eq!(seen("upgrade").unwrap(), "websocket");
    assert_eq!(
        seen("sec-websocket-key").unwrap(),
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    assert_echoes(response, b"frame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalized_before_policy_and_forwarding() {
    let mesh = deny_admin().await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    for path in [
        "/./admin",
        "/a/../admin",
        "/%61dmin",
        "/%2e%2e/admin",
        "/public\\..\\admin",
    ] {
        let answer = send(&mut h1, get(path, &[])).await;
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
    }
    // An encoded NUL is refused (as Istio does), not decoded nor passed on.
    let answer = send(&mut h1, get("/admin%00.txt", &[])).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    for (path, seen) in [
        ("/a/./b?q=/../x", "/a/b"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb/%7Ec", "/a%2Fb/~c"),
    ] {
        let answer = send(&mut h1, get(path, &[])).await;
        assert_eq!(answer.body, format!("echo-a GET {seen} 0"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_host_is_denied_in_every_spelling() {
    let mesh = denying(pb::RequestMatch {
        hosts: vec![string_match("x.example")],
        ..Default::default()
    })
    .await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    for host in ["x.example", "X.Example.", "x.example:", "x.example.:80"] {
        let request = Request::get("/")
            .header("host", host)
            .body(empty())
            .unwrap();
        let answer = send(&mut h1, request).await;
        assert_eq!(answer.status, 403, "{host}: {answer:?}");
    }
    // Not a host: a port that is not a number, or characters that would become part of
    // the upstream path once the authority is written into its URI.
    for host in ["x.example:http", "echo/admin#", "echo?x=", "echo#frag"] {
        let request = Request::get("/")
            .header("host", host)
            .body(empty())
            .unwrap();
        assert_eq!(send(&mut h1, request).await.status, 400, "{host}");
    }
    let answer = send(&mut h1, get("/", &[])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_reaches_an_http_port_over_http1_and_an_undeclared_one_over_h2() {
    let mut resource = waypoint_resource(&[("echo", vec![]), ("plain", vec![])], vec![]);
    // `echo` declares its port HTTP (HTTP/1.1); `plain` leaves it to detection.
    resource.services[0].ports[0].protocol = pb::Protocol::Http.into();
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo"), backend("plain-a", "plain")],
        resource,
    )
    .await;
    let client = mesh.client().await;
    for (vip, host, version) in [(1, "echo", "HTTP/1.1"), (2, "plain", "HTTP/2.0")] {
        let mut h2 = client.h2(mesh.net.vip(vip)).await;
        let request = Request::get(format!("http://{host}/two"))
            .body(empty())
            .unwrap();
        let answer = read(h2.send_request(request).await.expect("h2 response")).await;
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
        assert_eq!(answer.header("x-version"), version, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_headers_are_taken_up_to_64_kib_as_istios_waypoint_takes_them() {
    let mut resource = waypoint_resource(&[("echo", vec![])], vec![]);
    // HTTP/1.1 to the backend, whose own limit is larger
    resource.services[0].ports[0].protocol = pb::Protocol::Http.into();
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource).await;
    let client = mesh.client().await;
    let mut h2 = client.h2(mesh.net.vip(1)).await;
    // a large token and cookies: over hyper's default of 16 KiB
    let large = Request::get("http://echo/large")
        .header("x-token", "t".repeat(40 * 1024))
        .body(empty())
        .unwrap();
    let answer = read(h2.send_request(large).await.expect("h2 response")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut h2 = client.h2(mesh.net.vip(1)).await;
    let oversized = Request::get("http://echo/oversized")
        .header("x-token", "t".repeat(100 * 1024))
        .body(empty())
        .unwrap();
    let answer = read(h2.send_request(oversized).await.expect("h2 response")).await;
    assert_eq!(answer.status, 431, "{answer:?}");
}
