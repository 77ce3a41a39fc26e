//! HTTP listeners: the listener by Host, routes by path, 404s, weighted splits, filters and
//! redirects, mesh backends over HBONE with the gateway's identity, plain backends
//! directly, forwarding headers, and request metrics with `reporter="source"`.

use std::collections::BTreeSet;

use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_proto::l7 as pb;

use crate::fixture::*;
use crate::harness::{backend, empty, eventually, read};

fn two_listeners() -> pb::Gateway {
    gateway(vec![
        listener(
            "shop",
            PORT,
            "shop.example.com",
            vec![route("shop", vec![to_all(vec![to("echo", 1)])])],
        ),
        listener(
            "wild",
            PORT,
            "*.example.com",
            vec![route(
                "wild",
                vec![pb::Rule {
                    matches: vec![path_prefix("/v2")],
                    backends: vec![to("echo-v2", 1)],
                    ..Default::default()
                }],
            )],
        ),
        listener(
            "any",
            PORT,
            "",
            vec![route("plain", vec![to_all(vec![to("plain", 1)])])],
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_chooses_the_listener_and_the_path_the_route() {
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let fixture = Fixture::start(specs, Some(two_listeners())).await;
    let mut client = fixture.h1(PORT).await;
    let exact = send(&mut client, get("shop.example.com", "/cart", &[])).await;
    assert_eq!(
        (exact.status, exact.body.as_str()),
        (200, "echo-a GET /cart 0"),
        "{exact:?}"
    );
    assert_eq!(
        exact.header("x-peer"),
        GATEWAY_ID,
        "the mesh backend sees the gateway"
    );
    let wild = send(&mut client, get("api.example.com:8000", "/v2/items", &[])).await;
    assert_eq!(wild.header("x-backend"), "echo-v2", "{wild:?}");
    let unrouted = send(&mut client, get("api.example.com", "/v1", &[])).await;
    assert_eq!(
        unrouted.status, 404,
        "the wildcard listener has no route for /v1"
    );
    let other = send(&mut client, get("other.test", "/", &[])).await;
    assert_eq!(other.header("x-backend"), "plain-a", "{other:?}");
    assert_eq!(
        other.header("x-peer"),
        "none",
        "a plain backend is reached directly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_no_listener_covers_and_a_listener_without_routes_answer_404() {
    let resource = gateway(vec![
        listener(
            "shop",
            PORT,
            "shop.example.com",
            vec![route("shop", vec![to_all(vec![to("echo", 1)])])],
        ),
        listener("bare", PORT, "bare.example.com", vec![]),
    ]);
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let mut client = fixture.h1(PORT).await;
    let unknown = send(&mut client, get("elsewhere.test", "/", &[])).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let bare = send(&mut client, get("bare.example.com", "/", &[])).await;
    assert_eq!(bare.status, 404, "{bare:?}");
    let fine = send(&mut client, get("shop.example.com", "/", &[])).await;
    assert_eq!(fine.status, 200, "{fine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends_share_the_requests() {
    let split = route("split", vec![to_all(vec![to("echo", 1), to("echo-v2", 1)])]);
    let resource = gateway(vec![listener("any", PORT, "", vec![split])]);
    let specs = vec![backend("echo-a", "echo"), backend("echo-v2", "echo-v2")];
    let fixture = Fixture::start(specs, Some(resource)).await;
    let mut client = fixture.h1(PORT).await;
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let answer = send(&mut client, get("shop.test", "/", &[])).await;
        seen.insert(answer.header("x-backend").to_owned());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["echo-a", "echo-v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_filters_and_redirects_apply() {
    let rules = vec![
        pb::Rule {
            matches: vec![path_prefix("/old")],
            filters: vec![pb::Filter {
                kind: Some(pb::filter::Kind::RequestRedirect(pb::Redirect {
                    hostname: "new.example.com".into(),
                    status_code: 301,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        },
        pb::Rule {
            filters: vec![pb::Filter {
                kind: Some(pb::filter::Kind::RequestHeaderModifier(
                    pb::HeaderModifier {
                        set: vec![pb::Header {
                            name: "x-edge".into(),
                            value: "yes".into(),
                        }],
                        ..Default::default()
                    },
                )),
            }],
            backends: vec![to("echo", 1)],
            ..Default::default()
        },
    ];
    let resource = gateway(vec![listener("any", PORT, "", vec![route("r", rules)])]);
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let mut client = fixture.h1(PORT).await;
    let moved = send(&mut client, get("shop.test", "/old/page", &[])).await;
    assert_eq!(moved.status, 301, "{moved:?}");
    assert_eq!(
        moved.header("location"),
        "http://new.example.com:8000/old/page",
        "without a redirect port the listener's port is kept (Gateway API)"
    );
    let headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ];
    let sent = send(&mut client, get("shop.test", "/page", &headers)).await;
    assert_eq!(sent.header("x-seen-x-edge"), "yes", "{sent:?}");
    let forwarded = sent.header("x-seen-x-forwarded-for");
    assert!(
        forwarded.starts_with("203.0.113.7, 127."),
        "the client's address is appended: {forwarded}"
    );
    assert_eq!(
        sent.header("x-seen-x-forwarded-proto"),
        "http",
        "the gateway sets the scheme"
    );
    assert_eq!(sent.header("x-seen-x-request-id").len(), 36);
    // Naming them in `Connection` removes the client's copies, never the gateway's own
    // (nor what a route filter set).
    let connection = [(
        "connection",
        "x-forwarded-for, x-forwarded-proto, x-request-id, x-edge",
    )];
    let sent = send(&mut client, get("shop.test", "/page", &connection)).await;
    assert_eq!(sent.header("x-seen-x-edge"), "yes", "{sent:?}");
    assert!(
        sent.header("x-seen-x-forwarded-for").starts_with("127."),
        "{sent:?}"
    );
    assert_eq!(sent.header("x-seen-x-forwarded-proto"), "http");
    assert_eq!(sent.header("x-seen-x-request-id").len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_requests_are_counted_as_source() {
    let resource = gateway(vec![listener(
        "any",
        PORT,
        "",
        vec![route("r", vec![to_all(vec![to("echo", 1)])])],
    )]);
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let stream = tokio::net::TcpStream::connect(fixture.addr(PORT))
        .await
        .unwrap();
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    let request = Request::get("http://shop.test/h2").body(empty()).unwrap();
    let answer = read(h2.send_request(request).await.expect("h2 response")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "echo-a GET /h2 0")
    );
    assert_eq!(
        answer.header("x-version"),
        "HTTP/2.0",
        "an undeclared port gets what the client spoke (HTTP/2)"
    );
    eventually("the request metric", || async {
        let metrics = fixture.metrics().await;
        metrics.lines().any(|line| {
            line.starts_with("istio_requests_total{")
                && line.contains("reporter=\"source\"")
                && line.contains("source_workload=\"gw-weft\"")
                && line.contains("source_principal=\"spiffe://cluster.local/ns/ns/sa/gw-weft\"")
                && line.contains("destination_service=\"echo.ns.svc.cluster.local\"")
                && line.contains("response_code=\"200\"")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_via_waypoint_backend_goes_through_the_service_waypoint() {
    let mut through = to("echo", 1);
    through.via_waypoint = true;
    let direct = to("echo", 1);
    let resource = gateway(vec![
        listener(
            "via",
            PORT,
            "via.test",
            vec![route("via", vec![to_all(vec![through])])],
        ),
        listener(
            "direct",
            PORT,
            "direct.test",
            vec![route("direct", vec![to_all(vec![direct])])],
        ),
    ]);
    let fixture = Fixture::start_with(vec![backend("echo-a", "echo")], Some(resource), true).await;
    let mut client = fixture.h1(PORT).await;
    let via = send(&mut client, get("via.test", "/w", &[])).await;
    assert_eq!(
        (via.status, via.header("x-backend")),
        (200, "echo-a"),
        "{via:?}"
    );
    assert_eq!(
        via.header("x-peer"),
        "spiffe://cluster.local/ns/ns/sa/wp",
        "the backend is called by the waypoint"
    );
    let direct = send(&mut client, get("direct.test", "/d", &[])).await;
    assert_eq!(direct.header("x-peer"), GATEWAY_ID, "{direct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_policies_see_the_original_client_behind_trusted_proxies() {
    use weft_proto::security::{self, Action, Clause, Rule};
    let blocked = pb::RequestMatch {
        remote_ips: vec![security::Address {
            address: vec![203, 0, 113, 0],
            length: 24,
        }],
        ..Default::default()
    };
    let deny = crate::harness::policy(
        "no-blocked-clients",
        Action::Deny,
        vec![Rule {
            clauses: vec![Clause {
                matches: vec![crate::harness::request_match(blocked)],
            }],
        }],
        &[],
    );
    let mut resource = gateway(vec![listener(
        "any",
        PORT,
        "",
        vec![route("r", vec![to_all(vec![to("echo", 1)])])],
    )]);
    resource.policies = vec![deny];
    resource.trusted_hops = 1;
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let mut client = fixture.h1(PORT).await;
    let from_blocked = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let denied = send(&mut client, get("shop.test", "/", &from_blocked)).await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "RBAC: access denied")
    );
    let spoofed = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")];
    let allowed = send(&mut client, get("shop.test", "/", &spoofed)).await;
    assert_eq!(
        allowed.status, 200,
        "only the last trusted hop counts: {allowed:?}"
    );
    let direct = send(&mut client, get("shop.test", "/", &[])).await;
    assert_eq!(direct.status, 200, "{direct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_spliced_to_the_mesh_backend() {
    let resource = gateway(vec![listener(
        "any",
        PORT,
        "",
        vec![route("r", vec![to_all(vec![to("echo", 1)])])],
    )]);
    let fixture = Fixture::start(vec![backend("echo-a", "echo")], Some(resource)).await;
    let mut client = fixture.h1(PORT).await;
    let request = Request::get("/ws")
        .header("host", "shop.test")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(empty())
        .unwrap();
    client.ready().await.unwrap();
    let response = client.send_request(request).await.expect("101");
    crate::harness::assert_echoes(response, b"through the gateway").await;
}
