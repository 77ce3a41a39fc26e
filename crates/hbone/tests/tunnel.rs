//! End-to-end tunnel behaviour over real TLS 1.3 + HTTP/2 on loopback.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use weft_hbone::{
    ConnectRequest, HandshakeError, HboneError, HboneStream, InboundDecision, InboundRequest, Pool,
    PoolConfig, ServerOptions, TunnelTarget,
};
use weft_identity::peer_identity;

fn pool() -> Pool<u32> {
    Pool::new(PoolConfig::default())
}

async fn open(
    pool: &Pool<u32>,
    tls: Arc<rustls::ClientConfig>,
    tunnel: SocketAddr,
    authority: SocketAddr,
) -> Result<HboneStream, HboneError> {
    let target = TunnelTarget::new(tunnel, tls);
    within(
        "open stream",
        pool.connect(1, &target, &ConnectRequest::new(authority)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_crosses_intact_both_ways() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let s = setup(ServerOptions::default()).await;
    let stream = open(&pool(), s.mesh.client_tls(), s.server.addr, s.upstream)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);

    let writer = tokio::spawn(async move {
        let mut digest = ::aws_lc_rs::digest::Context::new(&::aws_lc_rs::digest::SHA256);
        let mut pattern = Pattern::new(7);
        let mut chunk = vec![0u8; 1024 * 1024 + 13];
        let mut sent = 0;
        while sent < TOTAL {
            let n = chunk.len().min(TOTAL - sent);
            pattern.fill(&mut chunk[..n]);
            wr.write_all(&chunk[..n]).await.unwrap();
            digest.update(&chunk[..n]);
            sent += n;
        }
        wr.shutdown().await.unwrap();
        digest.finish().as_ref().to_vec()
    });
    let mut digest = ::aws_lc_rs::digest::Context::new(&::aws_lc_rs::digest::SHA256);
    let mut received = 0;
    let mut buf = vec![0u8; 100_000];
    within("echo of 64 MiB", async {
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            received += n;
        }
    })
    .await;
    let sent_digest = writer.await.unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(digest.finish().as_ref(), sent_digest.as_slice());
}

#[tokio::test]
async fn half_close_lets_client_read_the_reply_after_shutting_down_writes() {
    let Setup { mesh, server, .. } = setup(ServerOptions::default()).await;
    let upstream = digest_upstream().await;
    let mut stream = open(&pool(), mesh.client_tls(), server.addr, upstream)
        .await
        .unwrap();

    let mut payload = vec![0u8; 3 * 1024 * 1024 + 5];
    Pattern::new(11).fill(&mut payload);
    stream.write_all(&payload).await.unwrap();
    stream.shutdown().await.unwrap();
    // The upstream answers only after it saw EOF, so this read needs the half-close to
    // have crossed the tunnel while our read half stayed open.
    let mut reply = Vec::new();
    within("digest reply", stream.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply.len(), 8 + 32);
    assert_eq!(
        u64::from_be_bytes(reply[..8].try_into().unwrap()),
        payload.len() as u64
    );
    assert_eq!(&reply[8..], sha256(&payload).as_slice());
}

#[tokio::test]
async fn server_sees_client_identity_and_headers_and_client_sees_server_identity() {
    let mut s = setup(ServerOptions::default()).await;
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let request = ConnectRequest {
        authority: s.upstream,
        forwarded_for: Some("2001:db8::42".parse().unwrap()),
        baggage: Some("k8s.namespace.name=src,k8s.pod.name=client-0".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
    };
    let mut stream = within("connect", pool().connect(1, &target, &request))
        .await
        .unwrap();

    let inbound: InboundRequest = within("handler call", s.seen.recv()).await.unwrap();
    assert_eq!(
        peer_identity(Some(&inbound.peer_certificates)),
        Ok(spiffe(CLIENT_ID))
    );
    assert_eq!(inbound.authority, s.upstream);
    assert_eq!(
        inbound.forwarded_for(),
        Some("2001:db8::42".parse().unwrap())
    );
    assert_eq!(inbound.headers["forwarded"], "for=\"[2001:db8::42]\"");
    assert_eq!(inbound.baggage(), request.baggage.as_deref());
    assert_eq!(inbound.traceparent(), request.traceparent.as_deref());
    assert_eq!(inbound.peer_addr.ip(), s.server.addr.ip());
    assert_eq!(
        peer_identity(Some(stream.peer_certificates())),
        Ok(spiffe(SERVER_ID))
    );

    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
}

#[tokio::test]
async fn configs_that_do_not_offer_h2_get_it_offered() {
    // The production configs already offer h2; callers' configs may not.
    let mesh = Mesh::new();
    let mut server_tls = (*mesh.server_tls()).clone();
    server_tls.alpn_protocols.clear();
    let mut client_tls = (*mesh.client_tls()).clone();
    client_tls.alpn_protocols.clear();
    let server = start_server(
        Arc::new(server_tls),
        forwarding_handler(None),
        ServerOptions::default(),
    )
    .await;
    let upstream = echo_upstream().await;
    let mut stream = open(&pool(), Arc::new(client_tls), server.addr, upstream)
        .await
        .unwrap();
    stream.write_all(b"h2?").await.unwrap();
    let mut back = [0u8; 3];
    within("echo", stream.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"h2?");
}

#[tokio::test]
async fn handler_rejections_reach_the_client_as_typed_statuses() {
    let mesh = Mesh::new();
    let handler = |request: InboundRequest| async move {
        let status = match request.authority.port() {
            1 => http::StatusCode::UNAUTHORIZED,
            _ => http::StatusCode::SERVICE_UNAVAILABLE,
        };
        InboundDecision::<tokio::net::TcpStream>::Reject(status)
    };
    let server = start_server(mesh.server_tls(), handler, ServerOptions::default()).await;
    let pool = pool();
    for (port, expected) in [(1, 401), (2, 503)] {
        let authority = SocketAddr::from(([10, 0, 0, 1], port));
        let error = open(&pool, mesh.client_tls(), server.addr, authority)
            .await
            .unwrap_err();
        assert!(
            matches!(error, HboneError::Status { status, authority: a, .. } if status == expected && a == authority),
            "{error}"
        );
        assert_eq!(error.status(), Some(expected));
    }
    // Both rejections used the same connection; a rejected stream does not poison it.
    assert_eq!(pool.stats().snapshot().handshakes, 1);
}

#[tokio::test]
async fn unreachable_destination_gets_503() {
    let Setup { mesh, server, .. } = setup(ServerOptions::default()).await;
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = open(&pool(), mesh.client_tls(), server.addr, closed)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503), "{error}");
}

#[tokio::test]
async fn client_binds_the_requested_local_ip_and_runs_the_socket_hook() {
    let mut s = setup(ServerOptions::default()).await;
    let hook_calls = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::clone(&hook_calls);
    let config = PoolConfig {
        socket_hook: Some(Arc::new(move |socket: &tokio::net::TcpSocket, tunnel| {
            calls
                .lock()
                .unwrap()
                .push((socket.local_addr()?.ip(), tunnel));
            Ok(())
        })),
        ..PoolConfig::default()
    };
    let local_ip: IpAddr = "127.0.0.5".parse().unwrap();
    let target = TunnelTarget {
        local_ip: Some(local_ip),
        ..TunnelTarget::new(s.server.addr, s.mesh.client_tls())
    };
    let pool = Pool::new(config);
    let _stream = within(
        "connect",
        pool.connect(1, &target, &ConnectRequest::new(s.upstream)),
    )
    .await
    .unwrap();
    let inbound = within("handler call", s.seen.recv()).await.unwrap();
    assert_eq!(inbound.peer_addr.ip(), local_ip);
    assert_eq!(*hook_calls.lock().unwrap(), vec![(local_ip, s.server.addr)]);
}

#[tokio::test]
async fn failing_socket_hook_aborts_the_connection_attempt() {
    let Setup { mesh, server, .. } = setup(ServerOptions::default()).await;
    let config = PoolConfig {
        socket_hook: Some(Arc::new(|_: &tokio::net::TcpSocket, _| {
            Err(std::io::Error::other("mark not permitted"))
        })),
        ..PoolConfig::default()
    };
    let pool = Pool::new(config);
    let target = TunnelTarget::new(server.addr, mesh.client_tls());
    let authority = SocketAddr::from(([10, 0, 0, 1], 80));
    let error = within(
        "connect",
        pool.connect(1, &target, &ConnectRequest::new(authority)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, HboneError::Handshake(e) if matches!(**e, HandshakeError::SocketHook { .. })),
        "{error}"
    );
    assert_eq!(pool.stats().snapshot().handshake_failures, 1);
}

#[tokio::test]
async fn handoff_gives_the_server_side_stream_to_the_caller() {
    let mesh = Mesh::new();
    let (taken_tx, mut taken_rx) = mpsc::unbounded_channel();
    let handler = move |_request: InboundRequest| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = taken_tx.send(rx);
        async move { InboundDecision::<tokio::net::TcpStream>::Handoff(tx) }
    };
    let server = start_server(mesh.server_tls(), handler, ServerOptions::default()).await;
    let authority = SocketAddr::from(([10, 9, 8, 7], 80));
    let mut client = open(&pool(), mesh.client_tls(), server.addr, authority)
        .await
        .unwrap();
    let mut terminated = within("handoff", async {
        taken_rx.recv().await.unwrap().await.unwrap()
    })
    .await;
    assert_eq!(
        peer_identity(Some(terminated.peer_certificates())),
        Ok(spiffe(CLIENT_ID))
    );

    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut request = Vec::new();
    within("request", terminated.read_to_end(&mut request))
        .await
        .unwrap();
    assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
    terminated
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    terminated.shutdown().await.unwrap();
    let mut response = Vec::new();
    within("response", client.read_to_end(&mut response))
        .await
        .unwrap();
    assert_eq!(response, b"HTTP/1.1 204 No Content\r\n\r\n");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_open_streams() {
    let mesh = Mesh::new();
    let upstream = echo_upstream().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = weft_hbone::HboneServer::new(
        mesh.server_tls(),
        forwarding_handler(None),
        ServerOptions::default(),
    );
    let token = shutdown.clone();
    let mut serving = tokio::spawn(async move { server.serve(listener, token).await });

    let mut stream = open(&pool(), mesh.client_tls(), addr, upstream)
        .await
        .unwrap();
    shutdown.cancel();
    // The listener is gone: new connections are refused.
    within("listener closed", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The open stream keeps working while the server drains.
    stream.write_all(b"draining").await.unwrap();
    let mut back = [0u8; 8];
    within("echo while draining", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"draining");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut serving)
            .await
            .is_err()
    );
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("end of stream", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    drop(stream);
    within("server drained", serving).await.unwrap();
}
