//! The gateway test fixture: the waypoint harness's control plane pieces and backends, a
//! plain (non-HBONE) backend, optionally a real waypoint `ns/wp` (on `<net>.0.1`) for
//! service `echo`, and the gateway `ns/gw` of class `weft` running as `gw-weft`, its
//! listener ports bound on `<net>.0.4`.

#![allow(dead_code)] // each test uses a subset

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use http::Request;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider, TrustBundle};
use weft_node::process::XdsSource;
use weft_proto::l7 as pb;
use weft_proto::{ADDRESS_TYPE_URL, GATEWAY_TYPE_URL, pack_any};
use weft_upstream::testing as wl;
use weft_waypoint::gateway::{GatewayListen, GatewayProcess, RunningGateway};
use weft_waypoint::{Role, WaypointOptions};
use weft_xds::{AllowAnonymous, ResourcePublisher, ServerConfig, XdsResource, XdsServer};

use crate::harness::{
    Answer, Backend, BackendSpec, Behaviour, ClientBody, NS, Net, addresses, empty, eventually,
    key, options, publish_waypoint, read, serve_backend, serve_echo, start_waypoint,
    waypoint_resource,
};
use weft_waypoint::OutlierConfig;

/// The port of the test's HTTP listeners.
pub const PORT: u16 = 8000;
/// The gateway's identity.
pub const GATEWAY_ID: &str = "spiffe://cluster.local/ns/ns/sa/gw-weft";

/// What a gateway test holds.
pub struct Fixture {
    pub net: Net,
    /// The mesh CA and trust bundle (for more backends).
    pub ca: Arc<CertificateAuthority>,
    pub trust: TrustBundle,
    pub publisher: ResourcePublisher,
    pub backends: Vec<Arc<Backend>>,
    pub gateway: RunningGateway,
    /// The xDS server's metrics (NACK counts).
    pub xds_metrics: Registry,
    servers: Servers,
    /// The waypoint of service `echo`, when started.
    pub waypoints: Vec<weft_waypoint::RunningWaypoint>,
}

/// Backend servers, stopped when dropped.
pub struct Servers(pub Vec<CancellationToken>);

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &self.0 {
            server.cancel();
        }
    }
}

impl Fixture {
    /// Starts the control plane, the mesh backends `specs` (services VIP `.2.<n>` in order
    /// of first appearance), a plain backend `plain-a` of service `plain`, and the gateway;
    /// publishes `resource` when given.
    pub async fn start(specs: Vec<BackendSpec>, resource: Option<pb::Gateway>) -> Self {
        Self::start_with(specs, resource, false).await
    }

    /// [`Fixture::start`]; with `waypoint`, service `echo` (the first) gets the waypoint
    /// `ns/wp`, started for real.
    pub async fn start_with(
        specs: Vec<BackendSpec>,
        resource: Option<pb::Gateway>,
        waypoint: bool,
    ) -> Self {
        let net = Net::next();
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
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let backend = new_backend(spec.name, net.ip(1, u8::try_from(index + 1).unwrap()));
            servers.push(serve_backend(&ca, &trust, Arc::clone(&backend)).await);
            backends.push(backend);
        }
        let plain = new_backend("plain-a", net.ip(3, 1));
        servers.push(serve_plain(Arc::clone(&plain)).await);
        backends.push(plain);
        let mut resources = addresses(net, &specs);
        resources.extend(plain_addresses(net));
        resources.push(own_workload(net));
        let mut waypoints = Vec::new();
        if waypoint {
            let replaced = waypoint_addresses(net);
            resources.retain(|r| replaced.iter().all(|n| n.name != r.name));
            resources.extend(replaced);
            let bound = waypoint_resource(&[("echo", vec![])], vec![]);
            publish_waypoint(&publisher, &bound);
            let options = options(OutlierConfig::default());
            waypoints.push(start_waypoint(net, &ca, &trust, xds_addr, options, None).await);
        }
        publisher.replace(ADDRESS_TYPE_URL, resources);
        if let Some(resource) = &resource {
            publish(&publisher, resource);
        }
        let gateway = start_gateway(net, &ca, &trust, xds_addr).await;
        let fixture = Self {
            net,
            ca,
            trust,
            publisher,
            backends,
            gateway,
            xds_metrics: registry,
            servers: Servers(servers),
            waypoints,
        };
        if resource.is_some() {
            fixture.wait_ready().await;
        }
        fixture
    }

    /// The listener address of `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(gateway_ip(self.net)), port)
    }

    pub fn backend(&self, name: &str) -> &Arc<Backend> {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .expect("backend")
    }

    /// Publishes a new Gateway resource.
    pub fn publish(&self, resource: &pb::Gateway) {
        publish(&self.publisher, resource);
    }

    /// Waits for `/healthz/ready` to answer 200.
    pub async fn wait_ready(&self) {
        let addr = self.gateway.metrics.expect("metrics").to_string();
        eventually("gateway ready", || {
            let addr = addr.clone();
            async move {
                matches!(
                    weft_serve::get(&addr, "/healthz/ready").await,
                    Ok((http::StatusCode::OK, _))
                )
            }
        })
        .await;
    }

    /// The xDS server's NACKs of Gateway resources (from its metrics).
    pub fn gateway_nacks(&self) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.xds_metrics).unwrap();
        text.lines()
            .filter(|line| line.contains("nack") && line.contains("weft.l7.v1.Gateway"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let addr = self.gateway.metrics.expect("metrics").to_string();
        let (_, body) = weft_serve::get(&addr, "/metrics").await.expect("scrape");
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// A new HTTP/1.1 client connection to listener `port`.
    pub async fn h1(&self, port: u16) -> hyper::client::conn::http1::SendRequest<ClientBody> {
        let stream = tokio::net::TcpStream::connect(self.addr(port))
            .await
            .expect("connect to the gateway");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection.with_upgrades());
        sender
    }
}

/// Where the gateway listens (`.0.1` is the waypoint's, `.0.2` the client's).
pub fn gateway_ip(net: Net) -> std::net::Ipv4Addr {
    net.ip(0, 4)
}

/// Service `echo` (VIP `.2.1`) with the waypoint `ns/wp` at `.0.1`, and the waypoint's
/// workload; replaces the harness's record of `echo` (same resource name).
fn waypoint_addresses(net: Net) -> Vec<XdsResource> {
    use weft_proto::workload::{GatewayAddress, NetworkAddress, gateway_address};
    let waypoint_ip = net.ip(0, 1);
    let mut service = wl::service(NS, "echo", &net.vip(1).ip().to_string(), &[(80, 8080)]);
    service.waypoint = Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Address(NetworkAddress {
            network: String::new(),
            address: wl::ip_bytes(&waypoint_ip.to_string()),
            ..Default::default()
        })),
        hbone_mtls_port: 15008,
    });
    let mut pod = wl::pod(NS, "wp-0", &waypoint_ip.to_string());
    pod.service_account = "wp".into();
    [wl::svc_address(service), wl::wl_address(pod)]
        .into_iter()
        .map(|(name, address)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &address)))
        .collect()
}

pub fn new_backend(name: &str, ip: std::net::Ipv4Addr) -> Arc<Backend> {
    Arc::new(Backend {
        name: name.into(),
        ip,
        requests: AtomicUsize::new(0),
        first_bytes: Notify::new(),
        in_flight: AtomicUsize::new(0),
        behaviour: Behaviour::default(),
    })
}

/// The echo app on plain TCP `<ip>:8080` (no HBONE): `x-peer` says `none`.
pub async fn serve_plain(backend: Arc<Backend>) -> CancellationToken {
    let listener = tokio::net::TcpListener::bind((backend.ip, 8080))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        weft_serve::accept_until(&listener, token.cancelled(), "plain", |stream, _| {
            tokio::spawn(serve_echo(Arc::clone(&backend), "none".into(), stream));
        })
        .await;
    });
    stop
}

/// Service `plain` (VIP `.2.9`) with one workload that does not speak HBONE.
fn plain_addresses(net: Net) -> Vec<XdsResource> {
    let service = wl::service(NS, "plain", &net.ip(2, 9).to_string(), &[(80, 8080)]);
    let mut pod = wl::pod(NS, "plain-a", &net.ip(3, 1).to_string());
    pod.tunnel_protocol = weft_proto::workload::TunnelProtocol::None.into();
    let member = wl::member(pod, &key("plain"), &[(80, 8080)]);
    [wl::svc_address(service), wl::wl_address(member)]
        .into_iter()
        .map(|(name, address)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &address)))
        .collect()
}

/// The gateway pod's own workload (service account `gw-weft`), for the source labels.
fn own_workload(net: Net) -> XdsResource {
    let mut pod = wl::pod(NS, "gw-weft-0", &gateway_ip(net).to_string());
    pod.service_account = "gw-weft".into();
    pod.workload_name = "gw-weft".into();
    let (name, address) = wl::wl_address(pod);
    XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &address))
}

pub fn publish(publisher: &ResourcePublisher, resource: &pb::Gateway) {
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

async fn start_gateway(
    net: Net,
    ca: &Arc<CertificateAuthority>,
    trust: &TrustBundle,
    xds_addr: SocketAddr,
) -> RunningGateway {
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
            ip: IpAddr::V4(gateway_ip(net)),
            metrics: Some(SocketAddr::new(IpAddr::V4(gateway_ip(net)), 0)),
            readiness: None,
            admin: Some(SocketAddr::new(IpAddr::V4(gateway_ip(net)), 0)),
        },
        xds: XdsSource {
            channel,
            token: None,
            cluster_id: None,
        },
        ca: Arc::new(LocalCaProvider::new(Arc::clone(ca))),
        trust: trust.clone(),
        certs: CertManagerConfig::default(),
        tracer: None,
    };
    weft_waypoint::gateway::run(process)
        .await
        .expect("gateway starts")
}

/// The Gateway `ns/gw` with `listeners`.
pub fn gateway(listeners: Vec<pb::Listener>) -> pb::Gateway {
    pb::Gateway {
        namespace: NS.into(),
        name: "gw".into(),
        listeners,
        ..Default::default()
    }
}

/// An HTTP listener.
pub fn listener(name: &str, port: u16, hostname: &str, routes: Vec<pb::Route>) -> pb::Listener {
    pb::Listener {
        name: name.into(),
        port: u32::from(port),
        protocol: pb::listener::Protocol::Http.into(),
        hostname: hostname.into(),
        http_routes: routes,
        ..Default::default()
    }
}

pub fn route(name: &str, rules: Vec<pb::Rule>) -> pb::Route {
    pb::Route {
        namespace: NS.into(),
        name: name.into(),
        rules,
        ..Default::default()
    }
}

/// A rule sending everything to `backends`.
pub fn to_all(backends: Vec<pb::Backend>) -> pb::Rule {
    pb::Rule {
        backends,
        ..Default::default()
    }
}

pub fn to(service: &str, weight: u32) -> pb::Backend {
    pb::Backend {
        service: key(service),
        port: 80,
        weight,
        ..Default::default()
    }
}

pub fn path_prefix(prefix: &str) -> pb::Match {
    pb::Match {
        path: Some(pb::PathMatch {
            r#type: pb::MatchType::Prefix.into(),
            value: prefix.into(),
        }),
        ..Default::default()
    }
}

/// A GET of `path` for `host` with extra `headers`.
pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<ClientBody> {
    let mut builder = Request::get(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

/// Sends on an HTTP/1.1 connection and reads the whole answer.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Answer {
    sender.ready().await.expect("connection ready");
    read(sender.send_request(request).await.expect("response")).await
}
