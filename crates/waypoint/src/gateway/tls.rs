//! HTTPS, TLS and TCP listener ports of the gateway: what they are compiled into
//! ([`TlsPorts::compile`], from the `weft.l7.v1.Gateway` resource) and how one client
//! connection is served ([`serve_connection`]).
//!
//! On a port with TLS listeners the ClientHello is read first without answering it
//! ([`super::passthrough`]); its server name chooses the listener by the Gateway API
//! hostname rules (no SNI: the listener without hostname, else none). Then:
//! - HTTPS: TLS is terminated with the certificate chosen by SNI among every terminating
//!   listener of the port (ALPN `h2`, `http/1.1`), asking for and checking a client
//!   certificate when the port has frontend validation ([`super::client_auth`]), and the
//!   requests go to the HTTP layer ([`super::serve_http`]), which answers 421 to a Host
//!   belonging to another listener;
//! - TLS `Terminate`: TLS is terminated and the decrypted bytes are relayed to a backend of
//!   the TLSRoute chosen by SNI;
//! - TLS `Passthrough`: the TLSRoute chosen by SNI gets the untouched connection, the
//!   buffered ClientHello first (the client sees the backend's certificate);
//! - a listener whose certificate could not be loaded closes its connections.
//!
//! A TCP listener relays to its TCPRoute. The ClientHello must arrive, and a terminated
//! handshake complete, within [`HANDSHAKE_TIMEOUT`]. The port tables are compiled with each
//! configuration: new handshakes use the new certificates, open connections keep theirs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use weft_proto::l7::{self as pb, listener::Protocol, listener::TlsMode};

use super::auto_cert::AutoCerts;
use super::client_auth::client_verifier;
use super::passthrough::{Hello, read_client_hello};
use super::sni::{CertSource, HostTable, SniResolver, certified_key};
use super::tcp::{L4Routes, relay};
use super::{Downstream, Gateway};
use crate::detect::Rewind;

/// How long a client has to send its ClientHello and complete a terminated handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The compiled HTTPS / TLS / TCP ports of a gateway.
#[derive(Debug, Default)]
pub struct TlsPorts {
    ports: BTreeMap<u16, Arc<PortTls>>,
    errors: Vec<String>,
}

/// One port: its TLS listeners by hostname, or its TCP routes.
#[derive(Debug)]
pub(crate) struct PortTls {
    listeners: Vec<ListenerTls>,
    by_sni: HostTable<usize>,
    /// Terminating HTTPS (ALPN `h2`, `http/1.1`) and terminating TLS (no ALPN).
    https: Terminating,
    tls: Terminating,
    /// The routes of a TCP listener (then the port has no TLS listener).
    tcp: Option<L4Routes>,
}

/// The TLS server configuration of terminating listeners, in two cipher-suite orders: the
/// server's (AES-128-GCM first, see [`provider`]) for most clients, and the client's own for
/// a client whose first choice is ChaCha20-Poly1305, which is how a client without AES
/// instructions says that AES would be slow for it.
#[derive(Debug)]
struct Terminating {
    server_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl Terminating {
    fn for_client(&self, hello: &Hello) -> &Arc<ServerConfig> {
        if hello.prefers_chacha {
            &self.client_order
        } else {
            &self.server_order
        }
    }
}

/// What a TLS listener does with a connection.
#[derive(Debug)]
enum Mode {
    Https,
    Terminate(L4Routes),
    Passthrough(L4Routes),
    /// Its configuration is unusable (the reason): connections are closed.
    Broken(String),
}

#[derive(Debug)]
struct ListenerTls {
    name: String,
    mode: Mode,
}

impl TlsPorts {
    /// Compiles every HTTPS, TLS and TCP listener of `gateway`. A listener whose
    /// certificates or routes cannot be used is kept closing its connections (a less
    /// specific listener never answers for its hostname) and its error is listed in
    /// [`TlsPorts::errors`]; `auto` serves the auto-certificate listeners.
    #[must_use]
    pub fn compile(gateway: &pb::Gateway, auto: Option<Arc<AutoCerts>>) -> Self {
        let mut by_port: BTreeMap<u16, Vec<(usize, &pb::Listener)>> = BTreeMap::new();
        for (index, listener) in gateway.listeners.iter().enumerate() {
            if listener.protocol() != Protocol::Http
                && let Ok(port) = u16::try_from(listener.port)
            {
                by_port.entry(port).or_default().push((index, listener));
            }
        }
        let mut errors = Vec::new();
        let ports = by_port
            .into_iter()
            .map(|(port, listeners)| {
                let compiled = compile_port(&listeners, auto.clone(), &mut errors);
                (port, Arc::new(compiled))
            })
            .collect();
        for error in &errors {
            tracing::warn!(gateway = %format!("{}/{}", gateway.namespace, gateway.name), %error,
                "listener not served");
        }
        Self { ports, errors }
    }

    /// The compiled port, if it has HTTPS, TLS or TCP listeners.
    #[must_use]
    pub(crate) fn port(&self, port: u16) -> Option<&Arc<PortTls>> {
        self.ports.get(&port)
    }

    /// Listeners that cannot be served: `listeners[i] (name): reason`.
    #[must_use]
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

fn compile_port(
    listeners: &[(usize, &pb::Listener)],
    auto: Option<Arc<AutoCerts>>,
    errors: &mut Vec<String>,
) -> PortTls {
    let mut compiled = Vec::new();
    let mut by_sni = HostTable::default();
    let mut certs = HostTable::default();
    let mut tcp = None;
    for &(index, listener) in listeners {
        let field = format!("listeners[{index}] ({})", listener.name);
        if listener.protocol() == Protocol::Tcp {
            match L4Routes::compile(&listener.l4_routes) {
                Ok(routes) if tcp.is_none() => tcp = Some(routes),
                Ok(_) => errors.push(format!("{field}: another TCP listener has the port")),
                Err(reason) => errors.push(format!("{field}: {reason}")),
            }
            continue;
        }
        let mode = listener_mode(listener, &mut certs).unwrap_or_else(|reason| {
            errors.push(format!("{field}: {reason}"));
            Mode::Broken(reason)
        });
        by_sni.push(Some(&listener.hostname), compiled.len());
        compiled.push(ListenerTls {
            name: listener.name.clone(),
            mode,
        });
    }
    let resolver = Arc::new(SniResolver::new(certs, auto));
    let client_auth = port_client_auth(listeners).unwrap_or_else(|reason| {
        let https = compiled
            .iter_mut()
            .filter(|l| matches!(l.mode, Mode::Https));
        for listener in https {
            errors.push(format!("listener {}: {reason}", listener.name));
            listener.mode = Mode::Broken(reason.clone());
        }
        None
    });
    PortTls {
        listeners: compiled,
        by_sni,
        https: server_config(&resolver, client_auth, &[b"h2", b"http/1.1"]),
        tls: server_config(&resolver, None, &[]),
        tcp,
    }
}

/// The client verifier of a port's HTTPS listeners (the first one's validation: the
/// control plane gives every HTTPS listener of a port the same), `None` without one.
fn port_client_auth(
    listeners: &[(usize, &pb::Listener)],
) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    let validation = listeners
        .iter()
        .filter(|(_, l)| l.protocol() == Protocol::Https)
        .find_map(|(_, l)| l.client_validation.as_ref());
    validation.map(client_verifier).transpose()
}

/// The listener's mode; a terminating one adds its certificate source to `certs`.
fn listener_mode(
    listener: &pb::Listener,
    certs: &mut HostTable<CertSource>,
) -> Result<Mode, String> {
    let terminate =
        listener.protocol() == Protocol::Https || listener.tls_mode() == TlsMode::Terminate;
    if !terminate {
        let routes = L4Routes::compile(&listener.l4_routes)?;
        return Ok(Mode::Passthrough(routes));
    }
    let source = if listener.auto_certificate {
        CertSource::Auto(listener.hostname.clone())
    } else {
        if listener.certificates.is_empty() {
            return Err("no certificate".into());
        }
        let keys = listener
            .certificates
            .iter()
            .map(certified_key)
            .collect::<Result<Vec<_>, _>>()?;
        CertSource::Static(keys)
    };
    let mode = if listener.protocol() == Protocol::Https {
        Mode::Https
    } else {
        Mode::Terminate(L4Routes::compile(&listener.l4_routes)?)
    };
    certs.push(Some(&listener.hostname), source);
    Ok(mode)
}

fn server_config(
    resolver: &Arc<SniResolver>,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[&[u8]],
) -> Terminating {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    let validates_clients = client_auth.is_some();
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(resolver) as Arc<_>);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Stateless resumption: one ticket per handshake, sealed with keys shared by every
    // listener and configuration (a reload keeps tickets valid), nothing stored per client.
    // Not where clients must show a certificate: a resumed session skips client
    // authentication, so a ticket from a port without validation (or from before the CA
    // changed) would let a client in without one. Those configurations keep rustls' own
    // session store, which belongs to this configuration alone.
    if !validates_clients && let Some(ticketer) = ticketer() {
        config.ticketer = ticketer;
        config.send_tls13_tickets = 1;
    }
    // The same configuration (certificates, verifier, session store or ticketer) but for
    // who chooses the cipher suite.
    let mut server_order = config.clone();
    server_order.ignore_client_order = true;
    Terminating {
        server_order: Arc::new(server_order),
        client_order: Arc::new(config),
    }
}

/// aws-lc-rs with `TLS13_AES_128_GCM_SHA256` first: its key schedule and transcript hash are
/// SHA-256, which costs a handshake less than the SHA-384 of `TLS13_AES_256_GCM_SHA384`
/// (rustls clients list that one first), and its records are cheaper to seal.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    let first = aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256.suite();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != first);
    Arc::new(provider)
}

/// The process's session-ticket sealer (keys rotate every few hours); `None` when aws-lc-rs
/// cannot make one, which leaves rustls' stateful resumption.
fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    static TICKETER: std::sync::OnceLock<Option<Arc<dyn rustls::server::ProducesTickets>>> =
        std::sync::OnceLock::new();
    TICKETER
        .get_or_init(|| match aws_lc_rs::Ticketer::new() {
            Ok(ticketer) => Some(ticketer),
            Err(error) => {
                tracing::warn!(%error, "no TLS session tickets; resumption by session cache only");
                None
            }
        })
        .clone()
}

impl PortTls {
    /// The listener for a handshake naming `sni` by hostname; without SNI only a listener
    /// without hostname (a client naming no host must not reach a listener restricted to
    /// one, whose routes and Host check assume it).
    fn listener(&self, sni: Option<&str>) -> Option<&ListenerTls> {
        let index = self.by_sni.select(sni).copied();
        index.and_then(|i| self.listeners.get(i))
    }
}

/// Serves one connection on an HTTPS, TLS or TCP port in the configuration in force.
pub(crate) async fn serve_connection(
    gateway: Gateway,
    port: u16,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let Some(tls) = gateway.config().tls.port(port).cloned() else {
        tracing::debug!(port, %peer, "no TLS or TCP listener on the port; closing");
        return;
    };
    if let Some(routes) = &tls.tcp {
        match routes.select(None) {
            Some(route) => relay(&gateway, port, route, bytes::Bytes::new(), stream, peer).await,
            None => tracing::debug!(port, %peer, "TCP listener without route; closing"),
        }
        return;
    }
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let hello = match tokio::time::timeout_at(deadline, read_client_hello(&mut stream)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(reason)) => {
            tracing::debug!(port, %peer, %reason, "no ClientHello; closing");
            return;
        }
        Err(_) => {
            tracing::debug!(port, %peer, "no ClientHello in time; closing");
            return;
        }
    };
    let Some(listener) = tls.listener(hello.sni.as_deref()) else {
        tracing::debug!(port, %peer, sni = ?hello.sni, "no listener for the server name; closing");
        return;
    };
    match &listener.mode {
        Mode::Broken(reason) => {
            tracing::debug!(port, %peer, listener = %listener.name, %reason, "listener not served; closing");
        }
        Mode::Passthrough(routes) => {
            let Some(route) = routes.select(hello.sni.as_deref()) else {
                tracing::debug!(port, %peer, sni = ?hello.sni, "no TLSRoute for the server name; closing");
                return;
            };
            relay(&gateway, port, route, hello.bytes, stream, peer).await;
        }
        Mode::Https => {
            let client = Client {
                stream,
                peer,
                hello,
                deadline,
            };
            terminate(gateway, port, &tls.https, client, None).await;
        }
        Mode::Terminate(routes) => {
            let client = Client {
                stream,
                peer,
                hello,
                deadline,
            };
            terminate(gateway, port, &tls.tls, client, Some(routes)).await;
        }
    }
}

/// A client connection whose ClientHello was read.
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    hello: Hello,
    /// When the handshake must be complete.
    deadline: Instant,
}

/// Completes the TLS handshake (replaying the ClientHello), then serves HTTP or relays to
/// the TLSRoute (`routes`).
async fn terminate(
    gateway: Gateway,
    port: u16,
    config: &Terminating,
    client: Client,
    routes: Option<&L4Routes>,
) {
    let Client {
        stream,
        peer,
        hello,
        deadline,
    } = client;
    let config = Arc::clone(config.for_client(&hello));
    let accepting = TlsAcceptor::from(config).accept(Rewind::new(hello.bytes, stream));
    let io = match tokio::time::timeout_at(deadline, accepting).await {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => {
            tracing::debug!(port, %peer, sni = ?hello.sni, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(port, %peer, "TLS handshake not completed in time");
            return;
        }
    };
    let Some(routes) = routes else {
        let alpn_h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
        let downstream = Downstream {
            peer,
            sni: hello.sni,
            tls: true,
            alpn_h2,
        };
        super::serve_http(gateway, port, io, downstream).await;
        return;
    };
    match routes.select(hello.sni.as_deref()) {
        Some(route) => relay(&gateway, port, route, bytes::Bytes::new(), io, peer).await,
        None => {
            tracing::debug!(port, %peer, sni = ?hello.sni, "no TLSRoute for the server name; closing");
        }
    }
}
