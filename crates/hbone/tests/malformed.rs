//! Misbehaving and unauthorized clients: right status or a closed connection, and the
//! server keeps serving everyone else.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use weft_hbone::{
    ConnectRequest, HboneError, Keepalive, Pool, PoolConfig, ServerOptions, TunnelTarget,
};
use weft_identity::CertificateAuthority;
use weft_identity::tls::crypto_provider;

/// A well-behaved client still gets through: echo over a fresh pool.
async fn assert_server_still_serves(s: &Setup) {
    let pool: Pool<u8> = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, s.mesh.client_tls());
    let mut stream = within(
        "good client",
        pool.connect(0, &target, &ConnectRequest::new(s.upstream)),
    )
    .await
    .unwrap();
    stream.write_all(b"ok?").await.unwrap();
    let mut back = [0u8; 3];
    within("good client echo", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(&back, b"ok?");
}

/// Raw HTTP/2 over mutual TLS, to send requests the HBONE client never would.
async fn raw_h2(s: &Setup) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(s.server.addr).await.unwrap();
    let tls = TlsConnector::from(s.mesh.client_tls())
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn status_of(send: &h2::client::SendRequest<Bytes>, request: Request<()>) -> StatusCode {
    let mut send = send.clone().ready().await.unwrap();
    let (response, _body) = send.send_request(request, false).unwrap();
    within("response", response).await.unwrap().status()
}

fn request(method: Method, uri: &str) -> Request<()> {
    Request::builder().method(method).uri(uri).body(()).unwrap()
}

#[tokio::test]
async fn non_connect_and_bad_authorities_get_400_without_harming_the_connection() {
    let mut s = setup(ServerOptions::default()).await;
    let h2 = raw_h2(&s).await;
    let cases = [
        request(Method::GET, &format!("http://{}/", s.upstream)),
        request(Method::POST, &format!("https://{}/x", s.upstream)),
        request(Method::CONNECT, &format!("localhost:{}", s.upstream.port())),
        request(Method::CONNECT, "10.0.0.1"),
        request(Method::CONNECT, "10.0.0.1:99999"),
    ];
    for case in cases {
        let what = format!("{} {}", case.method(), case.uri());
        assert_eq!(
            status_of(&h2, case).await,
            StatusCode::BAD_REQUEST,
            "{what}"
        );
    }
    // The handler never saw any of them.
    assert!(s.seen.try_recv().is_err());
    // The same connection still carries a valid tunnel.
    let connect = request(Method::CONNECT, &s.upstream.to_string());
    let mut send = h2.clone().ready().await.unwrap();
    let (response, mut tx) = send.send_request(connect, false).unwrap();
    let response = within("valid CONNECT", response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tx.send_data(Bytes::from_static(b"raw"), true).unwrap();
    let mut body = response.into_body();
    let chunk = within("echo", body.data()).await.unwrap().unwrap();
    assert_eq!(&chunk[..], b"raw");
}

#[tokio::test]
async fn a_connect_with_oversized_headers_gets_431_and_the_connection_still_serves() {
    let s = setup(ServerOptions::default()).await;
    let h2 = raw_h2(&s).await;
    let mut big = request(Method::CONNECT, &s.upstream.to_string());
    // over the 64 KiB the server accepts (h2's own default would take 16 MiB)
    let filler = "x".repeat(100 * 1024);
    big.headers_mut()
        .insert("x-filler", filler.parse().unwrap());
    assert_eq!(
        status_of(&h2, big).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let connect = request(Method::CONNECT, &s.upstream.to_string());
    assert_eq!(status_of(&h2, connect).await, StatusCode::OK);
    assert_server_still_serves(&s).await;
}

/// Reads until the server closes the connection; fails if it does not within the bound.
async fn expect_closed(tcp: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    within("server closing the connection", async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn garbage_bytes_get_the_connection_closed() {
    let s = setup(ServerOptions::default()).await;
    let mut tcp = TcpStream::connect(s.server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage")
        .await
        .unwrap();
    expect_closed(&mut tcp).await;
    assert_server_still_serves(&s).await;
}

#[tokio::test]
async fn silent_clients_are_closed_at_the_handshake_timeout() {
    let s = setup(ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    })
    .await;
    let mut silent = TcpStream::connect(s.server.addr).await.unwrap();
    expect_closed(&mut silent).await;
    assert_server_still_serves(&s).await;
}

#[tokio::test]
async fn tls_without_h2_preface_is_closed_at_the_handshake_timeout() {
    let s = setup(ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    })
    .await;
    let tcp = TcpStream::connect(s.server.addr).await.unwrap();
    let mut tls = TlsConnector::from(s.mesh.client_tls())
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    within("server closing the TLS connection", async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_server_still_serves(&s).await;
}

/// Tries a tunnel with `tls`; it must fail in the handshake, for `reason` (a TLS alert or
/// verifier error named in the error), and never reach the handler.
async fn assert_refused(s: &mut Setup, tls: Arc<rustls::ClientConfig>, reason: &str) {
    let pool: Pool<u8> = Pool::new(PoolConfig::default());
    let target = TunnelTarget::new(s.server.addr, tls);
    let result = within(
        "refused client",
        pool.connect(0, &target, &ConnectRequest::new(s.upstream)),
    )
    .await;
    let error = result.expect_err("the tunnel must be refused");
    assert!(matches!(error, HboneError::Handshake(_)), "{error}");
    assert!(
        format!("{error:?}").contains(reason),
        "not {reason}: {error:?}"
    );
    assert_eq!(pool.stats().snapshot().handshakes, 0);
    assert!(s.seen.try_recv().is_err(), "the handler must not be called");
    assert_server_still_serves(s).await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let mut s = setup(ServerOptions::default()).await;
    // The production client config, answering the server's certificate request with nothing
    // (rustls' resolver for a config without client authentication).
    let no_client_auth = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut tls = (*s.mesh.client_tls()).clone();
    tls.client_auth_cert_resolver = no_client_auth.client_auth_cert_resolver;
    assert_refused(&mut s, Arc::new(tls), "CertificateRequired").await;
}

#[tokio::test]
async fn client_certificate_from_another_root_is_refused() {
    let mut s = setup(ServerOptions::default()).await;
    // Another mesh's CA: its root has the same name as ours, so the server tries the chain
    // against our root and the signature does not verify.
    let other_ca = CertificateAuthority::generate_in_memory().unwrap();
    let stranger = issue(&other_ca, CLIENT_ID, VALIDITY);
    let tls = s.mesh.client_tls_for(&stranger, SERVER_ID);
    assert_refused(&mut s, tls, "DecryptError").await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let mut s = setup(ServerOptions::default()).await;
    // From the mesh CA with a zero lifetime: valid from the CA's backdating until now.
    let expired = issue(&s.mesh.ca, CLIENT_ID, Duration::ZERO);
    // Certificate times have a one-second resolution: wait until it is over by more.
    let over = expired.not_after() + Duration::from_millis(1100);
    if let Ok(wait) = over.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    assert!(expired.not_after() < SystemTime::now());
    let tls = s.mesh.client_tls_for(&expired, SERVER_ID);
    assert_refused(&mut s, tls, "CertificateExpired").await;
}

#[tokio::test]
async fn client_certificate_outside_the_trust_domain_is_refused() {
    let mut s = setup(ServerOptions::default()).await;
    // Signed by the mesh CA itself: only the trust domain is wrong.
    let foreign = issue(
        &s.mesh.ca,
        "spiffe://evil.example/ns/src/sa/client",
        VALIDITY,
    );
    let tls = s.mesh.client_tls_for(&foreign, SERVER_ID);
    assert_refused(&mut s, tls, "CertificateUnknown").await;
}

#[tokio::test]
async fn server_with_an_unexpected_identity_is_refused_by_the_client() {
    let mut s = setup(ServerOptions::default()).await;
    let tls = s.mesh.client_tls_for(
        &s.mesh.client,
        "spiffe://cluster.local/ns/dest/sa/someone-else",
    );
    assert_refused(&mut s, tls, "someone-else").await;
}

#[tokio::test]
async fn tls12_clients_are_refused() {
    let mut s = setup(ServerOptions::default()).await;
    // Same identity, but the client only speaks TLS 1.2 (the server config is 1.3-only).
    // The production configs cannot speak 1.2, so this one checks the server with rustls'
    // own webpki verifier: the server refuses the hello before it shows its certificate.
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(s.mesh.trust.root_store())
        .with_client_cert_resolver(Arc::clone(&s.mesh.client_tls().client_auth_cert_resolver));
    tls.alpn_protocols = vec![b"h2".to_vec()];
    assert_refused(&mut s, Arc::new(tls), "ProtocolVersion").await;
}

#[tokio::test]
async fn tunnels_of_a_client_that_went_silent_are_closed_by_server_keepalive() {
    let s = setup(ServerOptions {
        keepalive: Some(Keepalive {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
        }),
        ..ServerOptions::default()
    })
    .await;
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (forwarder, frozen) = freezable_forwarder(s.server.addr).await;
    // the client itself does not PING: only the server can notice
    let pool: Pool<u8> = Pool::new(PoolConfig {
        keepalive: None,
        ..PoolConfig::default()
    });
    let target = TunnelTarget::new(forwarder, s.mesh.client_tls());
    let request = ConnectRequest::new(upstream.local_addr().unwrap());
    let mut stream = within("connect", pool.connect(0, &target, &request))
        .await
        .unwrap();
    let (mut workload, _) = within("upstream accept", upstream.accept()).await.unwrap();
    stream.write_all(b"hi").await.unwrap();
    let mut got = [0u8; 2];
    within("tunnel data", workload.read_exact(&mut got))
        .await
        .unwrap();

    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut rest = Vec::new();
    let closed = within("server closes the tunnel", workload.read_to_end(&mut rest)).await;
    assert!(closed.is_err() || rest.is_empty());
}
