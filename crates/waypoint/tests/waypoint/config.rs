//! Configuration changes and their absence: a new route applies to the next request on an
//! open connection, a waypoint without configuration refuses tunnels (503), redirects are
//! answered by the waypoint and mirrors copy requests without changing the answer (at
//! most `max_mirrors_in_flight` copies at once).

use std::sync::atomic::Ordering;
use std::time::Duration;

use weft_proto::l7 as pb;
use weft_waypoint::OutlierConfig;

use crate::harness::*;

fn route(rules: Vec<pb::Rule>) -> pb::Route {
    pb::Route {
        namespace: NS.into(),
        name: "r".into(),
        rules,
        ..Default::default()
    }
}

fn backend_ref(service: &str) -> pb::Backend {
    pb::Backend {
        service: key(service),
        port: 80,
        weight: 1,
        ..Default::default()
    }
}

fn filter(kind: pb::filter::Kind) -> pb::Filter {
    pb::Filter { kind: Some(kind) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_route_applies_to_the_next_request_on_an_open_connection() {
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let mesh = Mesh::start(specs, waypoint_resource(&[("echo", vec![])], vec![])).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    assert_eq!(
        send(&mut h1, get("/", &[])).await.header("x-backend"),
        "echo-a"
    );
    let to_v2 = route(vec![pb::Rule {
        backends: vec![backend_ref("echo-v2")],
        ..Default::default()
    }]);
    publish_waypoint(
        &mesh.publisher,
        &waypoint_resource(&[("echo", vec![to_v2])], vec![]),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = send(&mut h1, get("/", &[])).await;
        if answer.header("x-backend") == "echo-v2" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new route never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configuration_tunnels_are_refused_with_503() {
    let mesh = Mesh::start(
        vec![backend("echo-a", "echo")],
        waypoint_resource(&[], vec![]),
    )
    .await;
    // A second waypoint whose control plane accepts the connection and never answers.
    let net = Net::next();
    let silent = std::net::TcpListener::bind((net.ip(0, 3), 0)).unwrap();
    let options = weft_waypoint::WaypointOptions {
        config_wait: Duration::from_millis(200),
        ..options(OutlierConfig::default())
    };
    let addr = silent.local_addr().unwrap();
    let waypoint = start_waypoint(net, &mesh.ca, &mesh.trust, addr, options, None).await;
    let client = mesh.client_to(&waypoint).await;
    let refused = client.tunnel(mesh.net.vip(1)).await.expect_err("refused");
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert_eq!(mesh.backend("echo-a").requests.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_answered_and_mirrors_copy_requests() {
    let rules = vec![
        pb::Rule {
            matches: vec![pb::Match {
                path: Some(pb::PathMatch {
                    r#type: pb::MatchType::Prefix.into(),
                    value: "/old".into(),
                }),
                ..Default::default()
            }],
            filters: vec![filter(pb::filter::Kind::RequestRedirect(pb::Redirect {
                hostname: "new.example".into(),
                status_code: 301,
                ..Default::default()
            }))],
            ..Default::default()
        },
        mirroring(pb::Rule::default()),
    ];
    let (mesh, mut h1) = mirrored(rules).await;
    let moved = send(&mut h1, get("/old/page?q=1", &[])).await;
    assert_eq!(moved.status, 301, "{moved:?}");
    assert_eq!(moved.header("location"), "http://new.example/old/page?q=1");
    let mirrored = send(&mut h1, get("/page", &[])).await;
    assert_eq!(
        mirrored.header("x-backend"),
        "echo-a",
        "the answer is the main backend's"
    );
    let v2 = mesh.backend("echo-v2");
    eventually("the mirror gets a copy", || async {
        v2.requests.load(Ordering::Relaxed) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_copy_is_given_up_at_the_request_timeout() {
    let rules = vec![mirroring(pb::Rule {
        request_timeout_ms: 300,
        ..Default::default()
    })];
    let (mesh, mut h1) = mirrored(rules).await;
    let slow = send(&mut h1, get("/", &[("x-delay-ms", "8000")])).await;
    assert_eq!(slow.status, 504, "{slow:?}");
    let v2 = mesh.backend("echo-v2");
    eventually("the mirror gets its copy", || async {
        v2.requests.load(Ordering::Relaxed) == 1
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while v2.in_flight.load(Ordering::Relaxed) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mirrored copy is still waiting for its answer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `--max-mirrors-in-flight`: a copy beyond the cap is not sent but counted, the answers
/// are unchanged, and a copy that ends frees its place for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_copies_beyond_the_cap_are_not_sent_but_counted() {
    let rules = vec![mirroring(pb::Rule {
        request_timeout_ms: 4_000,
        ..Default::default()
    })];
    let options = weft_waypoint::WaypointOptions {
        max_mirrors_in_flight: 2,
        ..options(OutlierConfig::default())
    };
    let (mesh, mut h1) = mirrored_with(rules, options).await;
    // Two requests whose answers (and copies) the backends hold until the route's timeout.
    let vip = mesh.net.vip(1);
    let client = std::sync::Arc::new(mesh.client().await);
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let client = std::sync::Arc::clone(&client);
        held.spawn(async move {
            let mut h1 = client.h1(vip).await;
            send(&mut h1, get("/held", &[("x-delay-ms", "60000")])).await
        });
    }
    let v2 = mesh.backend("echo-v2");
    eventually("both copies are out", || async {
        v2.in_flight.load(Ordering::Relaxed) == 2
    })
    .await;
    // Three more requests meanwhile: answered as usual, their copies not sent.
    for _ in 0..3 {
        let answer = send(&mut h1, get("/quick", &[])).await;
        assert_eq!(answer.header("x-backend"), "echo-a", "{answer:?}");
    }
    let metrics = mesh.metrics().await;
    let dropped = "weft_request_mirrors_dropped_total 3";
    assert!(metrics.lines().any(|l| l == dropped), "{metrics}");
    assert_eq!(v2.requests.load(Ordering::Relaxed), 2, "copies sent");

    while let Some(answer) = held.join_next().await {
        let answer = answer.expect("request task");
        assert_eq!(answer.status, 504, "the main backend's timeout: {answer:?}");
    }
    eventually("the copies time out", || async {
        v2.in_flight.load(Ordering::Relaxed) == 0
    })
    .await;
    let answer = send(&mut h1, get("/after", &[])).await;
    assert_eq!(answer.header("x-backend"), "echo-a", "{answer:?}");
    eventually("a freed place lets the next copy go", || async {
        v2.requests.load(Ordering::Relaxed) == 3
    })
    .await;
}

/// `rule` sending to `echo` and mirroring to `echo-v2`.
fn mirroring(rule: pb::Rule) -> pb::Rule {
    pb::Rule {
        filters: vec![filter(pb::filter::Kind::RequestMirror(pb::Mirror {
            backend: Some(backend_ref("echo-v2")),
            ..Default::default()
        }))],
        backends: vec![backend_ref("echo")],
        ..rule
    }
}

/// Services `echo` and `echo-v2` with `rules` on `echo`, and a client connection to it.
async fn mirrored(
    rules: Vec<pb::Rule>,
) -> (Mesh, hyper::client::conn::http1::SendRequest<ClientBody>) {
    mirrored_with(rules, options(OutlierConfig::default())).await
}

/// [`mirrored`] with the waypoint's settings given whole.
async fn mirrored_with(
    rules: Vec<pb::Rule>,
    options: weft_waypoint::WaypointOptions,
) -> (Mesh, hyper::client::conn::http1::SendRequest<ClientBody>) {
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let resource = waypoint_resource(&[("echo", vec![route(rules)])], vec![]);
    let mesh = Mesh::start_with_options(specs, resource, options, None).await;
    let h1 = mesh.client().await.h1(mesh.net.vip(1)).await;
    (mesh, h1)
}

fn tcp_resource(policies: Vec<pb::Policy>) -> pb::Waypoint {
    let mut resource = waypoint_resource(&[("echo", vec![])], policies);
    resource.services[0].ports[0].protocol = pb::Protocol::Tcp.into();
    resource
}

/// Sends `bytes` through a tunnel to the service and reads what comes back until EOF.
async fn raw_exchange(client: &Client, dst: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tunnel = client.tunnel(dst).await.expect("tunnel");
    // A denied tunnel may be closed before the bytes are written: that reads as nothing.
    let _ = tunnel.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tunnel.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ports_are_relayed_opaquely_and_l4_policy_applies() {
    // The backend speaks HTTP; bytes that are not HTTP reach it untouched and it answers
    // them with its own 400, which proves the relay.
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], tcp_resource(vec![])).await;
    let client = mesh.client().await;
    let answer = raw_exchange(&client, mesh.net.vip(1), b"not http\r\n\r\n").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let metrics = mesh.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"waypoint\"")),
        "{metrics}"
    );

    let deny_client = policy(
        "no-client",
        weft_proto::security::Action::Deny,
        vec![weft_proto::security::Rule {
            clauses: vec![weft_proto::security::Clause {
                matches: vec![weft_proto::security::Match {
                    principals: vec![weft_proto::security::StringMatch {
                        match_type: Some(weft_proto::security::string_match::MatchType::Exact(
                            "cluster.local/ns/ns/sa/client".into(),
                        )),
                    }],
                    ..Default::default()
                }],
            }],
        }],
        &[],
    );
    publish_waypoint(&mesh.publisher, &tcp_resource(vec![deny_client]));
    eventually("the L4 deny applies", || async {
        raw_exchange(&client, mesh.net.vip(1), b"not http\r\n\r\n")
            .await
            .is_empty()
    })
    .await;
}
