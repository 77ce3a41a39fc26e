//! The connector end to end on loopback: a service VIP resolves to an endpoint and the
//! connection is made over real HBONE (weft-identity CA, production mTLS configs, an
//! HBONE server on an ephemeral port standing in for the endpoint's :15008), or over plain
//! TCP for an endpoint outside the mesh.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use weft_hbone::{HboneServer, InboundDecision, InboundRequest, PoolConfig, ServerOptions};
use weft_identity::ca::csr::verify_csr_pem;
use weft_identity::{
    CertificateAuthority, SpiffeId, TrustBundle, WorkloadCert, client_config, key_and_csr,
    server_config,
};
use weft_proto::workload::TunnelProtocol;
use weft_upstream::testing::{Index, member, pod, service, svc_address, wl_address};
use weft_upstream::{
    Client, ClientError, Directory, Route, Upstream, UpstreamConnection, UpstreamError,
};

const MESH_KEY: &str = "shop/web.shop.svc.cluster.local";
const PLAIN_KEY: &str = "legacy/db.legacy.svc.cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/src/sa/client";

struct Ca {
    ca: CertificateAuthority,
    trust: TrustBundle,
}

impl Ca {
    fn new() -> Self {
        let ca = CertificateAuthority::generate_in_memory().unwrap();
        let trust = TrustBundle::new("cluster.local", [ca.root().clone()]).unwrap();
        Self { ca, trust }
    }

    fn cert(&self, identity: &SpiffeId) -> WorkloadCert {
        let (key, csr_pem) = key_and_csr(identity).unwrap();
        let spki = verify_csr_pem(&csr_pem).unwrap().spki_der;
        let validity = std::time::Duration::from_secs(600);
        let chain = self.ca.sign_workload(&spki, identity, validity).unwrap();
        WorkloadCert::from_ca_response(identity.clone(), key, &chain.pem).unwrap()
    }
}

/// A client presenting its own certificate (as a waypoint does).
struct TestClient {
    trust: TrustBundle,
    identity: SpiffeId,
    cert: WorkloadCert,
}

impl Client for TestClient {
    fn identity(&self) -> Option<&SpiffeId> {
        Some(&self.identity)
    }

    fn source_ip(&self) -> std::net::IpAddr {
        [127, 0, 0, 1].into()
    }

    async fn tls(&self, peer: &SpiffeId) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        Ok(client_config(&self.cert, &self.trust, [peer.clone()])?)
    }
}

/// An echo server on `ip`, port chosen by the kernel.
async fn echo(ip: &str) -> SocketAddr {
    let ip: std::net::IpAddr = ip.parse().expect("echo address");
    weft_testkit::tcp_echo(SocketAddr::new(ip, 0)).await.0
}

/// An HBONE server with `identity`'s certificate that forwards each stream to its
/// authority and reports the authority it was asked for.
async fn hbone_server(
    ca: &Ca,
    identity: &SpiffeId,
    seen: tokio::sync::mpsc::UnboundedSender<SocketAddr>,
    stop: CancellationToken,
) -> SocketAddr {
    let tls = server_config(&ca.cert(identity), &ca.trust).unwrap();
    let handler = move |request: InboundRequest| {
        let _ = seen.send(request.authority);
        async move { InboundDecision::accept(TcpStream::connect(request.authority).await.unwrap()) }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HboneServer::new(tls, handler, ServerOptions::default());
    tokio::spawn(async move { server.serve(listener, stop).await });
    addr
}

/// A mesh service (VIP 10.96.0.10:80 → HBONE pod 127.0.0.1:<mesh port>) and a service
/// outside the mesh (VIP 10.96.0.20:5432 → plain pod 127.0.0.2:<plain port>).
fn index(mesh_port: u16, plain_port: u16) -> Index {
    let web = member(pod("shop", "web-1", "127.0.0.1"), MESH_KEY, &[]);
    let mut db = member(pod("legacy", "db-1", "127.0.0.2"), PLAIN_KEY, &[]);
    db.tunnel_protocol = TunnelProtocol::None.into();
    Index::new([
        svc_address(service(
            "shop",
            "web",
            "10.96.0.10",
            &[(80, mesh_port.into())],
        )),
        svc_address(service(
            "legacy",
            "db",
            "10.96.0.20",
            &[(5432, plain_port.into())],
        )),
        wl_address(web),
        wl_address(db),
    ])
}

async fn round_trip(connection: UpstreamConnection) {
    let mut buf = [0u8; 5];
    match connection {
        UpstreamConnection::Hbone(mut stream) => {
            stream.write_all(b"hello").await.unwrap();
            stream.read_exact(&mut buf).await.unwrap();
        }
        UpstreamConnection::Tcp(mut stream) => {
            stream.write_all(b"hello").await.unwrap();
            stream.read_exact(&mut buf).await.unwrap();
        }
    }
    assert_eq!(&buf, b"hello");
}

/// Echo pods, an HBONE server with `server_id`'s certificate for the mesh pod, the state
/// and the connector.
struct Setup {
    client: TestClient,
    mesh_echo: SocketAddr,
    plain_echo: SocketAddr,
    /// Authorities the HBONE server was asked for.
    seen: tokio::sync::mpsc::UnboundedReceiver<SocketAddr>,
    stop: CancellationToken,
    state: Index,
    upstream: Upstream,
}

async fn setup(server_id: &str) -> Setup {
    let ca = Ca::new();
    let identity: SpiffeId = CLIENT_ID.parse().unwrap();
    let (mesh_echo, plain_echo) = (echo("127.0.0.1").await, echo("127.0.0.2").await);
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let tunnel = hbone_server(&ca, &server_id.parse().unwrap(), seen_tx, stop.clone()).await;
    Setup {
        client: TestClient {
            cert: ca.cert(&identity),
            trust: ca.trust.clone(),
            identity,
        },
        state: index(mesh_echo.port(), plain_echo.port()),
        upstream: Upstream::new(PoolConfig::default(), tunnel.port(), ""),
        mesh_echo,
        plain_echo,
        seen,
        stop,
    }
}

#[tokio::test]
async fn a_service_vip_reaches_its_endpoint_over_hbone_or_plain_tcp() {
    let web_id = "spiffe://cluster.local/ns/shop/sa/web";
    let Setup {
        client,
        mesh_echo,
        plain_echo,
        mut seen,
        stop,
        state,
        upstream,
    } = setup(web_id).await;

    let route = upstream
        .route(&state, None, "10.96.0.10:80".parse().unwrap())
        .unwrap();
    let Route::Hbone {
        authority, peer, ..
    } = &route
    else {
        panic!("{route:?}")
    };
    assert_eq!(*authority, mesh_echo, "authority is <pod IP>:<target port>");
    assert_eq!(peer.identity().to_string(), web_id);
    round_trip(upstream.connect(&route, &client).await.unwrap()).await;
    assert_eq!(seen.recv().await, Some(mesh_echo));

    let route = upstream
        .route(&state, None, "10.96.0.20:5432".parse().unwrap())
        .unwrap();
    let Route::Plain { addr, .. } = &route else {
        panic!("{route:?}")
    };
    assert_eq!(*addr, plain_echo);
    round_trip(upstream.connect(&route, &client).await.unwrap()).await;
    assert_eq!(upstream.pool_stats().streams_opened, 1);
    stop.cancel();
}

#[tokio::test]
async fn hbone_expects_the_endpoints_identity() {
    let setup = setup("spiffe://cluster.local/ns/shop/sa/other").await;
    let service = setup.state.service_by_key(MESH_KEY).unwrap().clone();
    let port = service.port(80).unwrap();
    let route = setup.upstream.service_route(service, port, None).unwrap();
    let error = setup
        .upstream
        .connect(&route, &setup.client)
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Tunnel { .. }), "{error}");
    assert!(error.is_connect_failure());
    setup.stop.cancel();
}
