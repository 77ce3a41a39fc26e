//! The capture tests' mesh: two nodes of a local cluster, node proxies in-process learning
//! their pods over the pod socket, greeters in every pod, and ways to call them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::{
    WAIT, eventually, listen_on, options, service, test_ca, trust, with_service, workload,
    write_config,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider};
use weft_netns::{ClusterSpec, LocalCluster, NetnsWorker, SocketOptions};
use weft_node::capture::source::{PodRequest, PodSourceClient, start_with_pod_socket};
use weft_node::capture::{CaptureManager, CaptureOptions, PodInfo};
use weft_node::handoff::{Handoff, offer_until_replaced};
use weft_node::process::{NodeConfig, RunningNode, StateSource};
use weft_node::proxy::Direction;
use weft_proto::workload::{TunnelProtocol, Workload};
use weft_serve::handoff::{Takeover, offerer_pid};

pub(crate) const APP_PORT: u16 = 8080;
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub(crate) const CLIENT_ID: &str = "spiffe://cluster.local/ns/shop/sa/client";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn unique_prefix() -> String {
    format!(
        "c{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A node proxy with capture, in-process.
pub(crate) struct NodeProxy {
    pub(crate) running: RunningNode,
    pub(crate) capture: CaptureManager,
    pub(crate) socket: PathBuf,
}

impl NodeProxy {
    pub(crate) async fn start(
        ca: &Arc<CertificateAuthority>,
        name: &str,
        config: &Path,
        dir: &Path,
    ) -> Self {
        Self::start_with(ca, name, config, dir, Handoff::fresh()).await
    }

    /// A node proxy with the probe source NAT in `node_netns`.
    pub(crate) async fn start_probing(
        ca: &Arc<CertificateAuthority>,
        name: &str,
        config: &Path,
        dir: &Path,
        node_netns: PathBuf,
    ) -> Self {
        Self::launch(ca, name, config, dir, Handoff::fresh(), Some(node_netns)).await
    }

    /// A node proxy with `handoff` (taking over from the proxy whose sockets it holds).
    pub(crate) async fn start_with(
        ca: &Arc<CertificateAuthority>,
        name: &str,
        config: &Path,
        dir: &Path,
        handoff: Handoff,
    ) -> Self {
        Self::launch(ca, name, config, dir, handoff, None).await
    }

    pub(crate) async fn launch(
        ca: &Arc<CertificateAuthority>,
        name: &str,
        config: &Path,
        dir: &Path,
        handoff: Handoff,
        probe_snat_netns: Option<PathBuf>,
    ) -> Self {
        let mut listen = listen_on(Ipv4Addr::LOCALHOST);
        listen.workload_hbone_listeners = false;
        let config = NodeConfig {
            options: options(name),
            listen,
            state: StateSource::LocalFile(config.to_owned()),
            ca: Arc::new(LocalCaProvider::new(Arc::clone(ca))),
            trust: trust(ca),
            certs: CertManagerConfig::default(),
            log_control: None,
        };
        let running = weft_node::process::run_with_handoff(config, handoff)
            .await
            .expect("node proxy starts");
        let socket = dir.join(format!("{name}.sock"));
        let options = CaptureOptions {
            state_file: Some(weft_node::capture::source::state_file_for(&socket)),
            probe_snat_netns,
            ..CaptureOptions::default()
        };
        let node = running.node.clone();
        let capture = start_with_pod_socket(node, &socket, options, running.handoff.clone())
            .await
            .expect("capture and pod socket start");
        Self {
            running,
            capture,
            socket,
        }
    }

    pub(crate) async fn request(
        &self,
        request: PodRequest,
    ) -> weft_node::capture::source::PodResponse {
        let mut client = PodSourceClient::connect(&self.socket)
            .await
            .expect("pod socket answers");
        let response = client.request(&request).await.expect("pod socket exchange");
        assert!(response.ok, "{request:?} refused: {response:?}");
        response
    }

    pub(crate) async fn stop(self) {
        self.capture.shutdown().await;
        self.running.shutdown(Duration::from_secs(1)).await;
    }
}

/// Two nodes; mesh pods `client` (a) and `server` (b), non-mesh pods `outsider` (a) and
/// `plain` (b); every pod runs a greeter on 8080; service `echo.shop` (VIP) -> server.
pub(crate) struct Mesh {
    pub(crate) cluster: LocalCluster,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) config: PathBuf,
    pub(crate) a: Option<NodeProxy>,
    pub(crate) b: NodeProxy,
}

pub(crate) fn mesh_workloads(cluster: &LocalCluster) -> Vec<Workload> {
    let ip = |pod: &str| cluster.pod(pod).expect("pod").ip;
    let plain = |mut w: Workload| {
        w.tunnel_protocol = TunnelProtocol::None as i32;
        w
    };
    vec![
        workload("client", "shop", "client", ip("client"), "a"),
        with_service(
            workload("server", "shop", "server", ip("server"), "b"),
            "shop/echo.shop.svc.cluster.local",
            80,
            u32::from(APP_PORT),
        ),
        plain(workload(
            "outsider",
            "shop",
            "outsider",
            ip("outsider"),
            "a",
        )),
        plain(workload("plain", "shop", "plain", ip("plain"), "b")),
    ]
}

impl Mesh {
    pub(crate) async fn start(policies: &[weft_proto::security::Authorization]) -> Self {
        Self::start_with(policies, |_| {}).await
    }

    /// [`Mesh::start`] with the workloads adjusted by `tweak` first.
    pub(crate) async fn start_with(
        policies: &[weft_proto::security::Authorization],
        tweak: impl FnOnce(&mut Vec<Workload>),
    ) -> Self {
        Self::build(policies, tweak, false).await
    }

    /// [`Mesh::start`] with each node proxy keeping its node's probe source NAT.
    pub(crate) async fn start_probing(policies: &[weft_proto::security::Authorization]) -> Self {
        Self::build(policies, |_| {}, true).await
    }

    async fn build(
        policies: &[weft_proto::security::Authorization],
        tweak: impl FnOnce(&mut Vec<Workload>),
        probe_snat: bool,
    ) -> Self {
        weft_netns::check_prerequisites()
            .expect("capture tests must run as root with iproute2 and nftables installed");
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = ClusterSpec::new(&unique_prefix())
            .node("a")
            .node("b")
            .pod("client", "a")
            .pod("outsider", "a")
            .pod("server", "b")
            .pod("plain", "b");
        let cluster = LocalCluster::create(&spec, dir.path()).expect("create cluster");
        for pod in ["client", "outsider", "server", "plain"] {
            greeter(&cluster, pod);
        }
        let services = [service("echo", "shop", VIP, 80, u32::from(APP_PORT))];
        let mut workloads = mesh_workloads(&cluster);
        tweak(&mut workloads);
        let config = write_config(&dir, &workloads, &services, policies);
        let ca = test_ca();
        let start = |name: &'static str| {
            let node_netns = cluster.node(name).expect("node").netns.path();
            let (ca, config, dir) = (&ca, &config, dir.path());
            async move {
                if probe_snat {
                    NodeProxy::start_probing(ca, name, config, dir, node_netns).await
                } else {
                    NodeProxy::start(ca, name, config, dir).await
                }
            }
        };
        let a = start("a").await;
        let b = start("b").await;
        let mesh = Self {
            cluster,
            dir,
            ca,
            config,
            a: Some(a),
            b,
        };
        for (node, pod) in [
            (mesh.a(), "client"),
            (&mesh.b, "server"),
            (mesh.a(), "outsider"),
            (&mesh.b, "plain"),
        ] {
            node.request(PodRequest::Add(mesh.pod_info(pod))).await;
        }
        mesh
    }

    pub(crate) fn a(&self) -> &NodeProxy {
        self.a.as_ref().expect("node a running")
    }

    pub(crate) fn ip(&self, pod: &str) -> Ipv4Addr {
        self.cluster.pod(pod).expect("pod").ip
    }

    pub(crate) fn pod_info(&self, name: &str) -> PodInfo {
        let pod = self.cluster.pod(name).expect("pod");
        PodInfo {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            netns: pod.netns.path(),
            ips: vec![IpAddr::V4(pod.ip)],
        }
    }

    pub(crate) fn worker(&self, pod: &str) -> NetnsWorker {
        NetnsWorker::spawn(&self.cluster.pod(pod).expect("pod").netns.path()).expect("enter pod")
    }

    /// Replaces node b's proxy by a successor that takes its sockets over the hand-off
    /// socket (keeping the probe source NAT in `probe_snat_netns`, if given); the old one
    /// steps down and drains. Returns the drain: how many connections it had to cut.
    pub(crate) async fn hand_b_over(
        &mut self,
        probe_snat_netns: Option<PathBuf>,
    ) -> tokio::task::JoinHandle<usize> {
        let handoff_path = self.dir.path().join("b.handoff");
        let offering = {
            let (path, handoff) = (handoff_path.clone(), self.b.running.handoff.clone());
            tokio::spawn(async move { offer_until_replaced(&path, &handoff).await })
        };
        eventually("node b offers its listeners", || async {
            offerer_pid(&handoff_path).ok().flatten().is_some()
        })
        .await;
        let takeover = Takeover::connect(&handoff_path)
            .await
            .expect("hand-off exchange")
            .expect("node b offers");
        let handoff = Handoff::taking_over(takeover);
        let (ca, config, dir) = (&self.ca, &self.config, self.dir.path());
        let new_b = NodeProxy::launch(ca, "b", config, dir, handoff, probe_snat_netns).await;
        offering
            .await
            .expect("offer task")
            .expect("successor ready");
        let old_b = std::mem::replace(&mut self.b, new_b);
        old_b.capture.release().await;
        let mut old_running = old_b.running;
        old_running.step_down();
        tokio::spawn(old_running.shutdown(Duration::from_secs(60)))
    }

    pub(crate) async fn restart_a(&mut self) {
        self.a.take().expect("node a running").stop().await;
        self.a = Some(NodeProxy::start(&self.ca, "a", &self.config, self.dir.path()).await);
    }
}

/// A workload in `pod`'s namespace on 8080: writes `peer=<caller ip>\n`, then echoes.
pub(crate) fn greeter(cluster: &LocalCluster, pod: &str) {
    let path = cluster.pod(pod).expect("pod").netns.path();
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, APP_PORT));
    let listener = weft_netns::open_listener_in(&path, any).expect("greeter listens in its pod");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = w
                    .write_all(format!("peer={}\n", peer.ip()).as_bytes())
                    .await;
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Connects from inside a pod as an ordinary process would (no mark, no proxy settings).
pub(crate) async fn connect_from(
    worker: &NetnsWorker,
    peer: SocketAddr,
) -> std::io::Result<TcpStream> {
    connect_with(worker, peer, SocketOptions::default()).await
}

/// [`connect_from`] with socket options (e.g. a chosen source address).
pub(crate) async fn connect_with(
    worker: &NetnsWorker,
    peer: SocketAddr,
    options: SocketOptions,
) -> std::io::Result<TcpStream> {
    let socket = worker
        .run_async(move || weft_netns::tcp_socket(peer, options))
        .await
        .expect("pod worker alive")
        .map_err(std::io::Error::other)?;
    socket.set_nonblocking(true)?;
    tokio::time::timeout(WAIT, TcpSocket::from_std_stream(socket).connect(peer))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// An open call: the caller IP the server saw, and the stream.
pub(crate) struct Call {
    pub(crate) seen_peer: String,
    pub(crate) stream: BufReader<TcpStream>,
}

impl Call {
    pub(crate) async fn open(worker: &NetnsWorker, peer: SocketAddr) -> std::io::Result<Self> {
        Self::greeted(connect_from(worker, peer).await?).await
    }

    /// Reads the greeting on an open connection.
    pub(crate) async fn greeted(stream: TcpStream) -> std::io::Result<Self> {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(WAIT, stream.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let seen_peer = line
            .trim()
            .strip_prefix("peer=")
            .ok_or_else(|| std::io::Error::other(format!("no greeting, got {line:?}")))?
            .to_owned();
        Ok(Self { seen_peer, stream })
    }

    pub(crate) async fn echo(&mut self, payload: &[u8]) -> Vec<u8> {
        self.stream
            .get_mut()
            .write_all(payload)
            .await
            .expect("send");
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        back
    }
}

/// Inbound connections node `b` has open to `server` right now.
pub(crate) fn server_side_identities(mesh: &Mesh) -> Vec<(Direction, Option<std::sync::Arc<str>>)> {
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    mesh.b
        .running
        .node
        .connections()
        .into_iter()
        .filter(|c| c.dst_addr == server)
        .map(|c| (c.direction, c.src_identity))
        .collect()
}

pub(crate) async fn expect_server_sees(mesh: &Mesh, direction: Direction, identity: Option<&str>) {
    eventually("the server's node proxy records the connection", || async {
        server_side_identities(mesh)
            .iter()
            .any(|(d, id)| *d == direction && id.as_deref() == identity)
    })
    .await;
}

pub(crate) async fn wait_closed(mesh: &Mesh) {
    eventually("earlier connections to the server closed", || async {
        server_side_identities(mesh).is_empty()
    })
    .await;
}

/// DENY every caller without a peer identity: STRICT for namespace `shop`.
pub(crate) fn strict() -> weft_proto::security::Authorization {
    use weft_proto::security::{Action, Match, StringMatch, string_match::MatchType};
    crate::harness::policy(
        "strict",
        "shop",
        Action::Deny,
        vec![Match {
            not_principals: vec![StringMatch {
                match_type: Some(MatchType::Presence(())),
            }],
            ..Match::default()
        }],
    )
}

/// A mesh call from pod `client` to `server` goes through and shows the client's address.
pub(crate) async fn expect_mtls_call(mesh: &Mesh, server: SocketAddr) {
    let client = mesh.worker("client");
    let call = Call::open(&client, server)
        .await
        .expect("mTLS call allowed");
    assert_eq!(call.seen_peer, mesh.ip("client").to_string());
}
