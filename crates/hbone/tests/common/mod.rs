//! Test fixtures: a throwaway PKI issuing SPIFFE certificates (rcgen), rustls configs with
//! SPIFFE-checking verifiers, an HBONE server on an ephemeral port, and TCP upstreams.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use weft_hbone::{HboneServer, InboundDecision, InboundHandler, InboundRequest, ServerOptions};

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/dest/sa/server";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/src/sa/client";

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A certificate authority for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain (leaf first) with its private key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        Arc::new(roots)
    }

    pub fn leaf(&self, spiffe_id: &str) -> Identity {
        self.leaf_valid_between(spiffe_id, 2020, 2090)
    }

    pub fn expired_leaf(&self, spiffe_id: &str) -> Identity {
        self.leaf_valid_between(spiffe_id, 2020, 2021)
    }

    /// A leaf valid from January 1st of `from_year` to January 1st of `until_year`.
    fn leaf_valid_between(&self, spiffe_id: &str, from_year: i32, until_year: i32) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(from_year, 1, 1);
        params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::from(key),
        }
    }
}

/// URI SANs of a DER certificate.
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// The SPIFFE id of a leaf-first chain.
pub fn spiffe_id(chain: &[CertificateDer<'_>]) -> Option<String> {
    uri_sans(chain.first()?)
        .into_iter()
        .find(|uri| uri.starts_with("spiffe://"))
}

fn bad_san() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// Client verifier: chain to the roots (webpki), then the SPIFFE id must be in the trust domain.
#[derive(Debug)]
struct SpiffeClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let prefix = format!("spiffe://{}/", self.trust_domain);
        if uri_sans(end_entity)
            .iter()
            .any(|uri| uri.starts_with(&prefix))
        {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(bad_san())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Server verifier: chain to the roots, no host name check, exact expected SPIFFE id.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    expected: String,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if uri_sans(end_entity).contains(&self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(bad_san())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// mTLS server config: TLS 1.3 only, client certs required from `client_roots` in the
/// test trust domain. ALPN is left empty on purpose (the library adds `h2`).
pub fn server_config(
    identity: &Identity,
    client_roots: Arc<RootCertStore>,
) -> Arc<rustls::ServerConfig> {
    let chain = WebPkiClientVerifier::builder_with_provider(client_roots, provider())
        .build()
        .unwrap();
    let verifier = Arc::new(SpiffeClientVerifier {
        chain,
        trust_domain: TRUST_DOMAIN.to_owned(),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .unwrap();
    Arc::new(config)
}

/// Client config presenting `identity` (or nothing) and expecting the server's SPIFFE id.
pub fn client_config(
    identity: Option<&Identity>,
    server_roots: Arc<RootCertStore>,
    expected_server: &str,
) -> Arc<rustls::ClientConfig> {
    client_config_for_versions(
        identity,
        server_roots,
        expected_server,
        &[&rustls::version::TLS13],
    )
}

pub fn client_config_for_versions(
    identity: Option<&Identity>,
    server_roots: Arc<RootCertStore>,
    expected_server: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let verifier = Arc::new(SpiffeServerVerifier {
        roots: server_roots,
        provider: provider(),
        expected: expected_server.to_owned(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A CA, a server identity and a client identity in the same trust domain.
pub struct Mesh {
    pub ca: TestCa,
    pub server: Identity,
    pub client: Identity,
}

impl Mesh {
    pub fn new() -> Self {
        let ca = TestCa::new("mesh root");
        let server = ca.leaf(SERVER_ID);
        let client = ca.leaf(CLIENT_ID);
        Self { ca, server, client }
    }

    pub fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        server_config(&self.server, self.ca.roots())
    }

    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        client_config(Some(&self.client), self.ca.roots(), SERVER_ID)
    }
}

/// A running HBONE server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_server<H: InboundHandler>(
    tls: Arc<rustls::ServerConfig>,
    handler: H,
    options: ServerOptions,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = HboneServer::new(tls, handler, options);
    let token = shutdown.clone();
    tokio::spawn(async move { server.serve(listener, token).await });
    TestServer { addr, shutdown }
}

/// Connects to the requested authority; answers 503 when that fails. Every request is
/// also sent to `seen` when given.
pub fn forwarding_handler(
    seen: Option<tokio::sync::mpsc::UnboundedSender<InboundRequest>>,
) -> impl InboundHandler<Upstream = TcpStream> {
    move |request: InboundRequest| {
        if let Some(seen) = &seen {
            let _ = seen.send(request.clone());
        }
        async move {
            match TcpStream::connect(request.authority).await {
                Ok(upstream) => InboundDecision::accept(upstream),
                Err(_) => InboundDecision::Reject(http::StatusCode::SERVICE_UNAVAILABLE),
            }
        }
    }
}

/// A TCP server that echoes every connection until EOF, then closes its write half.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = conn.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP server that reads until EOF and only then answers with the byte count (u64 BE)
/// and the SHA-256 of what it read: proves half-close works end to end.
pub async fn digest_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut digest = ::aws_lc_rs::digest::Context::new(&::aws_lc_rs::digest::SHA256);
                let mut total = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            digest.update(&buf[..n]);
                            total += n as u64;
                        }
                        Err(_) => return,
                    }
                }
                let _ = conn.write_all(&total.to_be_bytes()).await;
                let _ = conn.write_all(digest.finish().as_ref()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes (xorshift), chunk by chunk.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ::aws_lc_rs::digest::digest(&::aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Fails the test instead of hanging.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A TCP forwarder to `server` that can be frozen: sockets stay open, bytes stop flowing
/// (what a lost node or a partition looks like to the client).
pub async fn freezable_forwarder(server: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&frozen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = TcpStream::connect(server).await.unwrap();
            let (client_rd, client_wr) = client.into_split();
            let (upstream_rd, upstream_wr) = upstream.into_split();
            tokio::spawn(forward_until_frozen(
                client_rd,
                upstream_wr,
                Arc::clone(&flag),
            ));
            tokio::spawn(forward_until_frozen(
                upstream_rd,
                client_wr,
                Arc::clone(&flag),
            ));
        }
    });
    (addr, frozen)
}

async fn forward_until_frozen(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // swallow everything from now on, keeping both sockets open
            let _keep = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
