//! Test fixtures: a per-test loopback subnet, workload/service/policy builders, node
//! proxies started in-process with `weft_node::process::run`, echo workloads and SOCKS5 /
//! HTTP CONNECT clients.

#![allow(dead_code)] // each test uses a subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider, TrustBundle};
use weft_node::process::{ListenAddrs, NodeConfig, RunningNode, StateSource, XdsSource, run};
use weft_node::proxy::ProxyOptions;
use weft_proto::security::{self, Authorization};
use weft_proto::workload::{self, Service, Workload};

pub const WAIT: Duration = Duration::from_secs(15);
pub const HBONE_PORT: u16 = 15008;

/// A loopback /16 of its own: `127.<n>.0.x` node proxies, `127.<n>.1.x` workloads,
/// `127.<n>.2.x` service VIPs. `n` is leased from `weft_testkit`, so no other test, in this
/// process or another, uses the same network.
#[derive(Debug, Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    pub fn next() -> Self {
        Self(weft_testkit::loopback_net())
    }
    pub fn node(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 0, host)
    }
    pub fn workload(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 1, host)
    }
    pub fn vip(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 2, host)
    }
}

/// A workload record on `node` with identity `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
pub fn workload(name: &str, ns: &str, sa: &str, ip: Ipv4Addr, node: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/{ns}/{name}"),
        name: name.into(),
        namespace: ns.into(),
        addresses: vec![ip.octets().to_vec()],
        tunnel_protocol: workload::TunnelProtocol::Hbone as i32,
        service_account: sa.into(),
        node: node.into(),
        canonical_name: name
            .trim_end_matches(char::is_numeric)
            .trim_end_matches('-')
            .into(),
        canonical_revision: "v1".into(),
        ..Default::default()
    }
}

/// Makes `w` an endpoint of service `<ns>/<hostname>` with `service_port -> target_port`.
pub fn with_service(w: Workload, key: &str, service_port: u32, target_port: u32) -> Workload {
    weft_upstream::testing::member(w, key, &[(service_port, target_port)])
}

pub fn service(name: &str, ns: &str, vip: Ipv4Addr, port: u32, target: u32) -> Service {
    let vip = vip.to_string();
    weft_upstream::testing::service(ns, name, &vip, &[(port, target)])
}

/// A policy with one rule of one clause of one match.
pub fn policy(
    name: &str,
    ns: &str,
    action: security::Action,
    matches: Vec<security::Match>,
) -> Authorization {
    let rules = if matches.is_empty() {
        Vec::new()
    } else {
        vec![security::Rule {
            clauses: vec![security::Clause { matches }],
        }]
    };
    Authorization {
        name: name.into(),
        namespace: ns.into(),
        scope: security::Scope::Namespace as i32,
        action: action as i32,
        rules,
        ..Default::default()
    }
}

pub fn principal_match(principal: &str) -> security::Match {
    security::Match {
        principals: vec![security::StringMatch {
            match_type: Some(security::string_match::MatchType::Exact(principal.into())),
        }],
        ..Default::default()
    }
}

/// Writes a local-config file (JSON, the proto JSON mapping).
pub fn write_config(
    dir: &tempfile::TempDir,
    workloads: &[Workload],
    services: &[Service],
    policies: &[Authorization],
) -> PathBuf {
    let json = |name: &str, v: &dyn Fn() -> Result<serde_json::Value, weft_proto::JsonError>| {
        v().unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let doc = serde_json::json!({
        "workloads": workloads.iter().map(|w| json("workload", &|| weft_proto::to_json("istio.workload.Workload", w))).collect::<Vec<_>>(),
        "services": services.iter().map(|s| json("service", &|| weft_proto::to_json("istio.workload.Service", s))).collect::<Vec<_>>(),
        "policies": policies.iter().map(|p| json("policy", &|| weft_proto::to_json("istio.security.Authorization", p))).collect::<Vec<_>>(),
    });
    let path = dir.path().join(format!("mesh-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The mesh CA shared by the test's node proxies.
pub fn test_ca() -> Arc<CertificateAuthority> {
    Arc::new(CertificateAuthority::generate_in_memory().expect("CA"))
}

pub fn trust(ca: &CertificateAuthority) -> TrustBundle {
    TrustBundle::new("cluster.local", [ca.root().clone()]).expect("trust bundle")
}

pub fn listen_on(ip: Ipv4Addr) -> ListenAddrs {
    let any = |ip| Some(SocketAddr::new(IpAddr::V4(ip), 0));
    ListenAddrs {
        explicit: any(ip),
        outbound: None,
        inbound_plaintext: None,
        admin: any(ip),
        metrics: any(ip),
        readiness: any(ip),
        workload_hbone_listeners: true,
    }
}

pub fn options(node: &str) -> ProxyOptions {
    ProxyOptions {
        node_name: node.into(),
        hbone_port: HBONE_PORT,
        ..ProxyOptions::default()
    }
}

/// The settings of node proxy `node` on `ip` (every listener on a free port), its state
/// from `state`, its certificates from `ca`.
pub fn node_config(
    ca: &Arc<CertificateAuthority>,
    node: &str,
    ip: Ipv4Addr,
    state: StateSource,
) -> NodeConfig {
    NodeConfig {
        options: options(node),
        listen: listen_on(ip),
        state,
        ca: Arc::new(LocalCaProvider::new(Arc::clone(ca))),
        trust: trust(ca),
        certs: CertManagerConfig::default(),
        log_control: None,
    }
}

/// Delta xDS state over `channel`, no token, no cluster id.
pub fn xds_source(channel: tonic::transport::Channel) -> StateSource {
    StateSource::Xds(XdsSource {
        channel,
        token: None,
        cluster_id: None,
    })
}

/// A control plane that never answers: a socket on `ip` whose connections are never
/// accepted. A node fed from it never gets its first configuration (while it is alive).
pub fn silent_control_plane(ip: Ipv4Addr) -> (std::net::TcpListener, StateSource) {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind silent control plane");
    let addr = listener.local_addr().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    (listener, xds_source(channel))
}

/// Starts a node proxy from a local config file, signed by `ca`, and waits until ready.
pub async fn start_node(
    ca: &Arc<CertificateAuthority>,
    node: &str,
    ip: Ipv4Addr,
    config: PathBuf,
) -> RunningNode {
    start_with(node_config(ca, node, ip, StateSource::LocalFile(config))).await
}

pub async fn start_with(config: NodeConfig) -> RunningNode {
    let running = run(config).await.expect("node proxy starts");
    wait_ready(&running).await;
    running
}

pub async fn wait_ready(running: &RunningNode) {
    let addr = running
        .addrs
        .readiness
        .expect("readiness bound")
        .to_string();
    eventually("node ready", || async {
        matches!(weft_serve::get(&addr, "/healthz/ready").await, Ok((s, _)) if s == 200)
    })
    .await;
}

/// Polls `check` every 20 ms until true or [`WAIT`] passes (then panics).
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

/// A TCP echo workload: echoes every byte and closes its write side after the client's.
pub async fn echo_server(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    weft_testkit::tcp_echo(addr).await.1
}

/// Connects from `source` (a workload address) to `proxy`.
pub async fn connect_from(source: Ipv4Addr, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(proxy).await.expect("connect to proxy")
}

/// SOCKS5 CONNECT to `dst` through `proxy` from `source`; returns the reply code and the
/// stream (usable when the code is 0).
pub async fn socks_connect(
    source: Ipv4Addr,
    proxy: SocketAddr,
    dst: SocketAddr,
) -> (u8, TcpStream) {
    let mut stream = connect_from(source, proxy).await;
    socks_greet(&mut stream).await;
    socks_request(&mut stream, dst).await;
    let code = read_socks_reply(&mut stream).await;
    (code, stream)
}

/// SOCKS5 method negotiation ("no authentication"); returns once the proxy answered.
pub async fn socks_greet(stream: &mut TcpStream) {
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    stream.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
}

/// Sends a SOCKS5 CONNECT request for `dst` (read the answer with [`read_socks_reply`]).
pub async fn socks_request(stream: &mut TcpStream, dst: SocketAddr) {
    let mut request = vec![5, 1, 0];
    match dst.ip() {
        IpAddr::V4(ip) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
    }
    request.extend_from_slice(&dst.port().to_be_bytes());
    stream.write_all(&request).await.unwrap();
}

/// SOCKS5 CONNECT by domain name.
pub async fn socks_connect_domain(
    source: Ipv4Addr,
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> (u8, TcpStream) {
    let mut stream = connect_from(source, proxy).await;
    socks_greet(&mut stream).await;
    let mut request = vec![5, 1, 0, 3, u8::try_from(host.len()).unwrap()];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let code = read_socks_reply(&mut stream).await;
    (code, stream)
}

/// The reply code of a SOCKS5 request.
pub async fn read_socks_reply(stream: &mut TcpStream) -> u8 {
    let mut reply = [0u8; 10];
    tokio::time::timeout(WAIT, stream.read_exact(&mut reply))
        .await
        .expect("SOCKS reply in time")
        .expect("SOCKS reply");
    assert_eq!(reply[0], 5, "SOCKS version in reply");
    reply[1]
}

/// Sends `len` pseudo-random bytes, half-closes, reads everything back; returns
/// (checksum sent, checksum received, bytes received).
pub async fn transfer(stream: TcpStream, len: usize) -> (u64, u64, usize) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sent_sum = checksum(&data);
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut received = Vec::with_capacity(len);
    tokio::time::timeout(WAIT * 2, r.read_to_end(&mut received))
        .await
        .expect("echo finished in time")
        .expect("read echo");
    writer.await.unwrap();
    (sent_sum, checksum(&received), received.len())
}

/// FNV-1a over the bytes.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One round trip of a short message.
pub async fn ping(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    back
}

pub async fn page(addr: Option<SocketAddr>, path: &str) -> (u16, String) {
    let (status, body) = weft_serve::get(&addr.expect("page bound").to_string(), path)
        .await
        .expect("GET page");
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

/// Captured log output of this test binary (access-log lines included).
static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

#[derive(Clone)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary).
pub fn capture_logs() {
    let buffer = LOGS.get_or_init(Arc::default).clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || LogBuffer(Arc::clone(&buffer)))
        .try_init();
}

/// Access-log lines mentioning `needle`.
pub fn access_log_lines(needle: &str) -> Vec<String> {
    let Some(buffer) = LOGS.get() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains("weft::access") && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Two node proxies (`node-a` on `127.<n>.0.2`, `node-b` on `127.<n>.0.3`), a client
/// workload `client-1` (sa `sleep`, `127.<n>.1.1`) on node-a, an echo workload `echo-1`
/// (sa `echo`, `127.<n>.1.2:8080`) on node-b behind service `echo` (`127.<n>.2.1:80`),
/// and `policies` applying to namespace `default`.
pub struct TwoNodes {
    pub net: Net,
    pub ca: Arc<CertificateAuthority>,
    pub a: RunningNode,
    pub b: RunningNode,
    pub dir: tempfile::TempDir,
    /// The local config file both nodes read.
    pub config: PathBuf,
    _echo: tokio::task::JoinHandle<()>,
}

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
pub const ECHO_ID: &str = "spiffe://cluster.local/ns/default/sa/echo";

impl TwoNodes {
    pub async fn start(policies: &[Authorization]) -> Self {
        Self::start_with(policies, |_| {}).await
    }

    /// `tweak` adjusts node-a's options (e.g. the pool's stream cap).
    pub async fn start_with(
        policies: &[Authorization],
        tweak: impl FnOnce(&mut ProxyOptions),
    ) -> Self {
        Self::start_full(Net::next(), policies, tweak).await
    }

    pub async fn start_on(net: Net, policies: &[Authorization]) -> Self {
        Self::start_full(net, policies, |_| {}).await
    }

    async fn start_full(
        net: Net,
        policies: &[Authorization],
        tweak: impl FnOnce(&mut ProxyOptions),
    ) -> Self {
        capture_logs();
        let ca = test_ca();
        let dir = tempfile::tempdir().unwrap();
        let (workloads, services) = Self::resources(net);
        let config = write_config(&dir, &workloads, &services, policies);
        let echo = echo_server(net.echo_addr()).await;
        let mut a_config = node_config(
            &ca,
            "node-a",
            net.node(2),
            StateSource::LocalFile(config.clone()),
        );
        tweak(&mut a_config.options);
        let a = start_with(a_config).await;
        let b = start_node(&ca, "node-b", net.node(3), config.clone()).await;
        Self {
            net,
            ca,
            a,
            b,
            dir,
            config,
            _echo: echo,
        }
    }

    /// `client-1`, `echo-1` (behind service `echo`) and `plain-1`, a workload on node-b
    /// outside the mesh (no HBONE) at `127.<n>.1.3`.
    pub fn resources(net: Net) -> (Vec<Workload>, Vec<Service>) {
        let client = workload("client-1", "default", "sleep", net.workload(1), "node-a");
        let server = with_service(
            workload("echo-1", "default", "echo", net.workload(2), "node-b"),
            "default/echo.default.svc.cluster.local",
            80,
            8080,
        );
        let plain = Workload {
            tunnel_protocol: workload::TunnelProtocol::None as i32,
            ..workload("plain-1", "legacy", "default", net.workload(3), "node-b")
        };
        (
            vec![client, server, plain],
            vec![service("echo", "default", net.vip(1), 80, 8080)],
        )
    }

    /// SOCKS5 CONNECT from the client workload to `dst` via node-a.
    pub async fn socks(&self, dst: SocketAddr) -> (u8, TcpStream) {
        socks_connect(self.net.workload(1), self.a.addrs.explicit.unwrap(), dst).await
    }

    /// SOCKS5 CONNECT from the client workload to the echo service VIP.
    pub async fn socks_vip(&self) -> (u8, TcpStream) {
        self.socks(self.net.vip_addr()).await
    }
}

impl Net {
    pub fn echo_addr(self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.workload(2)), 8080)
    }
    pub fn vip_addr(self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.vip(1)), 80)
    }
    /// `plain-1` (outside the mesh) on `port`.
    pub fn plain_addr(self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.workload(3)), port)
    }
}
