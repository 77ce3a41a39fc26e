//! Bounded resources: on the explicit port, a client that stops inside its request head is
//! closed at the head deadline, and a head ended by bare LFs is served at once (RFC 9112
//! §2.2) instead of waiting for a CRLF that never comes; on inbound HBONE, tunnels over the
//! per-identity limit are refused (and counted) while open ones keep working.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use weft_node::process::{RunningNode, StateSource};
use weft_node::proxy::LimitConfig;

use crate::datapath::metric_line;
use crate::harness::*;

/// The head deadline of these tests' node-a.
const HEAD_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest an answer may take here (far below the production head deadline of 10 s, so a
/// proxy waiting for the deadline instead of answering fails the test).
const PATIENCE: Duration = Duration::from_secs(5);

async fn mesh() -> TwoNodes {
    TwoNodes::start_with(&[], |options| options.head_timeout = HEAD_TIMEOUT).await
}

/// Everything the proxy sends until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection in time")
        .expect("read the answer");
    answer
}

#[tokio::test]
async fn explicit_port_closes_heads_stalled_halfway_at_the_deadline() {
    let mesh = mesh().await;
    let explicit = mesh.a.addrs.explicit.unwrap();
    let client = mesh.net.workload(1);

    // A SOCKS5 greeting announcing two methods and sending one.
    let mut socks = connect_from(client, explicit).await;
    socks.write_all(&[5, 2, 0]).await.unwrap();
    assert!(read_until_closed(&mut socks).await.is_empty());

    // A SOCKS5 request cut inside its address.
    let mut socks = connect_from(client, explicit).await;
    socks_greet(&mut socks).await;
    socks.write_all(&[5, 1, 0, 1, 127]).await.unwrap();
    assert!(read_until_closed(&mut socks).await.is_empty());

    // An HTTP CONNECT head without its end.
    let mut http = connect_from(client, explicit).await;
    let partial = format!("CONNECT {} HTTP/1.1\r\nHost: x\r\n", mesh.net.vip_addr());
    http.write_all(partial.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_until_closed(&mut http).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
}

#[tokio::test]
async fn explicit_port_serves_a_head_ended_by_bare_lf() {
    let mesh = TwoNodes::start(&[]).await;
    let explicit = mesh.a.addrs.explicit.unwrap();
    let mut stream = connect_from(mesh.net.workload(1), explicit).await;
    let vip = mesh.net.vip_addr();
    let head = format!("CONNECT {vip} HTTP/1.1\nHost: {vip}\n\nhello");
    stream.write_all(head.as_bytes()).await.unwrap();

    let expected = b"HTTP/1.1 200 Connection Established\r\n\r\nhello";
    let mut answer = vec![0u8; expected.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer))
        .await
        .expect("a bare-LF head is answered at once, not at the head deadline")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(expected),
        "the tunnel opens and the bytes after the head reach the echo workload"
    );
}

/// The usual two nodes, node-b allowing each client identity `tunnels` open tunnels.
async fn mesh_limiting_b(tunnels: usize) -> (TwoNodesParts, RunningNode, RunningNode) {
    let net = Net::next();
    let ca = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let (workloads, services) = TwoNodes::resources(net);
    let config = write_config(&dir, &workloads, &services, &[]);
    let echo = echo_server(net.echo_addr()).await;
    let source = || StateSource::LocalFile(config.clone());
    let a = start_with(node_config(&ca, "node-a", net.node(2), source())).await;
    let mut b_config = node_config(&ca, "node-b", net.node(3), source());
    b_config.options.inbound_limits = LimitConfig {
        tunnels_per_identity: tunnels,
        ..LimitConfig::default()
    };
    let b = start_with(b_config).await;
    (
        TwoNodesParts {
            net,
            _dir: dir,
            _echo: echo,
        },
        a,
        b,
    )
}

/// What must outlive a test's nodes.
struct TwoNodesParts {
    net: Net,
    _dir: tempfile::TempDir,
    _echo: tokio::task::JoinHandle<()>,
}

#[tokio::test]
async fn inbound_tunnels_over_the_identity_limit_are_refused_and_open_ones_kept() {
    let (parts, a, b) = mesh_limiting_b(2).await;
    let explicit = a.addrs.explicit.unwrap();
    let client = parts.net.workload(1);
    let vip = parts.net.vip_addr();
    let (first_code, mut first) = socks_connect(client, explicit, vip).await;
    let (second_code, _second) = socks_connect(client, explicit, vip).await;
    assert_eq!(
        (first_code, second_code),
        (0, 0),
        "two tunnels fit the limit"
    );
    let (third, _) = socks_connect(client, explicit, vip).await;
    assert_ne!(third, 0, "a third tunnel of the same identity is refused");
    assert_eq!(ping(&mut first, b"still here").await, b"still here");

    let (_, metrics) = page(b.addrs.metrics, "/metrics").await;
    let refused = metric_line(
        &metrics,
        "weft_hbone_inbound_refused_total",
        "kind=\"tunnel\",limit=\"identity\"",
    );
    assert!(refused.ends_with(" 1"), "{refused}");
}
