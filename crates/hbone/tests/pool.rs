//! Connection pooling over real TLS + HTTP/2: reuse, stream cap, burst, idle expiry,
//! eviction of dead connections.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_hbone::{
    ConnectRequest, HboneServer, HboneStream, Keepalive, Pool, PoolConfig, PoolStatsSnapshot,
    ServerOptions, TunnelTarget,
};

/// The caller's key type: (source identity, destination identity, source ip, tunnel).
type Key = (String, String, Option<std::net::IpAddr>, SocketAddr);

fn key_for(tunnel: SocketAddr) -> Key {
    (CLIENT_ID.to_owned(), SERVER_ID.to_owned(), None, tunnel)
}

async fn open(pool: &Pool<Key>, target: &TunnelTarget, upstream: SocketAddr) -> HboneStream {
    within(
        "open stream",
        pool.connect(
            key_for(target.tunnel_addr),
            target,
            &ConnectRequest::new(upstream),
        ),
    )
    .await
    .unwrap()
}

async fn echo_once(stream: &mut HboneStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    within("echo", stream.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, message);
}

/// Polls the pool counters until `done` holds (bounded by `within`).
async fn wait_for_stats(
    pool: &Pool<Key>,
    done: impl Fn(&PoolStatsSnapshot) -> bool,
) -> PoolStatsSnapshot {
    let stats = pool.stats();
    within("pool stats condition", async {
        loop {
            let snapshot = stats.snapshot();
            if done(&snapshot) {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn sequential_streams_share_one_handshake() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    for i in 0..200u32 {
        let mut stream = open(&pool, &target, s.upstream).await;
        echo_once(&mut stream, &i.to_be_bytes()).await;
    }
    let stats = wait_for_stats(&pool, |s| s.streams_open == 0).await;
    assert_eq!(stats.handshakes, 1);
    assert_eq!(stats.handshake_failures, 0);
    assert_eq!(stats.connections_open, 1);
    assert_eq!(stats.streams_opened, 200);
}

#[tokio::test]
async fn streams_above_the_cap_open_a_second_connection() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(open(&pool, &target, s.upstream).await);
    }
    assert_eq!(pool.stats().snapshot().handshakes, 1);
    streams.push(open(&pool, &target, s.upstream).await);
    let stats = pool.stats().snapshot();
    assert_eq!(stats.handshakes, 2);
    assert_eq!(stats.connections_open, 2);
    assert_eq!(stats.streams_open, 101);
    for (i, stream) in streams.iter_mut().enumerate() {
        echo_once(stream, format!("stream {i}").as_bytes()).await;
    }
    // Freed slots are reused before any new connection is made.
    streams.truncate(50);
    let _more: Vec<_> = {
        let mut more = Vec::new();
        for _ in 0..40 {
            more.push(open(&pool, &target, s.upstream).await);
        }
        more
    };
    assert_eq!(pool.stats().snapshot().handshakes, 2);
}

#[tokio::test]
async fn stream_cap_is_configurable() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig {
        max_streams_per_connection: 2,
        ..PoolConfig::default()
    });
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open(&pool, &target, s.upstream).await);
    }
    assert_eq!(pool.stats().snapshot().handshakes, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_first_requests_performs_one_handshake() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50u32)
        .map(|i| {
            let (pool, target, barrier, upstream) = (
                pool.clone(),
                target.clone(),
                Arc::clone(&barrier),
                s.upstream,
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let mut stream = open(&pool, &target, upstream).await;
                echo_once(&mut stream, &i.to_le_bytes()).await;
                stream
            })
        })
        .collect();
    let mut streams = Vec::new();
    for task in tasks {
        streams.push(task.await.unwrap());
    }
    let stats = pool.stats().snapshot();
    assert_eq!(stats.handshakes, 1);
    assert_eq!(stats.connections_open, 1);
    assert_eq!(stats.streams_open, 50);
}

#[tokio::test]
async fn different_keys_never_share_a_connection() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let request = ConnectRequest::new(s.upstream);
    let mut other_key = key_for(s.server.addr);
    other_key.0 = "spiffe://cluster.local/ns/src/sa/other".to_owned();
    let _a = pool
        .connect(key_for(s.server.addr), &target, &request)
        .await
        .unwrap();
    let _b = pool.connect(other_key, &target, &request).await.unwrap();
    assert_eq!(pool.stats().snapshot().handshakes, 2);
}

#[tokio::test]
async fn idle_connections_expire_and_busy_ones_do_not() {
    let s = setup(ServerOptions::default()).await;
    let idle_timeout = Duration::from_millis(200);
    let pool = Pool::new(PoolConfig {
        idle_timeout,
        ..PoolConfig::default()
    });
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut busy = open(&pool, &target, s.upstream).await;
    // An open stream keeps the connection alive well past the idle timeout.
    tokio::time::sleep(idle_timeout * 3).await;
    assert_eq!(pool.stats().snapshot().connections_open, 1);
    echo_once(&mut busy, b"still here").await;
    drop(busy);
    wait_for_stats(&pool, |s| s.connections_open == 0).await;
    let mut fresh = open(&pool, &target, s.upstream).await;
    echo_once(&mut fresh, b"again").await;
    assert_eq!(pool.stats().snapshot().handshakes, 2);
}

#[tokio::test]
async fn dead_connections_are_evicted_and_replaced() {
    let mesh = Mesh::new();
    let upstream = echo_upstream().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel = listener.local_addr().unwrap();
    let server = HboneServer::new(
        mesh.server_tls(),
        forwarding_handler(None),
        ServerOptions::default(),
    );
    // Serve each connection in a task we can kill, to simulate a crashed peer.
    let (conn_tasks_tx, mut conn_tasks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let server = server.clone();
            let task = tokio::spawn(async move {
                let _ = server.serve_tcp(tcp, peer, CancellationToken::new()).await;
            });
            let _ = conn_tasks_tx.send(task);
        }
    });
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(tunnel, mesh.client_tls());
    {
        let mut stream = open(&pool, &target, upstream).await;
        echo_once(&mut stream, b"before").await;
    }
    within("server connection task", conn_tasks.recv())
        .await
        .unwrap()
        .abort();
    // Connect right away: whether or not the client noticed the dead connection yet,
    // it must end up on a new one.
    let mut stream = open(&pool, &target, upstream).await;
    echo_once(&mut stream, b"after").await;
    let stats = wait_for_stats(&pool, |s| s.connections_open == 1).await;
    assert_eq!(stats.handshakes, 2);
}

#[tokio::test]
async fn keepalive_keeps_healthy_connections_and_closes_ones_whose_peer_went_silent() {
    let s = setup(ServerOptions::default()).await;
    let keepalive = Keepalive {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
    };
    let pool = Pool::new(PoolConfig {
        keepalive: Some(keepalive),
        ..PoolConfig::default()
    });
    let (forwarder, frozen) = freezable_forwarder(s.server.addr).await;
    let target = TunnelTarget::new(forwarder, s.mesh.client_tls());
    let mut stream = open(&pool, &target, s.upstream).await;

    // a peer that answers keeps its connection through many PING rounds
    let started = std::time::Instant::now();
    while started.elapsed() < keepalive.interval * 10 {
        echo_once(&mut stream, b"alive").await;
    }
    let stats = pool.stats().snapshot();
    assert_eq!((stats.connections_open, stats.handshakes), (1, 1));

    // a peer that goes silent is dropped although a stream is open, and the stream ends
    frozen.store(true, Ordering::SeqCst);
    wait_for_stats(&pool, |s| s.connections_open == 0).await;
    let mut rest = Vec::new();
    let ended = within("stream end", stream.read_to_end(&mut rest)).await;
    assert!(
        ended.is_err() || rest.is_empty(),
        "stream still delivering data"
    );
}

/// Opens `n` streams on `pool` one after another and proves each with an echo.
async fn open_echoing(
    pool: &Pool<Key>,
    target: &TunnelTarget,
    upstream: SocketAddr,
    n: usize,
) -> Vec<HboneStream> {
    let mut streams = Vec::new();
    for i in 0..n {
        let mut stream = open(pool, target, upstream).await;
        echo_once(&mut stream, format!("stream {i}").as_bytes()).await;
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn a_busy_key_spreads_its_streams_over_more_connections_up_to_the_limit() {
    let s = setup(ServerOptions::default()).await;
    let pool = Pool::new(PoolConfig {
        spread_connections: 3,
        spread_at_streams: 2,
        ..PoolConfig::default()
    });
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut streams = open_echoing(&pool, &target, s.upstream, 2).await;
    assert_eq!(
        pool.stats().snapshot().handshakes,
        1,
        "below the spreading threshold streams share the connection"
    );
    streams.extend(open_echoing(&pool, &target, s.upstream, 4).await);
    let stats = pool.stats().snapshot();
    assert_eq!((stats.handshakes, stats.connections_open), (3, 3));
    // At the limit, more streams join the least loaded connections.
    streams.extend(open_echoing(&pool, &target, s.upstream, 10).await);
    let stats = pool.stats().snapshot();
    assert_eq!((stats.handshakes, stats.connections_open), (3, 3));
    assert_eq!(stats.streams_open, 16);
    for (i, stream) in streams.iter_mut().enumerate() {
        echo_once(stream, format!("again {i}").as_bytes()).await;
    }
}

#[tokio::test]
async fn a_failed_spreading_handshake_falls_back_to_the_open_connection() {
    let limits = Arc::new(weft_hbone::InboundLimits::new(
        weft_hbone::LimitConfig {
            connections_total: 1,
            ..weft_hbone::LimitConfig::default()
        },
        Box::new(|_| None),
        Box::new(|_, _| {}),
    ));
    let s = setup(ServerOptions {
        limits: Some(limits),
        ..ServerOptions::default()
    })
    .await;
    let pool = Pool::new(PoolConfig {
        spread_connections: 2,
        ..PoolConfig::default()
    });
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut streams = open_echoing(&pool, &target, s.upstream, 3).await;
    let stats = pool.stats().snapshot();
    assert_eq!(
        stats.connections_open, 1,
        "the server admits one connection"
    );
    assert!(stats.handshake_failures >= 1, "{stats:?}");
    assert_eq!(stats.streams_open, 3);
    echo_once(&mut streams[0], b"still served").await;
}

/// Serves one connection as a draining proxy does when it accepted it just before it
/// stopped: the client's preface, then SETTINGS and GOAWAY (last stream 0, NO_ERROR) in one
/// write, and the connection ends.
async fn answer_with_goaway(acceptor: &tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
    let mut tls = acceptor.accept(tcp).await.unwrap();
    let mut preface = [0u8; 24];
    tls.read_exact(&mut preface).await.unwrap();
    let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    tls.write_all(&[&settings[..], &goaway[..]].concat())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
}

fn draining_acceptor(mesh: &Mesh) -> tokio_rustls::TlsAcceptor {
    let mut tls = (*mesh.server_tls()).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(tls))
}

/// A new connection ended that way carried no request, so the pool opens another (which
/// the successor, now accepting, serves).
#[tokio::test]
async fn a_new_connection_answered_with_goaway_is_replaced_by_another() {
    let mesh = Mesh::new();
    let upstream = echo_upstream().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel = listener.local_addr().unwrap();
    let draining = draining_acceptor(&mesh);
    let server = HboneServer::new(
        mesh.server_tls(),
        forwarding_handler(None),
        ServerOptions::default(),
    );
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        answer_with_goaway(&draining, tcp).await;
        while let Ok((tcp, peer)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = server.serve_tcp(tcp, peer, CancellationToken::new()).await;
            });
        }
    });
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(tunnel, mesh.client_tls());
    let mut stream = open(&pool, &target, upstream).await;
    echo_once(&mut stream, b"served by the successor").await;
    let stats = pool.stats().snapshot();
    let counts = (
        stats.handshake_failures,
        stats.handshakes,
        stats.connections_open,
    );
    assert_eq!(
        counts,
        (1, 1, 1),
        "one ended by the draining server: {stats:?}"
    );
}

/// A server that only ever answers that way is given up on after a few connections, with
/// an error saying it is shutting down.
#[tokio::test]
async fn a_server_that_keeps_answering_with_goaway_fails_the_request_after_a_few_tries() {
    let mesh = Mesh::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel = listener.local_addr().unwrap();
    let draining = draining_acceptor(&mesh);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            answer_with_goaway(&draining, tcp).await;
        }
    });
    let pool = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(tunnel, mesh.client_tls());
    let request = ConnectRequest::new(echo_upstream().await);
    let connecting = pool.connect(key_for(tunnel), &target, &request);
    let error = within("give up", connecting).await.unwrap_err();
    assert!(error.to_string().contains("shutting down"), "{error}");
    assert_eq!(pool.stats().snapshot().handshake_failures, 3);
}
