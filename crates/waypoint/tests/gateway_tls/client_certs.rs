//! Client certificates at the gateway, both ways, over real TLS: an HTTPS port with
//! frontend validation (`spec.tls.frontend`) asks clients for a certificate and checks it
//! against the CA bundle (refusing, or admitting in `AllowInsecureFallback`), and the
//! gateway presents its own client certificate (`spec.tls.backend.clientCertificateRef`)
//! to a BackendTLSPolicy backend that requires one.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_proto::l7::{self as pb, listener::Protocol};

use crate::harness::{Fixture, Net, ServiceSpec, backend, certificate, gateway_resource, until};
use crate::pki::{self, Leaf, TestCa};

const HTTPS: u16 = 8443;
const HOST: &str = "web.example.com";

/// An HTTPS listener on [`HTTPS`] for [`HOST`] routing everything to `api:9443`.
fn listener(serving: &Leaf, validation: Option<pb::ClientValidation>) -> pb::Listener {
    pb::Listener {
        name: "web".into(),
        port: u32::from(HTTPS),
        protocol: Protocol::Https.into(),
        hostname: HOST.into(),
        certificates: vec![certificate("web", serving)],
        client_validation: validation,
        http_routes: vec![pb::Route {
            namespace: "ns".into(),
            name: "to-api".into(),
            rules: vec![pb::Rule {
                backends: vec![backend("api", 9443)],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn validation(ca: &TestCa, insecure_fallback: bool) -> pb::ClientValidation {
    pb::ClientValidation {
        ca_bundle: ca.pem.clone(),
        allow_insecure_fallback: insecure_fallback,
        source: "spec.tls.frontend.default.validation".into(),
    }
}

fn chain_and_key(leaf: &Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(leaf.chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        chain,
        PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
    )
}

/// A client trusting `server_ca`, presenting `client` when asked (if any).
fn client_config(server_ca: &TestCa, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(server_ca.roots());
    let mut config = match client {
        Some(leaf) => {
            let (chain, key) = chain_and_key(leaf);
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTPS request to [`HOST`] through the gateway: the status and body, or the error
/// that ended it (handshake or request).
async fn request(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(StatusCode, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(HOST).unwrap();
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/1.1: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get("/x")
        .header("host", HOST)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// A plain-TLS echo backend `api` on `.1.1:9443` (the gateway reaches it with a
/// BackendTLSPolicy trusting `backend_ca`), requiring a client certificate from
/// `client_ca` when given one.
async fn api_backend(
    net: Net,
    backend_ca: &TestCa,
    client_ca: Option<&TestCa>,
) -> tokio_util::sync::DropGuard {
    let leaf = backend_ca.leaf(&["api.internal"]);
    let mut config = (*pki::server_config(&leaf)).clone();
    if let Some(client_ca) = client_ca {
        let (chain, key) = chain_and_key(&leaf);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(client_ca.roots()),
            provider.clone(),
        )
        .build()
        .unwrap();
        config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let (_, stop) = pki::tls_echo(net.backend(1, 9443), "api", Arc::new(config)).await;
    stop.drop_guard()
}

fn api_service() -> [ServiceSpec; 1] {
    [ServiceSpec {
        name: "api",
        n: 1,
        port: 9443,
    }]
}

fn backend_tls(backend_ca: &TestCa, client: Option<&Leaf>) -> pb::BackendTls {
    pb::BackendTls {
        service: crate::harness::key("api"),
        port: 9443,
        hostname: "api.internal".into(),
        ca_bundle: backend_ca.pem.clone(),
        source: "ns/api-tls".into(),
        client_certificate: client.map(|leaf| certificate("gateway-client", leaf)),
        ..Default::default()
    }
}

/// A gateway on a loopback net of its own with the HTTPS listener for [`HOST`] (serving
/// certificate from `server_ca`) in front of the TLS backend `api` (trusting
/// `backend_ca`).
struct Gateway {
    server_ca: TestCa,
    backend_ca: TestCa,
    resource: pb::Gateway,
    fixture: Fixture,
    addr: SocketAddr,
    _api: tokio_util::sync::DropGuard,
}

impl Gateway {
    /// With `validation` on the listener; the backend requires a client certificate from
    /// `backend_client_ca` when given one.
    async fn start(
        validation: Option<pb::ClientValidation>,
        backend_client_ca: Option<&TestCa>,
    ) -> Self {
        let net = Net(weft_testkit::loopback_net());
        let server_ca = TestCa::new("gateway CA");
        let backend_ca = TestCa::new("backend CA");
        let _api = api_backend(net, &backend_ca, backend_client_ca).await;
        let serving = server_ca.leaf(&[HOST]);
        let mut resource = gateway_resource(vec![listener(&serving, validation)]);
        resource.backend_tls = vec![backend_tls(&backend_ca, None)];
        let fixture = Fixture::start(net, &api_service(), &resource).await;
        Self {
            server_ca,
            backend_ca,
            resource,
            fixture,
            addr: net.gateway(HTTPS),
            _api,
        }
    }

    /// A client trusting the gateway, presenting a certificate from `ca` (if any).
    fn client(&self, ca: Option<&TestCa>) -> Arc<rustls::ClientConfig> {
        let leaf = ca.map(|ca| ca.leaf(&["client.example.com"]));
        client_config(&self.server_ca, leaf.as_ref())
    }
}

#[tokio::test]
async fn frontend_validation_admits_only_certificates_from_the_ca() {
    let client_ca = TestCa::new("client CA");
    let other_ca = TestCa::new("another CA");
    let gateway = Gateway::start(Some(validation(&client_ca, false)), None).await;
    let trusted = gateway.client(Some(&client_ca));
    let (status, body) = until(
        "a client with a certificate from the CA is served",
        || async { request(gateway.addr, trusted.clone()).await.ok() },
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "api http/1.1 /x"));
    let without = request(gateway.addr, gateway.client(None)).await;
    assert!(
        without.is_err(),
        "a client without a certificate is refused: {without:?}"
    );
    let refused = request(gateway.addr, gateway.client(Some(&other_ca))).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA is refused: {refused:?}"
    );
}

#[tokio::test]
async fn insecure_fallback_admits_clients_without_or_with_a_foreign_certificate() {
    let client_ca = TestCa::new("client CA");
    let other_ca = TestCa::new("another CA");
    let gateway = Gateway::start(Some(validation(&client_ca, true)), None).await;
    let clients = [
        ("no certificate", gateway.client(None)),
        (
            "a certificate from the CA",
            gateway.client(Some(&client_ca)),
        ),
        (
            "a certificate from another CA",
            gateway.client(Some(&other_ca)),
        ),
    ];
    for (what, config) in clients {
        let (status, body) = until(what, || async {
            request(gateway.addr, config.clone()).await.ok()
        })
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "api http/1.1 /x"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn the_gateway_presents_its_client_certificate_to_a_backend_that_requires_one() {
    let client_ca = TestCa::new("gateway client CA");
    // Without a client certificate the backend refuses the gateway: 503.
    let mut gateway = Gateway::start(None, Some(&client_ca)).await;
    let (addr, client) = (gateway.addr, gateway.client(None));
    let (status, _) = until("the gateway answers", || async {
        request(addr, client.clone()).await.ok()
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // With `spec.tls.backend.clientCertificateRef`, the backend accepts it.
    let gateway_client = client_ca.leaf(&["gw.ns.example.com"]);
    gateway.resource.backend_tls = vec![backend_tls(&gateway.backend_ca, Some(&gateway_client))];
    gateway.fixture.update(&gateway.resource);
    let body = until(
        "the backend accepts the gateway's client certificate",
        || async {
            let (status, body) = request(addr, client.clone()).await.ok()?;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    assert_eq!(body, "api http/1.1 /x");
}

/// A client session store that counts the TLS 1.3 tickets it hands out for resumption.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    offered: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value);
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name);
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(name, value);
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(name);
        if ticket.is_some() {
            self.offered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        ticket
    }
}

#[tokio::test]
async fn a_session_from_a_port_without_validation_does_not_resume_where_it_is_required() {
    const OPEN: u16 = 8444;
    let client_ca = TestCa::new("client CA");
    let net = Net(weft_testkit::loopback_net());
    let server_ca = TestCa::new("gateway CA");
    let backend_ca = TestCa::new("backend CA");
    let _api = api_backend(net, &backend_ca, None).await;
    let serving = server_ca.leaf(&[HOST]);
    let validated = listener(&serving, Some(validation(&client_ca, false)));
    let open = pb::Listener {
        name: "open".into(),
        port: u32::from(OPEN),
        client_validation: None,
        ..validated.clone()
    };
    let mut resource = gateway_resource(vec![validated, open]);
    resource.backend_tls = vec![backend_tls(&backend_ca, None)];
    let _fixture = Fixture::start(net, &api_service(), &resource).await;
    // One session store for both ports, so a ticket one port issued is offered to the
    // other (same server name).
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        offered: Default::default(),
    });
    let mut client = (*client_config(&server_ca, None)).clone();
    client.resumption = rustls::client::Resumption::store(store.clone());
    let client = Arc::new(client);
    let (status, _) = until("the port without validation serves", || async {
        request(net.gateway(OPEN), client.clone()).await.ok()
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let offered = store.offered.load(std::sync::atomic::Ordering::SeqCst);
    let without = request(net.gateway(HTTPS), client).await;
    assert_eq!(
        store.offered.load(std::sync::atomic::Ordering::SeqCst),
        offered + 1,
        "the client offered the other port's ticket (else this test shows nothing)"
    );
    assert!(
        without.is_err(),
        "a resumed session must not stand in for a client certificate: {without:?}"
    );
}
