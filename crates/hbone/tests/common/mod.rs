//! Test fixtures: the mesh CA of weft-identity issuing workload certificates the way a node
//! proxy gets them, the production HBONE TLS configs (`weft_identity::tls`, SPIFFE-verifying),
//! an HBONE server on an ephemeral port, and TCP upstreams.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use weft_hbone::{HboneServer, InboundDecision, InboundHandler, InboundRequest, ServerOptions};
use weft_identity::ca::csr::verify_csr_pem;
use weft_identity::{
    CertificateAuthority, SpiffeId, TrustBundle, WorkloadCert, client_config, key_and_csr,
    server_config,
};

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/dest/sa/server";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/src/sa/client";

/// Lifetime of the certificates [`Mesh`] issues.
pub const VALIDITY: Duration = Duration::from_secs(3600);

pub fn spiffe(uri: &str) -> SpiffeId {
    uri.parse().unwrap()
}

/// Issues a certificate for `identity` from `ca` the way a node proxy gets one: a fresh key
/// and CSR, the CA's CSR checks, and the CA response assembled into a [`WorkloadCert`].
pub fn issue(ca: &CertificateAuthority, identity: &str, validity: Duration) -> WorkloadCert {
    let identity = spiffe(identity);
    let (key, csr_pem) = key_and_csr(&identity).unwrap();
    let csr = verify_csr_pem(&csr_pem).unwrap();
    let chain = ca
        .sign_workload(&csr.spki_der, &identity, validity)
        .unwrap();
    WorkloadCert::from_ca_response(identity, key, &chain.pem).unwrap()
}

/// A mesh CA, the trust bundle of its root, and a server and a client certificate from it.
pub struct Mesh {
    pub ca: CertificateAuthority,
    pub trust: TrustBundle,
    pub server: WorkloadCert,
    pub client: WorkloadCert,
}

impl Mesh {
    pub fn new() -> Self {
        let ca = CertificateAuthority::generate_in_memory().unwrap();
        let trust = TrustBundle::new(TRUST_DOMAIN, [ca.root().clone()]).unwrap();
        let server = issue(&ca, SERVER_ID, VALIDITY);
        let client = issue(&ca, CLIENT_ID, VALIDITY);
        Self {
            ca,
            trust,
            server,
            client,
        }
    }

    /// The production HBONE server config for the server certificate.
    pub fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        server_config(&self.server, &self.trust).unwrap()
    }

    /// The production HBONE client config for the client certificate, expecting the server.
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        self.client_tls_for(&self.client, SERVER_ID)
    }

    /// The production HBONE client config presenting `cert` and accepting only a server
    /// whose chain leads to the mesh root and whose SPIFFE id is `expected_server`.
    pub fn client_tls_for(
        &self,
        cert: &WorkloadCert,
        expected_server: &str,
    ) -> Arc<rustls::ClientConfig> {
        client_config(cert, &self.trust, [spiffe(expected_server)]).unwrap()
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

/// A mesh, an HBONE server that forwards each tunnel to its authority, and an echo upstream.
pub struct Setup {
    pub mesh: Mesh,
    pub server: TestServer,
    pub upstream: SocketAddr,
    /// Every request the server's handler was called with.
    pub seen: tokio::sync::mpsc::UnboundedReceiver<InboundRequest>,
}

pub async fn setup(options: ServerOptions) -> Setup {
    let mesh = Mesh::new();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let server = start_server(
        mesh.server_tls(),
        forwarding_handler(Some(seen_tx)),
        options,
    )
    .await;
    let upstream = echo_upstream().await;
    Setup {
        mesh,
        server,
        upstream,
        seen,
    }
}

/// A TCP server that echoes every connection until EOF, then closes its write half.
pub async fn echo_upstream() -> SocketAddr {
    weft_testkit::tcp_echo(([127, 0, 0, 1], 0).into()).await.0
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
