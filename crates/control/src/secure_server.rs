//! The control plane's secure port (default 15012): a TLS listener whose serving certificate
//! is issued by the mesh CA (DNS SAN `weft-control.<namespace>.svc` plus extra names) and
//! renewed at half-life, serving tonic `Routes` (the CA and xDS).
//! TLS handshakes run concurrently, and one deadline from accepting a connection covers its
//! TLS handshake, HTTP/2 preface and first request, so a slow or silent client cannot stall
//! the listener or hold a connection unauthenticated; open connections are limited per
//! source address and PINGed (HTTP/2 keepalive) to find peers that vanished (see
//! [`crate::connection_guard`]).

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::Server;
use tower::util::MapRequestLayer;
use weft_identity::ca::RootRotation;

use crate::connection_guard::{Guarded, SourceLimits, mark_first_request};
use prometheus_client::registry::Registry;

/// Istio's secure control-plane port (TLS xDS + CA).
pub const DEFAULT_SECURE_PORT: u16 = 15012;

/// Default of [`SecureServerConfig::max_connections_per_source`]: a node proxy needs one
/// or two (xDS and CA share a connection); a few hundred leaves room for many processes
/// behind one address (NAT, `weft up` on one machine).
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 256;

/// Settings of the secure port.
#[derive(Debug, Clone)]
pub struct SecureServerConfig {
    /// Namespace the control plane runs in; gives the DNS SAN `weft-control.<ns>.svc`.
    pub namespace: String,
    /// Extra DNS SANs (`--server-san`).
    pub extra_sans: Vec<String>,
    /// Lifetime of the serving certificate; it is renewed at half-life.
    pub cert_validity: Duration,
    /// A connection whose TLS handshake, HTTP/2 preface and first request are not done
    /// this long after it was accepted is closed.
    pub handshake_timeout: Duration,
    /// Open connections allowed from one source address (new ones are closed at once).
    pub max_connections_per_source: usize,
    /// HTTP/2 PING interval on open connections, and how long an answer may take before
    /// the connection is closed.
    pub keepalive: (Duration, Duration),
}

impl Default for SecureServerConfig {
    fn default() -> Self {
        Self {
            namespace: "weft-system".into(),
            extra_sans: Vec::new(),
            cert_validity: Duration::from_secs(30 * 24 * 3600),
            handshake_timeout: Duration::from_secs(10),
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            keepalive: (Duration::from_secs(30), Duration::from_secs(10)),
        }
    }
}

impl SecureServerConfig {
    /// The serving certificate's DNS names: `weft-control.<namespace>.svc`, then the extras.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = vec![format!("weft-control.{}.svc", self.namespace)];
        for extra in &self.extra_sans {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        names
    }
}

/// Why the secure port could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum SecureServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot issue the serving certificate for {names:?}: {reason}")]
    ServingCert { names: Vec<String>, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Hands out the current serving certificate; swapped atomically on renewal.
#[derive(Debug)]
struct ServingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The holder name the CA's ledger records the serving certificate under.
const SERVING_CERT_HOLDER: &str = "weft-control";

/// Issues a serving certificate from the CA that signs now: leaf + intermediates (the root
/// is left out; clients have it).
fn issue(
    ca: &RootRotation,
    names: &[String],
    validity: Duration,
) -> Result<(CertifiedKey, SystemTime), SecureServerError> {
    let failed = |reason: String| SecureServerError::ServingCert {
        names: names.to_vec(),
        reason,
    };
    let mut issued = ca
        .issue_server_cert(SERVING_CERT_HOLDER, names, validity)
        .map_err(|err| failed(err.to_string()))?;
    if issued.chain.len() > 1 {
        issued.chain.pop();
    }
    let provider = weft_identity::tls::crypto_provider();
    let key = CertifiedKey::from_der(issued.chain, issued.key, &provider)
        .map_err(|err| failed(err.to_string()))?;
    Ok((key, issued.not_after))
}

/// A bound secure port, ready to serve.
pub struct SecureServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: SecureServerConfig,
    sources: Arc<SourceLimits>,
    renewal: tokio::task::JoinHandle<()>,
}

impl SecureServer {
    /// Binds `addr`, issues the serving certificate from `ca` and starts its renewal (at
    /// half-life, and at once when a root rotation changes the signing root).
    pub async fn bind(
        addr: SocketAddr,
        ca: Arc<RootRotation>,
        config: SecureServerConfig,
    ) -> Result<Self, SecureServerError> {
        let names = config.dns_names();
        let (key, not_after) = issue(&ca, &names, config.cert_validity)?;
        let cert = Arc::new(ServingCert {
            current: ArcSwap::from_pointee(key),
        });
        let mut tls = ServerConfig::builder_with_provider(weft_identity::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SecureServerError::Bind { addr, source })?;
        let renewal = tokio::spawn(renew_serving_cert(
            ca,
            names,
            config.cert_validity,
            cert,
            not_after,
        ));
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            sources: Arc::new(SourceLimits::new(config.max_connections_per_source)),
            config,
            renewal,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// DNS names of the serving certificate.
    pub fn dns_names(&self) -> Vec<String> {
        self.config.dns_names()
    }

    /// Registers the port's refusal counter (`connections_refused_total{reason}` under
    /// the registry's prefix).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.sources.register(registry);
    }

    /// Serves `routes` until `shutdown` completes.
    pub async fn serve(
        self,
        routes: Routes,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SecureServerError> {
        let (sender, receiver) = mpsc::channel::<Result<Connection, std::io::Error>>(64);
        let accept = tokio::spawn(accept_loop(
            self.listener,
            self.acceptor,
            self.config.handshake_timeout,
            self.sources,
            sender,
        ));
        let (interval, timeout) = self.config.keepalive;
        let result = Server::builder()
            .http2_keepalive_interval(Some(interval))
            .http2_keepalive_timeout(Some(timeout))
            .layer(MapRequestLayer::new(mark_first_request::<Body>))
            .add_routes(routes)
            .serve_with_incoming_shutdown(ReceiverStream::new(receiver), shutdown)
            .await;
        accept.abort();
        self.renewal.abort();
        Ok(result?)
    }
}

/// An accepted connection as the gRPC server gets it.
type Connection = Guarded<TlsStream<TcpStream>>;

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    sources: Arc<SourceLimits>,
    sender: mpsc::Sender<Result<Connection, std::io::Error>>,
) {
    let stop = sender.closed();
    weft_serve::accept_until(&listener, stop, "secure port", |tcp, peer| {
        let Some(slot) = sources.admit(peer) else {
            return;
        };
        let deadline = Instant::now() + handshake_timeout;
        let sources = Arc::clone(&sources);
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send(Ok(Guarded::new(tls, deadline, slot))).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "secure port: TLS handshake failed");
                }
                Err(_) => {
                    sources.count_deadline();
                    tracing::debug!(%peer, "secure port: TLS handshake timed out");
                }
            }
        });
    })
    .await;
}

/// Re-issues the serving certificate at half its lifetime and whenever the root rotation
/// changes the signing root or the bundle; on failure retries every minute while the old
/// one stays in use.
async fn renew_serving_cert(
    ca: Arc<RootRotation>,
    names: Vec<String>,
    validity: Duration,
    cert: Arc<ServingCert>,
    mut not_after: SystemTime,
) {
    let mut rotation = ca.subscribe();
    loop {
        let remaining = not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep((remaining / 2).max(Duration::from_secs(1))) => {}
            changed = rotation.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        match issue(&ca, &names, validity) {
            Ok((key, expiry)) => {
                cert.current.store(Arc::new(key));
                not_after = expiry;
                tracing::info!(
                    ?names,
                    ?expiry,
                    "renewed the control plane serving certificate"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not renew the serving certificate; retrying in 60s");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}
