//! Loopback throughput of the full tunnel path, for profiling and benchmark scripts:
//! local TCP client -> relay -> HBONE (mTLS + HTTP/2) -> server relay -> TCP sink.
//!
//! `cargo run --release -p weft-hbone --example throughput -- [MiB] [streams]`
//! Prints one line: `bytes=<n> streams=<k> seconds=<s> mib_per_s=<x> handshakes=<h>`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{Mesh, forwarding_handler, start_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_hbone::{
    ConnectRequest, Pool, PoolConfig, RelayOptions, ServerOptions, TunnelTarget, relay,
};

/// Reads until EOF and answers with the byte count.
async fn sink() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    total += n as u64;
                }
                let _ = conn.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    addr
}

/// One outbound "workload" connection, relayed through its own HBONE stream the way the
/// node proxy does it.
async fn one_stream(
    pool: Pool<()>,
    target: TunnelTarget,
    upstream: std::net::SocketAddr,
    bytes: u64,
) {
    let local = TcpListener::bind("127.0.0.1:0").await.expect("bind local");
    let local_addr = local.local_addr().expect("local address");
    let proxy = tokio::spawn(async move {
        let (mut workload_side, _) = local.accept().await.expect("accept workload");
        let mut tunnel = pool
            .connect((), &target, &ConnectRequest::new(upstream))
            .await
            .expect("open HBONE stream");
        relay(&mut workload_side, &mut tunnel, &RelayOptions::default())
            .await
            .expect("relay")
    });
    let mut workload = TcpStream::connect(local_addr)
        .await
        .expect("connect to proxy");
    let chunk = vec![0x5au8; 256 * 1024];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk
            .len()
            .min(usize::try_from(bytes - sent).unwrap_or(usize::MAX));
        workload.write_all(&chunk[..n]).await.expect("write");
        sent += n as u64;
    }
    workload.shutdown().await.expect("shutdown");
    let mut count = [0u8; 8];
    workload.read_exact(&mut count).await.expect("sink count");
    assert_eq!(u64::from_be_bytes(count), bytes, "sink saw every byte");
    proxy.await.expect("proxy task");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let streams: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mesh = Mesh::new();
    let server = start_server(
        mesh.server_tls(),
        forwarding_handler(None),
        ServerOptions::default(),
    )
    .await;
    let upstream = sink().await;
    let pool: Pool<()> = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(server.addr, mesh.client_tls());
    let per_stream = mib * 1024 * 1024 / streams;

    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            tokio::spawn(one_stream(
                pool.clone(),
                target.clone(),
                upstream,
                per_stream,
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("stream task");
    }
    let seconds = start.elapsed().as_secs_f64();
    let total = per_stream * streams;
    #[allow(clippy::cast_precision_loss)]
    let mib_per_s = total as f64 / (1024.0 * 1024.0) / seconds;
    println!(
        "bytes={total} streams={streams} seconds={seconds:.3} mib_per_s={mib_per_s:.1} handshakes={}",
        pool.stats().snapshot().handshakes
    );
}
