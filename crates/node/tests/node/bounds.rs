//! Bounded resources on the node proxy's explicit port: a client that stops inside its
//! request head is closed at the head deadline, and a head ended by bare LFs is served at
//! once (RFC 9112 §2.2) instead of waiting for a CRLF that never comes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
