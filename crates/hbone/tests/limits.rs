//! Inbound limits: per peer identity and in total, new connections and tunnels over a
//! limit are refused (closed / 503) and reported, while open ones keep working and a
//! released slot can be taken again.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_hbone::limits::{Held, Limit};
use weft_hbone::{InboundLimits, LimitConfig, ServerOptions};

const OTHER_ID: &str = "spiffe://cluster.local/ns/src/sa/other";

type Refusals = Arc<Mutex<Vec<(Held, Limit)>>>;

/// A server with `config` whose refusals are recorded.
async fn limited(config: LimitConfig) -> (Setup, Refusals, Arc<InboundLimits>) {
    let refusals = Refusals::default();
    let heard = Arc::clone(&refusals);
    let limits = Arc::new(InboundLimits::new(
        config,
        Box::new(|certs| {
            weft_identity::peer_identity(Some(certs))
                .ok()
                .map(|id| id.to_string())
        }),
        Box::new(move |held, limit| heard.lock().unwrap().push((held, limit))),
    ));
    let options = ServerOptions {
        limits: Some(Arc::clone(&limits)),
        ..ServerOptions::default()
    };
    (setup(options).await, refusals, limits)
}

/// A raw HTTP/2 connection presenting `identity`'s certificate.
async fn connect_as(
    s: &Setup,
    identity: &str,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let cert = issue(&s.mesh.ca, identity, VALIDITY);
    let tls = s.mesh.client_tls_for(&cert, SERVER_ID);
    let tcp = TcpStream::connect(s.server.addr).await.unwrap();
    let stream = TlsConnector::from(tls)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = within("h2 handshake", h2::client::handshake(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driver)
}

/// An open tunnel: its send half and the response body.
struct Tunnel {
    send: h2::SendStream<Bytes>,
    body: h2::RecvStream,
}

impl Tunnel {
    /// Echoes `data` through the tunnel (the upstream is an echo server).
    async fn echo(&mut self, data: &'static [u8]) {
        self.send
            .send_data(Bytes::from_static(data), false)
            .unwrap();
        let chunk = within("echo", self.body.data()).await.unwrap().unwrap();
        assert_eq!(&chunk[..], data);
    }
}

/// CONNECT to the echo upstream: the tunnel when answered 200, else the status.
async fn open(s: &Setup, h2: &h2::client::SendRequest<Bytes>) -> Result<Tunnel, StatusCode> {
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(s.upstream.to_string())
        .body(())
        .unwrap();
    let mut ready = within("stream capacity", h2.clone().ready()).await.unwrap();
    let (response, send) = ready.send_request(request, false).unwrap();
    let response = within("CONNECT answer", response).await.unwrap();
    match response.status() {
        StatusCode::OK => Ok(Tunnel {
            send,
            body: response.into_body(),
        }),
        status => Err(status),
    }
}

#[tokio::test]
async fn tunnels_over_a_limit_get_503_and_open_ones_keep_working() {
    let (s, refusals, limits) = limited(LimitConfig {
        tunnels_per_identity: 2,
        tunnels_total: 3,
        ..LimitConfig::default()
    })
    .await;
    let (client, _a) = connect_as(&s, CLIENT_ID).await;
    let mut first = open(&s, &client).await.expect("first tunnel");
    let _second = open(&s, &client).await.expect("second tunnel");
    assert_eq!(
        open(&s, &client).await.err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    first.echo(b"still open").await;

    // Another identity has its own share, up to the total.
    let (other, _b) = connect_as(&s, OTHER_ID).await;
    let _third = open(&s, &other).await.expect("another identity's tunnel");
    assert_eq!(
        open(&s, &other).await.err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        *refusals.lock().unwrap(),
        [
            (Held::Tunnel, Limit::Identity),
            (Held::Tunnel, Limit::Total)
        ]
    );

    // Closing a tunnel gives its slot back.
    first.send.send_data(Bytes::new(), true).unwrap();
    drop(first);
    within("the closed tunnel's slot is released", async {
        while limits.open(Some(CLIENT_ID)).1 > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    open(&s, &client).await.expect("a tunnel after one closed");
}

#[tokio::test]
async fn connections_over_a_limit_are_closed_after_tls_and_open_ones_keep_working() {
    let (s, refusals, _limits) = limited(LimitConfig {
        connections_per_identity: 2,
        connections_total: 3,
        ..LimitConfig::default()
    })
    .await;
    let (first, _a) = connect_as(&s, CLIENT_ID).await;
    let (_second, _b) = connect_as(&s, CLIENT_ID).await;
    expect_refused(&s, CLIENT_ID).await;
    let (_other, _c) = connect_as(&s, OTHER_ID).await;
    expect_refused(&s, OTHER_ID).await;
    let mut tunnel = open(&s, &first)
        .await
        .expect("an open connection still serves");
    tunnel.echo(b"hello").await;
    assert_eq!(
        *refusals.lock().unwrap(),
        [
            (Held::Connection, Limit::Identity),
            (Held::Connection, Limit::Total)
        ]
    );
}

/// A connection as `identity` is closed by the server right after the TLS handshake.
async fn expect_refused(s: &Setup, identity: &str) {
    let cert = issue(&s.mesh.ca, identity, VALIDITY);
    let tls = s.mesh.client_tls_for(&cert, SERVER_ID);
    let tcp = TcpStream::connect(s.server.addr).await.unwrap();
    let mut stream = TlsConnector::from(tls)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = within(
        "server closes the refused connection",
        stream.read(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
