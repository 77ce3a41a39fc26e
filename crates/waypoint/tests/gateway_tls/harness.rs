//! Fixtures of the gateway TLS tests: a loopback /16 per test, an in-process delta xDS
//! server publishing the workload API and the `weft.l7.v1.Gateway` resource `ns/gw`, the
//! gateway started with `weft_waypoint::gateway::run` on `.0.1`, and backend services
//! whose endpoints are outside the mesh (plain TCP on `.1.x`).

#![allow(dead_code)] // each test uses a subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_stream::wrappers::TcpListenerStream;
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider, TrustBundle};
use weft_node::process::XdsSource;
use weft_proto::l7 as pb;
use weft_proto::workload::{Address, TunnelProtocol};
use weft_proto::{ADDRESS_TYPE_URL, GATEWAY_TYPE_URL, pack_any};
use weft_upstream::testing as wl;
use weft_waypoint::gateway::{GatewayListen, GatewayProcess, RunningGateway};
use weft_waypoint::{Role, WaypointOptions};
use weft_xds::{AllowAnonymous, ResourcePublisher, ServerConfig, XdsResource, XdsServer};

pub const NS: &str = "ns";
pub const WAIT: Duration = Duration::from_secs(10);

/// A loopback /16: `.0.1` the gateway, `.0.3` the xDS server, `.1.x` backends, `.2.x` VIPs.
#[derive(Debug, Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    pub fn ip(self, third: u8, fourth: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, third, fourth)
    }
    pub fn gateway(self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(0, 1)), port)
    }
    pub fn backend(self, n: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(1, n)), port)
    }
}

/// A backend service `name` (VIP `.2.n`, port `port` -> the same target port) whose one
/// endpoint `.1.n` is outside the mesh.
pub struct ServiceSpec {
    pub name: &'static str,
    pub n: u8,
    pub port: u16,
}

/// The key of service `name`.
pub fn key(name: &str) -> String {
    format!("{NS}/{name}.{NS}.svc.cluster.local")
}

/// A weighted backend reference to `name`'s `port`.
pub fn backend(name: &str, port: u16) -> pb::Backend {
    pb::Backend {
        service: key(name),
        port: u32::from(port),
        weight: 1,
        ..Default::default()
    }
}

/// An L4 route `name` for `hostnames` to `backends`.
pub fn l4_route(name: &str, hostnames: &[&str], backends: Vec<pb::Backend>) -> pb::L4Route {
    pb::L4Route {
        namespace: NS.into(),
        name: name.into(),
        created: Some(1),
        hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
        backends,
    }
}

/// A certificate message from a test leaf.
pub fn certificate(source: &str, leaf: &crate::pki::Leaf) -> pb::Certificate {
    pb::Certificate {
        source: format!("{NS}/{source}"),
        cert_chain: leaf.chain.clone(),
        private_key: leaf.key.clone(),
    }
}

/// The Gateway resource `ns/gw` with `listeners`.
pub fn gateway_resource(listeners: Vec<pb::Listener>) -> pb::Gateway {
    pb::Gateway {
        namespace: NS.into(),
        name: "gw".into(),
        listeners,
        ..Default::default()
    }
}

pub struct Fixture {
    pub net: Net,
    /// The mesh CA (the gateway's certificates, auto-certificates included, chain to it).
    pub ca: Arc<CertificateAuthority>,
    pub publisher: ResourcePublisher,
    pub gateway: RunningGateway,
}

impl Fixture {
    /// Starts the xDS server and the gateway with `resource`, and waits until every
    /// listener port is bound.
    pub async fn start(net: Net, services: &[ServiceSpec], resource: &pb::Gateway) -> Self {
        Self::start_with_certs(net, services, resource, CertManagerConfig::default()).await
    }

    /// [`Fixture::start`] with the gateway's certificate settings (lifetime asked of the CA,
    /// for its own and its auto-certificates).
    pub async fn start_with_certs(
        net: Net,
        services: &[ServiceSpec],
        resource: &pb::Gateway,
        certs: CertManagerConfig,
    ) -> Self {
        let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("CA"));
        let trust = TrustBundle::new("cluster.local", [ca.root().clone()]).expect("trust");
        let mut registry = Registry::default();
        let (server, publisher) =
            XdsServer::new(ServerConfig::default(), AllowAnonymous, &mut registry);
        let listener = tokio::net::TcpListener::bind((net.ip(0, 3), 0))
            .await
            .unwrap();
        let xds_addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder().add_service(server.service());
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        publisher.replace(ADDRESS_TYPE_URL, addresses(net, services));
        publish(&publisher, resource);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{xds_addr}"))
            .unwrap()
            .connect_lazy();
        let process = GatewayProcess {
            options: WaypointOptions {
                namespace: NS.into(),
                name: "gw".into(),
                service_account: "gw-weft".into(),
                role: Role::Gateway,
                ..WaypointOptions::default()
            },
            listen: GatewayListen {
                ip: IpAddr::V4(net.ip(0, 1)),
                metrics: Some(SocketAddr::new(IpAddr::V4(net.ip(0, 1)), 0)),
                readiness: None,
                admin: None,
            },
            xds: XdsSource {
                channel,
                token: None,
                cluster_id: None,
            },
            ca: Arc::new(LocalCaProvider::new(Arc::clone(&ca))),
            trust,
            certs,
            tracer: None,
        };
        let gateway = weft_waypoint::gateway::run(process)
            .await
            .expect("gateway starts");
        let fixture = Self {
            net,
            ca,
            publisher,
            gateway,
        };
        fixture.wait_ready().await;
        fixture
    }

    /// Waits until the gateway is configured and has bound every listener port.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.gateway.is_ready() {
            assert!(tokio::time::Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes a new version of the Gateway resource.
    pub fn update(&self, resource: &pb::Gateway) {
        publish(&self.publisher, resource);
    }
}

fn publish(publisher: &ResourcePublisher, resource: &pb::Gateway) {
    let name = format!("{}/{}", resource.namespace, resource.name);
    publisher.replace(
        GATEWAY_TYPE_URL,
        [XdsResource::new(
            name,
            vec![],
            pack_any(GATEWAY_TYPE_URL, resource),
        )],
    );
}

fn addresses(net: Net, services: &[ServiceSpec]) -> Vec<XdsResource> {
    let mut resources: Vec<(String, Address)> = Vec::new();
    for spec in services {
        let port = u32::from(spec.port);
        let vip = net.ip(2, spec.n).to_string();
        resources.push(wl::svc_address(wl::service(
            NS,
            spec.name,
            &vip,
            &[(port, port)],
        )));
        let name = format!("{}-0", spec.name);
        let mut pod = wl::pod(NS, &name, &net.ip(1, spec.n).to_string());
        pod.tunnel_protocol = TunnelProtocol::None.into();
        resources.push(wl::wl_address(wl::member(
            pod,
            &key(spec.name),
            &[(port, port)],
        )));
    }
    resources
        .into_iter()
        .map(|(name, a)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &a)))
        .collect()
}

/// Polls `check` until it holds (or panics after [`WAIT`]).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `attempt` until it yields a value (or panics after [`WAIT`]).
pub async fn until<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
