//! The secure port against stalled and greedy peers: a connection that has not finished
//! its TLS handshake, HTTP/2 preface and first request by the deadline is closed, a source
//! address holding its limit of connections gets new ones closed at once (others are
//! served), and well-behaved clients keep working throughout.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_control::ca_service::StaticServingNames;
use weft_control::secure_server::SecureServerConfig;
use weft_identity::TrustBundle;
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

/// Longest anything expected here may take (far above the deadlines under test).
const PATIENCE: Duration = Duration::from_secs(5);
/// The HTTP/2 client preface followed by an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

async fn guarded_ca(deadline: Duration, per_source: usize) -> RunningCa {
    let secure = SecureServerConfig {
        handshake_timeout: deadline,
        max_connections_per_source: per_source,
        ..SecureServerConfig::default()
    };
    start_ca_with(StaticServingNames::new(), secure).await
}

/// A TCP connection to `ca` from `source`.
async fn tcp_from(ca: &RunningCa, source: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(ca.addr).await.expect("TCP connect")
}

/// A finished TLS handshake (ALPN h2) with `ca` from `source`.
async fn tls_from(ca: &RunningCa, source: Ipv4Addr) -> TlsStream<TcpStream> {
    let trust = TrustBundle::new("cluster.local", [ca.ca.root().clone()]).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(weft_identity::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(trust.root_store())
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tcp_from(ca, source).await;
    TlsConnector::from(Arc::new(config))
        .connect(SERVER_NAME.try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// Reads (discarding) until the server closes; panics if it does not within [`PATIENCE`].
async fn expect_closed(stream: &mut (impl AsyncReadExt + Unpin), what: &str) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the server must close the connection"
    );
}

/// A well-behaved CA request: answered (here UNAUTHENTICATED: no token), not dropped.
async fn ca_answers(ca: &RunningCa) {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.root_pem()))
        .domain_name(SERVER_NAME);
    let channel = tonic::transport::Endpoint::from_shared(ca.endpoint())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a good client connects");
    let status = IstioCertificateServiceClient::new(channel)
        .create_certificate(IstioCertificateRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}

fn refused(ca: &RunningCa, reason: &str) -> String {
    let text = ca.metrics_text();
    let label = format!("weft_control_connections_refused_total{{reason=\"{reason}\"}}");
    text.lines()
        .find(|line| line.starts_with(&label))
        .unwrap_or_else(|| panic!("no {label} in\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn connections_without_a_request_by_the_deadline_are_closed() {
    let ca = guarded_ca(Duration::from_millis(300), 64).await;
    let local = Ipv4Addr::LOCALHOST;

    let mut tls_only = tls_from(&ca, local).await;
    let mut preface_only = tls_from(&ca, local).await;
    preface_only.write_all(H2_PREFACE).await.unwrap();
    let mut silent = tcp_from(&ca, local).await;

    expect_closed(&mut tls_only, "TLS done, no HTTP/2 preface").await;
    expect_closed(&mut preface_only, "HTTP/2 preface, no request").await;
    expect_closed(&mut silent, "no TLS handshake").await;
    assert!(refused(&ca, "deadline").ends_with(" 3"));
    ca_answers(&ca).await;
}

#[tokio::test]
async fn a_source_at_its_connection_limit_gets_new_ones_closed_and_others_are_served() {
    let ca = guarded_ca(PATIENCE * 4, 2).await;
    let greedy = Ipv4Addr::new(127, 0, 0, 1);
    let _first = tls_from(&ca, greedy).await;
    let _second = tls_from(&ca, greedy).await;
    let mut third = tcp_from(&ca, greedy).await;
    expect_closed(&mut third, "a third connection from the same address").await;
    assert!(refused(&ca, "per_source").ends_with(" 1"));

    // Another address is unaffected.
    let mut other = tls_from(&ca, Ipv4Addr::new(127, 0, 0, 2)).await;
    other.write_all(H2_PREFACE).await.unwrap();
    let mut settings = [0u8; 9];
    tokio::time::timeout(PATIENCE, other.read_exact(&mut settings))
        .await
        .expect("the server answers another source")
        .unwrap();
    assert_eq!(settings[3], 4, "the server's SETTINGS frame");
}
