//! In-pod capture end to end (root; fails, never skips, without root, `ip` or `nft`): a
//! two-node local cluster in network namespaces, node proxies in-process that learn their
//! pods over the pod socket, workloads that know nothing about the mesh.

#[path = "node/harness.rs"]
mod harness;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use harness::{
    WAIT, eventually, listen_on, options, policy, service, test_ca, trust, with_service, workload,
    write_config,
};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider};
use weft_netns::{ClusterSpec, LocalCluster, NetnsWorker, SocketOptions};
use weft_node::capture::source::{PodRequest, PodSourceClient, start_with_pod_socket};
use weft_node::capture::{CaptureManager, CaptureOptions, PodInfo};
use weft_node::handoff::{Handoff, offer_until_replaced};
use weft_node::process::{NodeConfig, RunningNode, StateSource};
use weft_node::proxy::Direction;
use weft_proto::security::{Action, Match, StringMatch, string_match::MatchType};
use weft_proto::workload::{TunnelProtocol, Workload};
use weft_serve::handoff::{Takeover, offerer_pid};

const APP_PORT: u16 = 8080;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const CLIENT_ID: &str = "spiffe://cluster.local/ns/shop/sa/client";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_prefix() -> String {
    format!(
        "c{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A node proxy with capture, in-process.
struct NodeProxy {
    running: RunningNode,
    capture: CaptureManager,
    socket: PathBuf,
}

impl NodeProxy {
    async fn start(ca: &Arc<CertificateAuthority>, name: &str, config: &Path, dir: &Path) -> Self {
        Self::start_with(ca, name, config, dir, Handoff::fresh()).await
    }

    /// A node proxy with `handoff` (taking over from the proxy whose sockets it holds).
    async fn start_with(
        ca: &Arc<CertificateAuthority>,
        name: &str,
        config: &Path,
        dir: &Path,
        handoff: Handoff,
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

    async fn request(&self, request: PodRequest) -> weft_node::capture::source::PodResponse {
        let mut client = PodSourceClient::connect(&self.socket)
            .await
            .expect("pod socket answers");
        let response = client.request(&request).await.expect("pod socket exchange");
        assert!(response.ok, "{request:?} refused: {response:?}");
        response
    }

    async fn stop(self) {
        self.capture.shutdown().await;
        self.running.shutdown(Duration::from_secs(1)).await;
    }
}

/// Two nodes; mesh pods `client` (a) and `server` (b), non-mesh pods `outsider` (a) and
/// `plain` (b); every pod runs a greeter on 8080; service `echo.shop` (VIP) -> server.
struct Mesh {
    cluster: LocalCluster,
    dir: tempfile::TempDir,
    ca: Arc<CertificateAuthority>,
    config: PathBuf,
    a: Option<NodeProxy>,
    b: NodeProxy,
}

fn mesh_workloads(cluster: &LocalCluster) -> Vec<Workload> {
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
    async fn start(policies: &[weft_proto::security::Authorization]) -> Self {
        Self::start_with(policies, |_| {}).await
    }

    /// [`Mesh::start`] with the workloads adjusted by `tweak` first.
    async fn start_with(
        policies: &[weft_proto::security::Authorization],
        tweak: impl FnOnce(&mut Vec<Workload>),
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
        let a = NodeProxy::start(&ca, "a", &config, dir.path()).await;
        let b = NodeProxy::start(&ca, "b", &config, dir.path()).await;
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

    fn a(&self) -> &NodeProxy {
        self.a.as_ref().expect("node a running")
    }

    fn ip(&self, pod: &str) -> Ipv4Addr {
        self.cluster.pod(pod).expect("pod").ip
    }

    fn pod_info(&self, name: &str) -> PodInfo {
        let pod = self.cluster.pod(name).expect("pod");
        PodInfo {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            netns: pod.netns.path(),
            ips: vec![IpAddr::V4(pod.ip)],
        }
    }

    fn worker(&self, pod: &str) -> NetnsWorker {
        NetnsWorker::spawn(&self.cluster.pod(pod).expect("pod").netns.path()).expect("enter pod")
    }

    async fn restart_a(&mut self) {
        self.a.take().expect("node a running").stop().await;
        self.a = Some(NodeProxy::start(&self.ca, "a", &self.config, self.dir.path()).await);
    }
}

/// A workload in `pod`'s namespace on 8080: writes `peer=<caller ip>\n`, then echoes.
fn greeter(cluster: &LocalCluster, pod: &str) {
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
async fn connect_from(worker: &NetnsWorker, peer: SocketAddr) -> std::io::Result<TcpStream> {
    connect_with(worker, peer, SocketOptions::default()).await
}

/// [`connect_from`] with socket options (e.g. a chosen source address).
async fn connect_with(
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
struct Call {
    seen_peer: String,
    stream: BufReader<TcpStream>,
}

impl Call {
    async fn open(worker: &NetnsWorker, peer: SocketAddr) -> std::io::Result<Self> {
        Self::greeted(connect_from(worker, peer).await?).await
    }

    /// Reads the greeting on an open connection.
    async fn greeted(stream: TcpStream) -> std::io::Result<Self> {
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

    async fn echo(&mut self, payload: &[u8]) -> Vec<u8> {
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
fn server_side_identities(mesh: &Mesh) -> Vec<(Direction, Option<std::sync::Arc<str>>)> {
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

async fn expect_server_sees(mesh: &Mesh, direction: Direction, identity: Option<&str>) {
    eventually("the server's node proxy records the connection", || async {
        server_side_identities(mesh)
            .iter()
            .any(|(d, id)| *d == direction && id.as_deref() == identity)
    })
    .await;
}

async fn wait_closed(mesh: &Mesh) {
    eventually("earlier connections to the server closed", || async {
        server_side_identities(mesh).is_empty()
    })
    .await;
}

/// Everything crossing the underlay bridge namespace, read with an AF_PACKET socket.
struct Sniffer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u8>>,
}

impl Sniffer {
    fn start(netns: &Path) -> Self {
        let fd = weft_netns::run_in_netns(netns, || {
            sock::socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
        })
        .expect("enter underlay")
        .expect("AF_PACKET socket");
        let timeout = nix::sys::time::TimeVal::new(0, 50_000);
        sock::setsockopt(&fd, sock::sockopt::ReceiveTimeout, &timeout).expect("SO_RCVTIMEO");
        // Every frame is seen on several underlay interfaces (both veth ends and the bridge);
        // with the default buffer a sniffer thread starved by a busy machine loses frames,
        // including the one the test looks for. Root may exceed rmem_max.
        sock::setsockopt(&fd, sock::sockopt::RcvBufForce, &(32 << 20)).expect("SO_RCVBUFFORCE");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut frame = vec![0u8; 65_536];
            // Stop only once asked to AND a receive timed out: frames already queued when
            // the test finishes are still read.
            loop {
                match sock::recv(fd.as_raw_fd(), &mut frame, MsgFlags::empty()) {
                    Ok(len) => seen.extend_from_slice(&frame[..len]),
                    Err(_) if stopping.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            seen
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sniffer thread")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asks the pod's resolver (any address: port 53 is redirected to the DNS proxy).
async fn resolve_a(worker: &NetnsWorker, name: &str) -> Vec<Ipv4Addr> {
    let socket = worker
        .run_async(|| weft_netns::bind_udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
        .await
        .expect("pod worker alive")
        .expect("udp socket");
    socket.set_nonblocking(true).expect("nonblocking");
    let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio udp");
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    let bytes = query.to_vec().expect("encode");
    socket
        .send_to(&bytes, "10.0.0.53:53")
        .await
        .expect("send query");
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("DNS answer in time")
        .expect("recv");
    let answer = Message::from_vec(&buf[..len]).expect("DNS answer parses");
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_call_crosses_nodes_over_hbone_with_real_source_ip_and_identity() {
    let mesh = Mesh::start(&[]).await;
    let client = mesh.worker("client");
    let sniffer = Sniffer::start(&mesh.cluster.underlay().netns.path());

    // Pod IP and service VIP, no proxy settings anywhere.
    let secret = b"weft-capture-secret-payload-7f3a";
    for target in [
        SocketAddr::from((mesh.ip("server"), APP_PORT)),
        SocketAddr::from((VIP, 80)),
    ] {
        let mut call = Call::open(&client, target)
            .await
            .expect("captured call works");
        assert_eq!(
            call.seen_peer,
            mesh.ip("client").to_string(),
            "server sees the caller's pod IP ({target})"
        );
        assert_eq!(call.echo(secret).await, secret);
        expect_server_sees(&mesh, Direction::InboundHbone, Some(CLIENT_ID)).await;
    }

    // The same call between two pods outside the mesh is plaintext on the wire.
    let outsider = mesh.worker("outsider");
    let visible = b"weft-capture-plaintext-visible-9c1d";
    let mut call = Call::open(&outsider, SocketAddr::from((mesh.ip("plain"), APP_PORT)))
        .await
        .expect("non-mesh call works");
    assert_eq!(call.seen_peer, mesh.ip("outsider").to_string());
    assert_eq!(call.echo(visible).await, visible);

    let wire = sniffer.finish();
    assert!(
        contains(&wire, visible),
        "the sniffer sees underlay traffic ({} bytes)",
        wire.len()
    );
    assert!(
        !contains(&wire, secret),
        "mesh payload crossed the underlay in plaintext"
    );

    // DNS from inside the pod: service names in every search form.
    for name in ["echo.shop.svc.cluster.local", "echo.shop", "echo"] {
        assert_eq!(resolve_a(&client, name).await, vec![VIP], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_mesh_caller_is_accepted_under_permissive_and_refused_under_strict() {
    let mesh = Mesh::start(&[]).await;
    let outsider = mesh.worker("outsider");
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let mut call = Call::open(&outsider, server)
        .await
        .expect("PERMISSIVE accepts plaintext");
    assert_eq!(
        call.seen_peer,
        mesh.ip("outsider").to_string(),
        "transparent source"
    );
    assert_eq!(call.echo(b"hello").await, b"hello");
    expect_server_sees(&mesh, Direction::InboundPlaintext, None).await;
    drop(call);

    let strict = policy(
        "strict",
        "shop",
        Action::Deny,
        vec![Match {
            not_principals: vec![StringMatch {
                match_type: Some(MatchType::Presence(())),
            }],
            ..Match::default()
        }],
    );
    let strict_mesh = Mesh::start(&[strict]).await;
    let outsider = strict_mesh.worker("outsider");
    let server = SocketAddr::from((strict_mesh.ip("server"), APP_PORT));
    assert!(
        Call::open(&outsider, server).await.is_err(),
        "STRICT must refuse plaintext"
    );
    let client = strict_mesh.worker("client");
    let call = Call::open(&client, server)
        .await
        .expect("mTLS still allowed under STRICT");
    assert_eq!(call.seen_peer, strict_mesh.ip("client").to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_unenrolling_and_restarting_change_capture_of_the_next_connection() {
    let mut mesh = Mesh::start(&[]).await;
    let client = mesh.worker("client");
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));

    // Unenroll the client: its next call leaves in plaintext (server side: no identity).
    let removed = mesh
        .a()
        .request(PodRequest::Remove {
            uid: "uid-client".into(),
        })
        .await;
    assert_eq!(removed.removed, Some(true));
    let call = Call::open(&client, server)
        .await
        .expect("uncaptured call still works (PERMISSIVE)");
    expect_server_sees(&mesh, Direction::InboundPlaintext, None).await;
    drop(call);
    wait_closed(&mesh).await;

    // Enroll it again: captured, over HBONE with its identity.
    let added = mesh
        .a()
        .request(PodRequest::Add(mesh.pod_info("client")))
        .await;
    assert!(added.pod.expect("status").captured, "client captured again");
    let call = Call::open(&client, server).await.expect("captured call");
    expect_server_sees(&mesh, Direction::InboundHbone, Some(CLIENT_ID)).await;
    drop(call);
    wait_closed(&mesh).await;

    // Restart node a's proxy: it reloads its pod list and captures the client again.
    mesh.restart_a().await;
    let listed = mesh
        .a()
        .request(PodRequest::List)
        .await
        .pods
        .expect("pod list");
    assert!(
        listed.iter().any(|p| p.pod.name == "client" && p.captured),
        "client recaptured after restart: {listed:?}"
    );
    let call = Call::open(&client, server)
        .await
        .expect("works after restart");
    assert_eq!(call.seen_peer, mesh.ip("client").to_string());
    expect_server_sees(&mesh, Direction::InboundHbone, Some(CLIENT_ID)).await;
}

/// One short call from `worker` to `server`: connect, greeting, one echo, close.
async fn one_call(worker: &NetnsWorker, server: SocketAddr) -> std::io::Result<()> {
    let mut call = Call::open(worker, server).await?;
    call.stream.get_mut().write_all(b"ping").await?;
    let mut back = [0u8; 4];
    tokio::time::timeout(WAIT, call.stream.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if &back != b"ping" {
        return Err(std::io::Error::other(format!("echo {back:?}")));
    }
    Ok(())
}

/// Calls in a loop until `stop`; counts successes, keeps every failure.
fn steady_caller(
    worker: Arc<NetnsWorker>,
    server: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU32>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match one_call(&worker, server).await {
                Ok(()) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => failures.push(error.to_string()),
            }
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_node_proxy_under_traffic_drops_no_connection() {
    let mut mesh = Mesh::start(&[]).await;
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let worker = Arc::new(mesh.worker("client"));
    let handoff_path = mesh.dir.path().join("b.handoff");
    let offering = {
        let (path, handoff) = (handoff_path.clone(), mesh.b.running.handoff.clone());
        tokio::spawn(async move { offer_until_replaced(&path, &handoff).await })
    };
    eventually("node b offers its listeners", || async {
        offerer_pid(&handoff_path).ok().flatten().is_some()
    })
    .await;

    // Long-lived calls through node b, and steady new calls, across the restart.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut call = Call::open(&worker, server).await.expect("call before");
        assert_eq!(call.echo(b"before").await, b"before");
        held.push(call);
    }
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let callers: Vec<_> = (0..3)
        .map(|_| {
            steady_caller(
                Arc::clone(&worker),
                server,
                Arc::clone(&stop),
                Arc::clone(&done),
            )
        })
        .collect();
    eventually("steady calls flow", || async {
        done.load(Ordering::Relaxed) >= 10
    })
    .await;

    // The successor takes node b's sockets; the old proxy steps down and drains.
    let takeover = Takeover::connect(&handoff_path)
        .await
        .expect("hand-off exchange")
        .expect("node b offers");
    let handoff = Handoff::taking_over(takeover);
    let new_b = NodeProxy::start_with(&mesh.ca, "b", &mesh.config, mesh.dir.path(), handoff).await;
    offering
        .await
        .expect("offer task")
        .expect("successor ready");
    let old_b = std::mem::replace(&mut mesh.b, new_b);
    old_b.capture.release().await;
    let mut old_running = old_b.running;
    old_running.step_down();
    let draining = tokio::spawn(old_running.shutdown(Duration::from_secs(60)));

    // New calls reach the server through the new proxy.
    let after = done.load(Ordering::Relaxed);
    eventually("steady calls flow after the restart", || async {
        done.load(Ordering::Relaxed) >= after + 20
    })
    .await;
    let mut new_call = Call::open(&worker, server).await.expect("call after");
    assert_eq!(new_call.echo(b"new").await, b"new");
    expect_server_sees(&mesh, Direction::InboundHbone, Some(CLIENT_ID)).await;
    // Calls opened before the restart still work through the old proxy.
    for call in &mut held {
        assert_eq!(call.echo(b"after").await, b"after");
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let failures = caller.await.expect("caller");
        assert!(
            failures.is_empty(),
            "calls failed across the restart: {failures:?}"
        );
    }
    drop(held);
    let cut = draining.await.expect("old proxy drains");
    assert_eq!(cut, 0, "the old proxy cut open connections");
    drop(new_call);
    mesh.b.stop().await;
    if let Some(a) = mesh.a.take() {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_pods_proxy_port_is_closed_and_never_loops() {
    let mesh = Mesh::start(&[]).await;
    let outsider = mesh.worker("outsider");
    let node_b = &mesh.b.running.node;
    for port in [15006, 15001] {
        let target = SocketAddr::from((mesh.ip("server"), port));
        // Redirected to the server pod's 15006 listener; refused there as a self-call.
        let mut stream = connect_from(&outsider, target)
            .await
            .expect("accepted by the pod's capture");
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                let open = node_b.connections().len();
                assert!(open <= 1, "{target}: {open} connections: a loop");
                let read = stream.read(&mut buf);
                match tokio::time::timeout(Duration::from_millis(50), read).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => panic!("{target} answered {n} bytes"),
                    Err(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{target} still open");
        assert!(node_b.connections().is_empty(), "{target} was dialled");
    }
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let mut call = Call::open(&outsider, server).await.expect("app port works");
    assert_eq!(call.echo(b"still").await, b"still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_using_a_neighbours_address_gets_no_identity_and_is_closed() {
    // The neighbour is a mesh workload on the same node, with its own identity.
    let mesh = Mesh::start_with(&[], |workloads| {
        for w in workloads.iter_mut().filter(|w| w.name == "outsider") {
            w.tunnel_protocol = TunnelProtocol::Hbone as i32;
        }
    })
    .await;
    let stolen = mesh.ip("outsider");
    let netns = mesh.cluster.pod("client").expect("pod").netns.path();
    let added = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "addr", "add", &format!("{stolen}/32"), "dev", "eth0"])
        .status()
        .expect("nsenter runs");
    assert!(
        added.success(),
        "the client pod takes its neighbour's address"
    );
    let client = mesh.worker("client");
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let options = SocketOptions {
        transparent_source: Some(SocketAddr::from((stolen, 0))),
        ..SocketOptions::default()
    };
    let refused = match connect_with(&client, server, options).await {
        Ok(stream) => Call::greeted(stream).await.map(|call| call.seen_peer),
        Err(error) => Err(error),
    };
    assert!(
        refused.is_err(),
        "served with the neighbour's identity: {refused:?}"
    );
    assert!(server_side_identities(&mesh).is_empty());
    let call = Call::open(&client, server)
        .await
        .expect("own address works");
    assert_eq!(call.seen_peer, mesh.ip("client").to_string());
    expect_server_sees(&mesh, Direction::InboundHbone, Some(CLIENT_ID)).await;
}
