//! What an authenticated peer sends on an HBONE connection after the TLS handshake: the
//! HTTP/2 client preface (added here), then any frames. The node proxy's HTTP/2 server
//! decodes them, validates each CONNECT request and hands it to a handler that accepts
//! port 8080 (relaying to an in-memory peer that closes at once), hands port 15008 off
//! and refuses the rest. The client closes after its bytes, so the connection must be
//! over within seconds (libFuzzer's per-input timeout catches any other hang).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use weft_hbone::{InboundDecision, InboundRequest, Plain, ServerOptions, serve_http2};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|frames: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let finished = runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = ([10, 0, 0, 11], 40000).into();
        let options = ServerOptions::default();
        let serve = serve_http2(
            server,
            peer,
            Arc::from(Vec::new()),
            Arc::new(decide),
            &options,
            CancellationToken::new(),
        );
        let send = async move {
            let _ = client.write_all(PREFACE).await;
            let _ = client.write_all(frames).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        let both = async { tokio::join!(serve, send) };
        tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .is_ok()
    });
    assert!(
        finished,
        "HBONE connection still open 5 s after its client closed"
    );
});

async fn decide(request: InboundRequest) -> InboundDecision<Plain<tokio::io::DuplexStream>> {
    let _ = (
        request.forwarded_for(),
        request.baggage(),
        request.traceparent(),
    );
    match request.authority.port() {
        8080 => InboundDecision::accept(Plain(tokio::io::duplex(1024).0)),
        15008 => InboundDecision::Handoff(tokio::sync::oneshot::channel().0),
        _ => InboundDecision::Reject(http::StatusCode::FORBIDDEN),
    }
}
