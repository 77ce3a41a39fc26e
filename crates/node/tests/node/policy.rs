//! L4 authorization end to end: the destination's node proxy enforces, the client sees a
//! SOCKS "not allowed" reply; policy updates close open connections; STRICT vs PERMISSIVE
//! for plaintext inbound.

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use weft_node::proxy::InboundDestination;
use weft_proto::security::{self, Action, Match, StringMatch, string_match::MatchType};

use crate::datapath::metric_line;
use crate::harness::*;

fn cidr(ip: std::net::Ipv4Addr, length: u32) -> security::Address {
    security::Address {
        address: ip.octets().to_vec(),
        length,
    }
}

fn presence() -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Presence(())),
    }
}

/// (case, policies, expected SOCKS reply: 0 allowed, 2 denied)
fn cases(net: Net) -> Vec<(&'static str, Vec<security::Authorization>, u8)> {
    let client = "cluster.local/ns/default/sa/sleep";
    vec![
        ("no policy", vec![], 0),
        (
            "allow matching principal",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![principal_match(client)],
            )],
            0,
        ),
        (
            "allow other principal only",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![principal_match("cluster.local/ns/default/sa/other")],
            )],
            2,
        ),
        (
            "deny matching principal",
            vec![policy(
                "deny",
                "default",
                Action::Deny,
                vec![principal_match(client)],
            )],
            2,
        ),
        (
            "deny before allow",
            vec![
                policy(
                    "allow",
                    "default",
                    Action::Allow,
                    vec![principal_match(client)],
                ),
                policy(
                    "deny",
                    "default",
                    Action::Deny,
                    vec![principal_match(client)],
                ),
            ],
            2,
        ),
        (
            "allow-nothing",
            vec![policy("allow-nothing", "default", Action::Allow, vec![])],
            2,
        ),
        (
            "allow source CIDR",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![Match {
                    source_ips: vec![cidr(net.workload(0), 24)],
                    ..Match::default()
                }],
            )],
            0,
        ),
        (
            "deny source /32",
            vec![policy(
                "deny",
                "default",
                Action::Deny,
                vec![Match {
                    source_ips: vec![cidr(net.workload(1), 32)],
                    ..Match::default()
                }],
            )],
            2,
        ),
        (
            "allow other CIDR only",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![Match {
                    source_ips: vec![cidr(net.vip(0), 24)],
                    ..Match::default()
                }],
            )],
            2,
        ),
        (
            "allow target port",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![Match {
                    destination_ports: vec![8080],
                    ..Match::default()
                }],
            )],
            0,
        ),
        (
            "allow other port only",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![Match {
                    destination_ports: vec![9090],
                    ..Match::default()
                }],
            )],
            2,
        ),
        (
            "deny not_ports other",
            vec![policy(
                "deny",
                "default",
                Action::Deny,
                vec![Match {
                    not_destination_ports: vec![9090],
                    ..Match::default()
                }],
            )],
            2,
        ),
        (
            "deny not_principals client",
            vec![policy(
                "deny",
                "default",
                Action::Deny,
                vec![Match {
                    not_principals: vec![principal_match(client).principals[0].clone()],
                    ..Match::default()
                }],
            )],
            0,
        ),
        (
            "allow namespace",
            vec![policy(
                "allow",
                "default",
                Action::Allow,
                vec![Match {
                    namespaces: vec![StringMatch {
                        match_type: Some(MatchType::Exact("default".into())),
                    }],
                    ..Match::default()
                }],
            )],
            0,
        ),
        (
            "STRICT compiled deny does not hit HBONE",
            vec![policy(
                "strict",
                "default",
                Action::Deny,
                vec![Match {
                    not_principals: vec![presence()],
                    ..Match::default()
                }],
            )],
            0,
        ),
    ]
}

#[tokio::test]
async fn allow_deny_allow_nothing_cidr_and_port_cases_end_to_end() {
    let mut failures = Vec::new();
    let count = cases(Net(0)).len();
    for index in 0..count {
        let net = Net::next();
        let (name, policies, expected) = cases(net).swap_remove(index);
        let mesh = TwoNodes::start_on(net, &policies).await;
        let (code, mut stream) = mesh.socks_vip().await;
        if code != expected {
            failures.push(format!("{name}: SOCKS reply {code}, expected {expected}"));
            continue;
        }
        if code == 0 {
            assert_eq!(ping(&mut stream, b"ok").await, b"ok", "{name}");
        } else {
            let (_, metrics) = page(mesh.b.addrs.metrics, "/metrics").await;
            let denials = metric_line(
                &metrics,
                "weft_policy_denials_total",
                "destination_workload_namespace=\"default\"",
            );
            assert!(denials.ends_with(" 1"), "{name}: {denials}");
            let failed = metric_line(
                &metrics,
                "istio_tcp_connections_failed_total",
                "reporter=\"destination\"",
            );
            assert!(
                failed.contains(&format!("source_principal=\"{CLIENT_ID}\"")),
                "{name}: {failed}"
            );
            let echo = mesh.net.echo_addr().to_string();
            let lines = access_log_lines(&format!("dst.addr={echo}"));
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("reporter=destination") && l.contains("result=denied")),
                "{name}: {lines:?}"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn policy_update_closes_a_now_denied_open_connection() {
    let mesh = TwoNodes::start(&[]).await;
    let (code, mut stream) = mesh.socks_vip().await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut stream, b"before").await, b"before");
    let (code, mut other) = mesh.socks_vip().await;
    assert_eq!(code, 0);

    let deny = policy(
        "deny-sleep",
        "default",
        Action::Deny,
        vec![principal_match("cluster.local/ns/default/sa/sleep")],
    );
    let outcome = mesh
        .b
        .node
        .store()
        .update_authorizations([("default/deny-sleep".to_owned(), deny)], &[]);
    assert!(outcome.rejected.is_empty());

    for conn in [&mut stream, &mut other] {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "connection still open: {read:?}"
        );
    }
    let (_, metrics) = page(mesh.b.addrs.metrics, "/metrics").await;
    assert!(
        metrics.contains("weft_connections_closed_by_policy_total 2"),
        "{metrics}"
    );
    let (code, _) = mesh.socks_vip().await;
    assert_eq!(code, 2, "new connections are denied too");
}

async fn plaintext_listener(mesh: &TwoNodes) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(mesh.net.node(3)), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    mesh.b
        .node
        .serve_inbound_plaintext(listener, InboundDestination::Fixed(mesh.net.echo_addr()));
    addr
}

#[tokio::test]
async fn strict_rejects_plaintext_inbound_while_permissive_accepts_it() {
    let permissive = TwoNodes::start(&[]).await;
    let addr = plaintext_listener(&permissive).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ping(&mut stream, b"plaintext").await, b"plaintext");
    let conns = permissive.b.node.connections();
    assert_eq!(conns.len(), 1);
    assert!(conns[0].src_identity.is_none());

    let strict = policy(
        "strict",
        "default",
        Action::Deny,
        vec![Match {
            not_principals: vec![presence()],
            ..Match::default()
        }],
    );
    let strict = TwoNodes::start(&[strict]).await;
    let addr = plaintext_listener(&strict).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "STRICT must close plaintext: {read:?}"
    );
    let (code, mut tunnel) = strict.socks_vip().await;
    assert_eq!(code, 0, "HBONE still allowed under STRICT");
    assert_eq!(ping(&mut tunnel, b"mtls").await, b"mtls");
}
