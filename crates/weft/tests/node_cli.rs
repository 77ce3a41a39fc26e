//! `weft node` as a real process: takes exactly the flags of the shared node proxy command
//! line (`weft_node::cli`, which the `weft-node` binary parses too); refuses a local
//! config without a CA choice; two node processes sharing a persisted local CA carry
//! SOCKS5 traffic over HBONE between loopback workloads; `/logging` changes the filter; SIGTERM drains and exits cleanly: new
//! connections refused, open ones kept until the drain deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// A loopback network `127.<n>.0.0/16` no other test uses (leased for the process).
fn net() -> u8 {
    weft_testkit::loopback_net()
}

fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn config(n: u8) -> String {
    let ip = |host: u8| b64(&Ipv4Addr::new(127, n, 1, host).octets());
    let vip = b64(&Ipv4Addr::new(127, n, 2, 1).octets());
    serde_json::json!({
        "workloads": [
            {"uid": "Kubernetes//Pod/default/client-1", "name": "client-1", "namespace": "default",
             "addresses": [ip(1)], "tunnelProtocol": "HBONE", "serviceAccount": "sleep", "node": "node-a"},
            {"uid": "Kubernetes//Pod/default/echo-1", "name": "echo-1", "namespace": "default",
             "addresses": [ip(2)], "tunnelProtocol": "HBONE", "serviceAccount": "echo", "node": "node-b",
             "services": {"default/echo.default.svc.cluster.local": {"ports": [{"servicePort": 80, "targetPort": 8080}]}}}
        ],
        "services": [
            {"name": "echo", "namespace": "default", "hostname": "echo.default.svc.cluster.local",
             "addresses": [{"address": vip}], "ports": [{"servicePort": 80, "targetPort": 8080}]}
        ]
    })
    .to_string()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    node: &str,
    ip: Ipv4Addr,
    config: &std::path::Path,
    ca_dir: &std::path::Path,
    extra: &[&str],
) -> Proc {
    start_draining(node, ip, config, ca_dir, 5, extra)
}

fn start_draining(
    node: &str,
    ip: Ipv4Addr,
    config: &std::path::Path,
    ca_dir: &std::path::Path,
    drain_seconds: u64,
    extra: &[&str],
) -> Proc {
    let child = weft()
        .args(["node", "--local-config"])
        .arg(config)
        .args(["--node", node, "--insecure-local-ca", "--local-ca-dir"])
        .arg(ca_dir)
        .args(["--bind-ip", &ip.to_string()])
        .args(["--drain-timeout", &drain_seconds.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft node");
    Proc(child)
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn wait_ready(ip: Ipv4Addr) {
    let deadline = Instant::now() + WAIT;
    let addr = SocketAddr::from((ip, 15021));
    while !http_get(addr, "/healthz/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "node on {ip} not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn echo_server(addr: SocketAddr) {
    let listener = std::net::TcpListener::bind(addr).expect("bind echo");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
                let _ = writer.shutdown(Shutdown::Write);
            });
        }
    });
}

fn socks(from: Ipv4Addr, proxy: SocketAddr, dst: SocketAddr) -> (u8, TcpStream) {
    let mut stream = bind_connect(from, proxy);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(&[5, 1, 0]).unwrap();
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).unwrap();
    let SocketAddr::V4(dst) = dst else {
        panic!("v4 only")
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&dst.ip().octets());
    request.extend_from_slice(&dst.port().to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    (reply[1], stream)
}

fn bind_connect(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let stream = socket.connect(to).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

#[test]
fn help_lists_exactly_the_shared_command_lines_flags() {
    let listed = weft_testkit::help_flags_of(weft().args(["node", "--help"]), "Usage: weft node");
    assert_eq!(listed, weft_node::cli::flag_names());
}

#[test]
fn probe_source_nat_without_capture_or_namespace_is_refused_with_a_clear_message() {
    let dir = tempfile_dir();
    let path = dir.join("mesh.json");
    std::fs::write(&path, config(net())).unwrap();
    let refusal = |extra: &[&str]| {
        let out = weft()
            .args(["node", "--node", "n", "--local-config"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refusal(&["--probe-snat-netns", "/proc/1/ns/net"]);
    assert!(
        stderr.contains("--probe-snat-netns needs --pod-socket or --cni-socket"),
        "{stderr}"
    );
    let socket = dir.join("pods.sock");
    let missing = dir.join("no-such-netns");
    let stderr = refusal(&[
        "--pod-socket",
        socket.to_str().unwrap(),
        "--probe-snat-netns",
        missing.to_str().unwrap(),
    ]);
    assert!(stderr.contains("no such network namespace"), "{stderr}");
}

#[test]
fn local_config_without_a_ca_choice_is_refused_with_a_clear_message() {
    let dir = tempfile_dir();
    let path = dir.join("mesh.json");
    std::fs::write(&path, config(net())).unwrap();
    let out = weft()
        .args(["node", "--node", "n", "--local-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-local-ca"), "{stderr}");
}

#[test]
fn two_node_processes_carry_socks_traffic_over_hbone_and_drain_on_sigterm() {
    let TwoNodes {
        n,
        path,
        ca_dir,
        node_a,
        node_b,
    } = two_nodes();
    // The first process creates the shared CA directory; start the second after it.
    let mut a = start("node-a", node_a, &path, &ca_dir, &[]);
    wait_ready(node_a);
    // one proxy on a single worker thread: the data path must not need two
    let _b = start("node-b", node_b, &path, &ca_dir, &["--worker-threads", "1"]);
    wait_ready(node_b);

    let vip = SocketAddr::from((Ipv4Addr::new(127, n, 2, 1), 80));
    let (code, mut stream) = socks(
        Ipv4Addr::new(127, n, 1, 1),
        SocketAddr::from((node_a, 15080)),
        vip,
    );
    assert_eq!(code, 0, "SOCKS reply");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&payload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back, payload);

    let conns = http_get(SocketAddr::from((node_b, 15000)), "/connections").unwrap();
    assert!(conns.starts_with("HTTP/1.1 200"), "{conns}");
    let logging = http_get(SocketAddr::from((node_a, 15000)), "/logging?level=debug").unwrap();
    assert!(logging.contains("log filter is now debug"), "{logging}");
    let metrics = http_get(SocketAddr::from((node_b, 15020)), "/metrics").unwrap();
    assert!(
        metrics.contains("istio_tcp_connections_opened_total{reporter=\"destination\""),
        "{metrics}"
    );

    let deadline = sigterm(&a);
    exits_cleanly(&mut a, deadline, "node-a did not exit after SIGTERM");
}

/// The kubelet's view: `/healthz/live` answers while the process runs; on SIGTERM the
/// proxy stops accepting, keeps an open connection flowing, and exits once the drain
/// deadline (`--drain-timeout 3`) cuts what is still open.
#[test]
fn sigterm_stops_accepting_keeps_open_connections_until_the_drain_deadline() {
    let TwoNodes {
        n,
        path,
        ca_dir,
        node_a,
        node_b,
    } = two_nodes();
    let mut a = start_draining("node-a", node_a, &path, &ca_dir, 3, &[]);
    wait_ready(node_a);
    let _b = start("node-b", node_b, &path, &ca_dir, &[]);
    wait_ready(node_b);
    let live = http_get(SocketAddr::from((node_a, 15021)), "/healthz/live").unwrap();
    assert!(
        live.starts_with("HTTP/1.1 200") && live.ends_with("live\n"),
        "{live}"
    );

    let explicit = SocketAddr::from((node_a, 15080));
    let vip = SocketAddr::from((Ipv4Addr::new(127, n, 2, 1), 80));
    let (code, mut held) = socks(Ipv4Addr::new(127, n, 1, 1), explicit, vip);
    assert_eq!(code, 0, "SOCKS reply");
    let echo = |stream: &mut TcpStream, text: &[u8]| {
        stream.write_all(text).unwrap();
        let mut back = vec![0; text.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, text);
    };
    echo(&mut held, b"before");

    let deadline = sigterm(&a);
    while served(explicit) {
        assert!(
            Instant::now() < deadline,
            "node-a still serves new connections after SIGTERM"
        );
    }
    echo(&mut held, b"while draining");
    exits_cleanly(
        &mut a,
        deadline,
        "node-a did not exit at its drain deadline",
    );
    let mut rest = Vec::new();
    let cut = held
        .read_to_end(&mut rest)
        .map_or(true, |_| rest.is_empty());
    assert!(cut, "the held connection ends with the proxy");
}

/// A mesh of two node proxies' worth of loopback addresses (`127.n.0.2`, `127.n.0.3`), its
/// config file, a CA directory, and the echo workload behind the mesh's service.
struct TwoNodes {
    n: u8,
    path: std::path::PathBuf,
    ca_dir: std::path::PathBuf,
    node_a: Ipv4Addr,
    node_b: Ipv4Addr,
}

fn two_nodes() -> TwoNodes {
    let n = net();
    let dir = tempfile_dir();
    let path = dir.join("mesh.json");
    std::fs::write(&path, config(n)).unwrap();
    echo_server(SocketAddr::from((Ipv4Addr::new(127, n, 1, 2), 8080)));
    TwoNodes {
        n,
        path,
        ca_dir: dir.join("ca"),
        node_a: Ipv4Addr::new(127, n, 0, 2),
        node_b: Ipv4Addr::new(127, n, 0, 3),
    }
}

/// Sends SIGTERM to `proc`; returns the deadline for what follows.
fn sigterm(proc: &Proc) -> Instant {
    let status = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    Instant::now() + WAIT
}

/// Waits until `proc` exits (failing with `what` at `deadline`) and checks it exited 0.
fn exits_cleanly(proc: &mut Proc, deadline: Instant, what: &str) {
    let exit = loop {
        if let Some(exit) = proc.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

/// Whether a new connection to the explicit port gets a SOCKS answer (a closed listener
/// may still complete the TCP handshake from its backlog, so the answer is what counts).
fn served(explicit: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&explicit, Duration::from_secs(1)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reply = [0u8; 2];
    stream.write_all(&[5, 1, 0]).is_ok() && stream.read_exact(&mut reply).is_ok()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weft-node-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
