//! In-pod capture end to end (root; fails, never skips, without root, `ip` or `nft`): a
//! two-node local cluster in network namespaces, node proxies in-process that learn their
//! pods over the pod socket, workloads that know nothing about the mesh.

#[path = "../node/harness.rs"]
mod harness;
mod mesh;
mod probes;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use harness::{WAIT, eventually};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use mesh::{
    APP_PORT, CLIENT_ID, Call, Mesh, VIP, connect_from, connect_with, expect_mtls_call,
    expect_server_sees, server_side_identities, strict, wait_closed,
};
use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_netns::{NetnsWorker, SocketOptions};
use weft_node::capture::source::PodRequest;
use weft_node::proxy::Direction;
use weft_proto::workload::TunnelProtocol;

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

    let strict_mesh = Mesh::start(&[strict()]).await;
    let outsider = strict_mesh.worker("outsider");
    let server = SocketAddr::from((strict_mesh.ip("server"), APP_PORT));
    assert!(
        Call::open(&outsider, server).await.is_err(),
        "STRICT must refuse plaintext"
    );
    expect_mtls_call(&strict_mesh, server).await;
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
    let draining = mesh.hand_b_over(None).await;

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
