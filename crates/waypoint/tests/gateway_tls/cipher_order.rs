//! The cipher suite a terminating listener picks: AES-128-GCM for a client that lists AES
//! first (as rustls, browsers on x86 and most libraries do), ChaCha20-Poly1305 for one
//! whose first choice it is (a device without AES instructions), in TLS 1.3 and 1.2.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self, cipher_suite};
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Fixture, Net, gateway_resource};
use crate::listeners::{HTTPS, https_listener};
use crate::pki::TestCa;

const HOST: &str = "web.example.com";

/// The suite negotiated by a client offering `suites` (in that order) over `versions`.
async fn negotiated(
    net: Net,
    ca: &TestCa,
    suites: Vec<SupportedCipherSuite>,
    versions: &[&'static SupportedProtocolVersion],
) -> CipherSuite {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..aws_lc_rs::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(net.gateway(HTTPS))
        .await
        .expect("connect");
    let name = ServerName::try_from(HOST).expect("server name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let suite = tls.get_ref().1.negotiated_cipher_suite();
    suite.expect("a negotiated suite").suite()
}

#[tokio::test]
async fn aes_first_clients_get_aes_128_and_chacha_first_clients_get_chacha() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let listener = https_listener("web", HOST, &ca.leaf(&[HOST]));
    let _fixture = Fixture::start(net, &[], &gateway_resource(vec![listener])).await;
    let tls13 = &[&rustls::version::TLS13];
    let tls12 = &[&rustls::version::TLS12];

    // rustls' own order (AES-256-GCM, AES-128-GCM, ChaCha20): the server's order decides.
    let default_order = aws_lc_rs::default_provider().cipher_suites;
    assert_eq!(
        negotiated(net, &ca, default_order, tls13).await,
        CipherSuite::TLS13_AES_128_GCM_SHA256
    );
    // ChaCha20 first: the client's order decides.
    let chacha_first = vec![
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        negotiated(net, &ca, chacha_first, tls13).await,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    );
    // The same in TLS 1.2 (the test certificates are ECDSA).
    let chacha_first_12 = vec![
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    assert_eq!(
        negotiated(net, &ca, chacha_first_12, tls12).await,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
    // No AES-128 offered, AES-256 first: the server's next choice.
    let no_aes_128 = vec![
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    assert_eq!(
        negotiated(net, &ca, no_aes_128, tls13).await,
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
}
