//! Test fixtures: a loopback /16 per test, an in-process delta xDS server publishing the
//! workload API and the Waypoint resource, the waypoint started with `weft_waypoint::run`,
//! backend workloads (an HBONE listener on `<ip>:15008` terminating into a hyper echo
//! server) and a client workload opening HBONE to the waypoint with its own certificate.

#![allow(dead_code)] // each test uses a subset

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use weft_hbone::{
    ConnectRequest, HboneServer, HboneStream, InboundDecision, InboundRequest, Pool, PoolConfig,
    ServerOptions, TunnelTarget,
};
use weft_identity::{
    CertManager, CertManagerConfig, CertificateAuthority, LocalCaProvider, SpiffeId, TrustBundle,
};
use weft_node::process::XdsSource;
use weft_proto::l7 as pb;
use weft_proto::security;
use weft_proto::workload::{Address, Service, Workload};
use weft_proto::{ADDRESS_TYPE_URL, WAYPOINT_TYPE_URL, pack_any};
use weft_upstream::testing as wl;
use weft_waypoint::{
    ListenAddrs, OutlierConfig, RunningWaypoint, WaypointOptions, WaypointProcess,
};
use weft_xds::{AllowAnonymous, ResourcePublisher, ServerConfig, XdsResource, XdsServer};

pub const WAIT: Duration = Duration::from_secs(10);
pub const NS: &str = "ns";
pub const TARGET_PORT: u16 = 8080;
pub const SERVICE_PORT: u16 = 80;

pub type ClientBody = BoxBody<Bytes, std::io::Error>;

/// A loopback /16: `.0.1` the waypoint, `.0.2` the client, `.1.x` backends, `.2.x` VIPs.
#[derive(Debug, Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    pub fn next() -> Self {
        Self(weft_testkit::loopback_net())
    }
    pub fn ip(self, third: u8, fourth: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, third, fourth)
    }
    pub fn waypoint(self) -> Ipv4Addr {
        self.ip(0, 1)
    }
    pub fn client(self) -> Ipv4Addr {
        self.ip(0, 2)
    }
    pub fn vip(self, n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip(2, n)), SERVICE_PORT)
    }
}

/// The key of service `name` in the test namespace.
pub fn key(name: &str) -> String {
    format!("{NS}/{name}.{NS}.svc.cluster.local")
}

/// How a backend answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Answer every request with this status.
    pub fail: Option<u16>,
}

/// A backend workload: counts its requests.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub ip: Ipv4Addr,
    pub requests: AtomicUsize,
    /// Notified when a request body's first bytes arrive.
    pub first_bytes: Notify,
    /// Requests being answered now (a request whose caller went away is dropped).
    pub in_flight: AtomicUsize,
    pub behaviour: Behaviour,
}

impl Backend {
    /// A backend at `ip` that has answered nothing yet.
    pub fn new(name: &str, ip: Ipv4Addr, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            ip,
            requests: AtomicUsize::new(0),
            first_bytes: Notify::new(),
            in_flight: AtomicUsize::new(0),
            behaviour,
        })
    }
}

/// What a test's mesh holds.
pub struct Mesh {
    pub net: Net,
    pub ca: Arc<CertificateAuthority>,
    pub trust: TrustBundle,
    pub publisher: ResourcePublisher,
    pub xds_addr: SocketAddr,
    pub backends: Vec<Arc<Backend>>,
    pub waypoint: RunningWaypoint,
    servers: Vec<CancellationToken>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for server in &self.servers {
            server.cancel();
        }
    }
}

/// A backend to start: name, service it belongs to, behaviour.
pub struct BackendSpec {
    pub name: &'static str,
    pub service: &'static str,
    pub behaviour: Behaviour,
}

pub fn backend(name: &'static str, service: &'static str) -> BackendSpec {
    BackendSpec {
        name,
        service,
        behaviour: Behaviour::default(),
    }
}

/// The Waypoint resource binding `services` (HTTP on port 80, each with `routes`).
pub fn waypoint_resource(
    services: &[(&str, Vec<pb::Route>)],
    policies: Vec<pb::Policy>,
) -> pb::Waypoint {
    pb::Waypoint {
        namespace: NS.into(),
        name: "wp".into(),
        services: services
            .iter()
            .map(|(name, routes)| pb::Service {
                key: key(name),
                namespace: NS.into(),
                name: (*name).into(),
                hostname: format!("{name}.{NS}.svc.cluster.local"),
                ports: vec![pb::ServicePort {
                    port: u32::from(SERVICE_PORT),
                    target_port: u32::from(TARGET_PORT),
                    protocol: pb::Protocol::Detect.into(),
                    name: "http".into(),
                }],
                routes: routes.clone(),
            })
            .collect(),
        policies,
        ..Default::default()
    }
}

impl Mesh {
    /// Starts the control plane, backends and waypoint. Services are numbered in order of
    /// first appearance in `backends` (VIP `.2.<n+1>`).
    pub async fn start(backends: Vec<BackendSpec>, resource: pb::Waypoint) -> Self {
        Self::start_with(backends, resource, OutlierConfig::default()).await
    }

    pub async fn start_with(
        specs: Vec<BackendSpec>,
        resource: pb::Waypoint,
        outlier: OutlierConfig,
    ) -> Self {
        Self::start_traced(specs, resource, outlier, None).await
    }

    /// [`Mesh::start_with`] with a tracing hook in the waypoint.
    pub async fn start_traced(
        specs: Vec<BackendSpec>,
        resource: pb::Waypoint,
        outlier: OutlierConfig,
        tracer: Option<Arc<dyn weft_waypoint::Tracer>>,
    ) -> Self {
        Self::start_with_options(specs, resource, options(outlier), tracer).await
    }

    /// [`Mesh::start_traced`] with the waypoint's settings given whole (see [`options`]).
    pub async fn start_with_options(
        specs: Vec<BackendSpec>,
        resource: pb::Waypoint,
        options: WaypointOptions,
        tracer: Option<Arc<dyn weft_waypoint::Tracer>>,
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
        let mut mesh_backends = Vec::new();
        let mut servers = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let ip = net.ip(1, u8::try_from(index + 1).unwrap());
            let backend = Backend::new(spec.name, ip, spec.behaviour);
            servers.push(serve_backend(&ca, &trust, Arc::clone(&backend)).await);
            mesh_backends.push(backend);
        }
        publisher.replace(ADDRESS_TYPE_URL, addresses(net, &specs));
        publish_waypoint(&publisher, &resource);
        let waypoint = start_waypoint(net, &ca, &trust, xds_addr, options, tracer).await;
        wait_ready(&waypoint).await;
        Self {
            net,
            ca,
            trust,
            publisher,
            xds_addr,
            backends: mesh_backends,
            waypoint,
            servers,
        }
    }

    pub fn backend(&self, name: &str) -> &Arc<Backend> {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .expect("backend")
    }

    /// The client workload's HBONE connection to the waypoint.
    pub async fn client(&self) -> Client {
        self.client_to(&self.waypoint).await
    }

    /// The client workload's HBONE connection to `waypoint`.
    pub async fn client_to(&self, waypoint: &RunningWaypoint) -> Client {
        self.client_as(waypoint, NS).await
    }

    /// An HBONE connection to the waypoint from a caller whose identity is service account
    /// `client` of `namespace` (from the client's address).
    pub async fn client_in(&self, namespace: &str) -> Client {
        self.client_as(&self.waypoint, namespace).await
    }

    async fn client_as(&self, waypoint: &RunningWaypoint, namespace: &str) -> Client {
        let id = SpiffeId::new("cluster.local", namespace, "client").unwrap();
        let manager = CertManager::new(
            Arc::new(LocalCaProvider::new(Arc::clone(&self.ca))),
            CertManagerConfig::default(),
        );
        let cert = manager.get(&id).await.expect("client certificate");
        let tls = weft_identity::client_config(
            &cert,
            &self.trust,
            [waypoint.waypoint.identity().clone()],
        )
        .expect("client TLS");
        let target = TunnelTarget {
            local_ip: Some(IpAddr::V4(self.net.client())),
            ..TunnelTarget::new(waypoint.addrs.hbone, tls)
        };
        Client {
            pool: Pool::new(PoolConfig::default()),
            target,
        }
    }

    /// The waypoint's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let addr = self.waypoint.addrs.metrics.expect("metrics").to_string();
        let (status, body) = weft_serve::get(&addr, "/metrics").await.expect("scrape");
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// The workload API of `specs` (services numbered by first appearance) and the client.
pub fn addresses(net: Net, specs: &[BackendSpec]) -> Vec<XdsResource> {
    let mut services: Vec<&str> = Vec::new();
    for spec in specs {
        if !services.contains(&spec.service) {
            services.push(spec.service);
        }
    }
    let mut resources: Vec<(String, Address)> = services
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let vip = net.vip(u8::try_from(i + 1).unwrap()).ip().to_string();
            let service: Service = wl::service(NS, name, &vip, &[(80, 8080)]);
            wl::svc_address(service)
        })
        .collect();
    for (index, spec) in specs.iter().enumerate() {
        let ip = net.ip(1, u8::try_from(index + 1).unwrap()).to_string();
        let mut pod: Workload = wl::pod(NS, spec.name, &ip);
        pod.service_account = "echo".into();
        resources.push(wl::wl_address(wl::member(
            pod,
            &key(spec.service),
            &[(80, 8080)],
        )));
    }
    let client = wl::pod(NS, "client", &net.client().to_string());
    resources.push(wl::wl_address(client));
    resources
        .into_iter()
        .map(|(name, address)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &address)))
        .collect()
}

pub fn publish_waypoint(publisher: &ResourcePublisher, resource: &pb::Waypoint) {
    let name = format!("{}/{}", resource.namespace, resource.name);
    publisher.replace(
        WAYPOINT_TYPE_URL,
        [XdsResource::new(
            name,
            vec![],
            pack_any(WAYPOINT_TYPE_URL, resource),
        )],
    );
}

/// The test waypoint `ns/wp`'s settings.
pub fn options(outlier: OutlierConfig) -> WaypointOptions {
    WaypointOptions {
        namespace: NS.into(),
        name: "wp".into(),
        outlier,
        ..WaypointOptions::default()
    }
}

/// Starts waypoint `ns/wp` on `net` fed by the xDS server at `xds_addr`.
pub async fn start_waypoint(
    net: Net,
    ca: &Arc<CertificateAuthority>,
    trust: &TrustBundle,
    xds_addr: SocketAddr,
    options: WaypointOptions,
    tracer: Option<Arc<dyn weft_waypoint::Tracer>>,
) -> RunningWaypoint {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{xds_addr}"))
        .unwrap()
        .connect_lazy();
    let process = WaypointProcess {
        options,
        listen: ListenAddrs {
            hbone: SocketAddr::new(IpAddr::V4(net.waypoint()), 15008),
            metrics: Some(SocketAddr::new(IpAddr::V4(net.waypoint()), 0)),
            admin: None,
        },
        xds: XdsSource {
            channel,
            token: None,
            cluster_id: None,
        },
        ca: Arc::new(LocalCaProvider::new(Arc::clone(ca))),
        trust: trust.clone(),
        certs: CertManagerConfig::default(),
        tracer,
    };
    weft_waypoint::run(process).await.expect("waypoint starts")
}

async fn wait_ready(waypoint: &RunningWaypoint) {
    let addr = waypoint.addrs.metrics.unwrap().to_string();
    eventually("waypoint ready", || {
        let addr = addr.clone();
        async move {
            matches!(
                weft_serve::get(&addr, "/healthz/ready").await,
                Ok((StatusCode::OK, _))
            )
        }
    })
    .await;
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

/// An HBONE listener on `<ip>:15008` (identity `sa/echo`) serving the echo app.
pub async fn serve_backend(
    ca: &Arc<CertificateAuthority>,
    trust: &TrustBundle,
    backend: Arc<Backend>,
) -> CancellationToken {
    let id = SpiffeId::new("cluster.local", NS, "echo").unwrap();
    let manager = CertManager::new(
        Arc::new(LocalCaProvider::new(Arc::clone(ca))),
        CertManagerConfig::default(),
    );
    let cert = manager.get(&id).await.expect("backend certificate");
    let tls = weft_identity::server_config(&cert, trust).expect("server TLS");
    let listener = tokio::net::TcpListener::bind((backend.ip, 15008))
        .await
        .unwrap();
    let handler = move |request: InboundRequest| {
        let backend = Arc::clone(&backend);
        async move {
            if request.authority.port() != TARGET_PORT {
                return InboundDecision::<HboneStream>::Reject(StatusCode::SERVICE_UNAVAILABLE);
            }
            let peer = weft_identity::peer_identity(Some(&request.peer_certificates))
                .map_or_else(|_| "none".to_owned(), |id| id.to_string());
            let (handoff, stream) = oneshot::channel::<HboneStream>();
            tokio::spawn(async move {
                if let Ok(stream) = stream.await {
                    serve_echo(backend, peer, stream).await;
                }
            });
            InboundDecision::Handoff(handoff)
        }
    };
    let server = HboneServer::new(tls, handler, ServerOptions::default());
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { server.serve(listener, token).await });
    stop
}

/// Serves the echo app on `stream`; `peer` is what `x-peer` reports.
pub async fn serve_echo<S>(backend: Arc<Backend>, peer: String, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        echo(Arc::clone(&backend), peer.clone(), request)
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

/// Answers `<name> <method> <path> <body bytes>` with the headers it saw echoed as
/// `x-seen-<name>`; `x-delay-ms` delays the answer, `x-body-delay-ms` the body after its
/// first bytes; an upgrade echoes bytes.
async fn echo(
    backend: Arc<Backend>,
    peer: String,
    mut request: Request<Incoming>,
) -> Result<Response<EchoBody>, Infallible> {
    backend.requests.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&backend);
    if request.headers().contains_key(http::header::UPGRADE) {
        return Ok(upgrade(&mut request).map(BodyExt::boxed));
    }
    let grpc_status = header(&request, "x-grpc-status").map(str::to_owned);
    let body_delay = header(&request, "x-body-delay-ms").and_then(|v| v.parse().ok());
    if let Some(ms) = header(&request, "x-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (parts, mut body) = request.into_parts();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            if bytes == 0 {
                backend.first_bytes.notify_one();
            }
            bytes += data.len();
        }
    }
    let status = backend.behaviour.fail.unwrap_or(200);
    let text = format!(
        "{} {} {} {bytes}",
        backend.name,
        parts.method,
        parts.uri.path()
    );
    let body = match body_delay {
        Some(ms) => delayed_body(text, Duration::from_millis(ms)),
        None => answer_body(text, grpc_status),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let headers = response.headers_mut();
    headers.insert("x-backend", backend.name.parse().unwrap());
    headers.insert("x-peer", peer.parse().unwrap());
    headers.insert("x-version", format!("{:?}", parts.version).parse().unwrap());
    for (name, value) in &parts.headers {
        if let Ok(seen) = http::HeaderName::from_bytes(format!("x-seen-{name}").as_bytes()) {
            headers.append(seen, value.clone());
        }
    }
    Ok(response)
}

/// Counts a request in [`Backend::in_flight`] until dropped.
struct InFlight(Arc<Backend>);

impl InFlight {
    fn enter(backend: &Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(backend))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The echo app's response body.
pub type EchoBody = BoxBody<Bytes, Infallible>;

/// `text`, followed by a `grpc-status` trailer when one was asked for (as gRPC answers).
fn answer_body(text: String, grpc_status: Option<String>) -> EchoBody {
    let Some(status) = grpc_status else {
        return Full::new(Bytes::from(text)).boxed();
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    let frames = [
        Ok(hyper::body::Frame::data(Bytes::from(text))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    http_body_util::StreamBody::new(tokio_stream::iter(frames)).boxed()
}

/// `first ` at once, then `text` after `delay`.
fn delayed_body(text: String, delay: Duration) -> EchoBody {
    let (frames, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let first = hyper::body::Frame::data(Bytes::from_static(b"first "));
        let _ = frames.send(Ok(first)).await;
        tokio::time::sleep(delay).await;
        let _ = frames
            .send(Ok(hyper::body::Frame::data(Bytes::from(text))))
            .await;
    });
    http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).boxed()
}

fn header<'r>(request: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    request.headers().get(name)?.to_str().ok()
}

/// Switches to echoing bytes, answering the request's own `Upgrade` token; the request's
/// headers come back as `x-seen-<name>`.
fn upgrade(request: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let on_upgrade = hyper::upgrade::on(&mut *request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    for (name, value) in request.headers() {
        if let Ok(seen) = http::HeaderName::from_bytes(format!("x-seen-{name}").as_bytes()) {
            headers.append(seen, value.clone());
        }
    }
    headers.insert("connection", "upgrade".parse().unwrap());
    let token = request.headers()[http::header::UPGRADE].clone();
    headers.insert("upgrade", token);
    response
}

/// Upgrades the 101 `response` of the echo app and checks that `bytes` come back.
pub async fn assert_echoes(response: Response<Incoming>, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    assert_eq!(response.status(), 101);
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
    io.write_all(bytes).await.unwrap();
    let mut echoed = vec![0_u8; bytes.len()];
    io.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, bytes);
}

/// The client workload.
pub struct Client {
    pool: Pool<u8>,
    target: TunnelTarget,
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Client {
    /// An HBONE stream to `dst` through the waypoint.
    pub async fn tunnel(&self, dst: SocketAddr) -> Result<HboneStream, weft_hbone::HboneError> {
        let request = ConnectRequest::new(dst);
        self.pool.connect(0, &self.target, &request).await
    }

    /// An HTTP/1.1 connection to `dst` (upgrades allowed).
    pub async fn h1(&self, dst: SocketAddr) -> hyper::client::conn::http1::SendRequest<ClientBody> {
        let stream = self.tunnel(dst).await.expect("tunnel");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection.with_upgrades());
        sender
    }

    /// An h2c connection to `dst`.
    pub async fn h2(&self, dst: SocketAddr) -> hyper::client::conn::http2::SendRequest<ClientBody> {
        h2c_over(self.tunnel(dst).await.expect("tunnel")).await
    }
}

/// An HTTP/2 connection with prior knowledge (h2c) over `stream`.
pub async fn h2c_over<S>(stream: S) -> hyper::client::conn::http2::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // echoed headers come back as `x-seen-*`: take answers as large as the waypoint sends
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(1024 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2c handshake");
    tokio::spawn(connection);
    sender
}

/// A bodiless GET of `path` with `headers`.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<ClientBody> {
    let mut builder = Request::get(path).header("host", "echo");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

pub fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Sends on an HTTP/1.1 connection and reads the whole answer.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Answer {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    read(response).await
}

pub async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A policy attached to the waypoint (every service) or to `services`.
pub fn policy(
    name: &str,
    action: security::Action,
    rules: Vec<security::Rule>,
    services: &[&str],
) -> pb::Policy {
    pb::Policy {
        policy: Some(security::Authorization {
            name: name.into(),
            namespace: NS.into(),
            scope: security::Scope::WorkloadSelector.into(),
            action: action.into(),
            rules,
            ..Default::default()
        }),
        services: services.iter().map(|s| key(s)).collect(),
    }
}

/// A match whose `RequestMatch` extension requires one of `paths`.
pub fn path_match(paths: &[&str]) -> security::Match {
    request_match(pb::RequestMatch {
        paths: paths.iter().map(|p| string_match(p)).collect(),
        ..Default::default()
    })
}

/// A match whose L7 conditions are `request` (packed as the `RequestMatch` extension).
pub fn request_match(request: pb::RequestMatch) -> security::Match {
    security::Match {
        extensions: vec![security::Extension {
            name: weft_proto::REQUEST_MATCH_EXTENSION.into(),
            config: Some(weft_proto::pack_any(
                weft_proto::REQUEST_MATCH_TYPE_URL,
                &request,
            )),
        }],
        ..Default::default()
    }
}

/// `pattern` as Istio writes it: exact, or a prefix ending in `*`.
pub fn string_match(pattern: &str) -> security::StringMatch {
    use security::string_match::MatchType;
    let kind = match pattern.strip_suffix('*') {
        Some(prefix) => MatchType::Prefix(prefix.into()),
        None => MatchType::Exact(pattern.into()),
    };
    security::StringMatch {
        match_type: Some(kind),
    }
}
