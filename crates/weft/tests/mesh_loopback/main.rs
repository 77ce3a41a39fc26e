//! The whole mesh on loopback, as real processes: `weft control` reads a config directory
//! modelled on `examples/` (pods pinned to loopback addresses), two `weft node` processes
//! get their state over delta xDS and their workload certificates from the control plane's
//! CA (TLS, node tokens, impersonation), and explicit-mode workloads talk through node-a's
//! SOCKS5 port. Checked: the example policies are enforced end to end, `weft status` sees
//! both nodes in sync, a policy edit reaches the proxies, and the proxies keep serving
//! new connections when the control plane dies.
//!
//! Addresses (n unique per test): control 127.n.0.1, node-a 127.n.0.2, node-b 127.n.0.3,
//! pods 127.n.1.x, the catalog ClusterIP 127.n.2.1. No root needed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod dashboard;

const WAIT: Duration = Duration::from_secs(20);
const WEB: u8 = 1;
const REPORTS: u8 = 2;
const CATALOG: u8 = 3;
const LEGACY: u8 = 4;
const SOCKS_OK: u8 = 0;
const SOCKS_NOT_ALLOWED: u8 = 2;
const WEB_PRINCIPAL: &str = "cluster.local/ns/frontend/sa/web";
const REPORTS_PRINCIPAL: &str = "cluster.local/ns/frontend/sa/reports";

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// The second octet of every address of one test, leased so that no other test, in this
/// process or another, shares its addresses or ports.
fn net() -> u8 {
    weft_testkit::loopback_net()
}

#[derive(Clone, Copy)]
struct Net(u8);

impl Net {
    fn control(self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 0, 1)
    }
    fn node_a(self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 0, 2)
    }
    fn node_b(self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 0, 3)
    }
    fn pod(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, 1, host)
    }
    fn catalog_vip(self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(127, self.0, 2, 1), 80))
    }
    fn control_admin(self) -> String {
        format!("{}:15014", self.control())
    }
}

fn namespace(name: &str, ambient: bool) -> String {
    let labels = if ambient {
        "\n  labels: {istio.io/dataplane-mode: ambient}"
    } else {
        ""
    };
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n")
}

fn pod(name: &str, ns: &str, app: &str, sa: Option<&str>, node: &str, ip: Ipv4Addr) -> String {
    let sa = sa.map_or(String::new(), |sa| format!("serviceAccountName: {sa}, "));
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, {sa}containers: [{{name: {app}, image: weft, ports: [{{containerPort: 8080}}]}}]}}\n\
         status: {{podIP: \"{ip}\"}}\n"
    )
}

/// The example mesh (`examples/`) reduced to one pod per workload, on loopback addresses.
fn mesh_yaml(net: Net) -> String {
    let mut docs = vec![
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n".to_owned(),
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n".to_owned(),
        namespace("istio-system", false),
        namespace("frontend", true),
        namespace("shop", true),
        namespace("legacy", false),
    ];
    for (ns, sa) in [
        ("frontend", "web"),
        ("frontend", "reports"),
        ("shop", "catalog"),
    ] {
        docs.push(format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n"
        ));
    }
    docs.push(pod(
        "web-0",
        "frontend",
        "web",
        Some("web"),
        "node-a",
        net.pod(WEB),
    ));
    docs.push(pod(
        "reports-0",
        "frontend",
        "reports",
        Some("reports"),
        "node-a",
        net.pod(REPORTS),
    ));
    docs.push(pod(
        "catalog-0",
        "shop",
        "catalog",
        Some("catalog"),
        "node-b",
        net.pod(CATALOG),
    ));
    docs.push(pod(
        "legacy-client-0",
        "legacy",
        "legacy-client",
        None,
        "node-a",
        net.pod(LEGACY),
    ));
    let vip = net.catalog_vip();
    docs.push(format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: catalog, namespace: shop}}\n\
         spec:\n  clusterIP: \"{}\"\n  selector: {{app: catalog}}\n  \
         ports: [{{name: http, port: {}, targetPort: 8080, appProtocol: http}}]\n",
        vip.ip(),
        vip.port()
    ));
    docs.push(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n"
            .to_owned(),
    );
    docs.join("---\n")
}

/// shop's L4 policy: only these principals may call catalog pods on 8080.
fn catalog_policy(principals: &[&str]) -> String {
    let quoted: Vec<String> = principals.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: catalog-allow-web, namespace: shop}}\n\
         spec:\n  selector: {{matchLabels: {{app: catalog}}}}\n  action: ALLOW\n  rules:\n  \
         - from: [{{source: {{principals: [{}]}}}}]\n    to: [{{operation: {{ports: [\"8080\"]}}}}]\n",
        quoted.join(", ")
    )
}

/// A child process killed (and reaped) when the test ends, passing or not.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (connected peers must not hold the process up).
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "cannot signal {}",
            self.name
        );
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(25));
        };
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early: {status}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One running mesh: the control plane, two node proxies and the catalog echo server.
struct Mesh {
    net: Net,
    dir: tempfile::TempDir,
    control: Proc,
    node_a: Proc,
    node_b: Proc,
    catalog: Echo,
}

impl Mesh {
    fn start(net: Net) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).expect("config dir");
        std::fs::write(config.join("mesh.yaml"), mesh_yaml(net)).expect("write mesh");
        std::fs::write(config.join("policy.yaml"), catalog_policy(&[WEB_PRINCIPAL]))
            .expect("write policy");
        std::fs::write(
            dir.path().join("tokens.yaml"),
            "tokens:\n  - {token: node-a-secret-0123456789, node: node-a}\n  \
             - {token: node-b-secret-0123456789, node: node-b}\n",
        )
        .expect("write tokens");
        for node in ["node-a", "node-b"] {
            std::fs::write(
                dir.path().join(format!("{node}.token")),
                format!("{node}-secret-0123456789\n"),
            )
            .expect("write node token");
        }
        let catalog = Echo::start(SocketAddr::from((net.pod(CATALOG), 8080)));
        let mut control = start_control(net, dir.path());
        let root = dir.path().join("state").join("ca").join("root-cert.pem");
        wait_for("the control plane admin port", || {
            http_get(&net.control_admin(), "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        control.assert_running();
        assert!(root.exists(), "CA root not persisted at {}", root.display());
        let node_a = start_node(net, dir.path(), "node-a", net.node_a(), &root);
        let node_b = start_node(net, dir.path(), "node-b", net.node_b(), &root);
        let mut mesh = Self {
            net,
            dir,
            control,
            node_a,
            node_b,
            catalog,
        };
        for ip in [net.node_a(), net.node_b()] {
            wait_for(&format!("node proxy on {ip} to be ready"), || {
                http_get(&format!("{ip}:15021"), "/healthz/ready")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            });
        }
        mesh.node_a.assert_running();
        mesh.node_b.assert_running();
        mesh
    }

    /// Starts a new control plane on the same addresses and state (hence the same CA root).
    fn restart_control(&mut self) {
        self.control = start_control(self.net, self.dir.path());
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// SOCKS5 CONNECT to `dst` through node-a's explicit port, from pod `host`'s address.
    fn socks_from(&self, host: u8, dst: SocketAddr) -> (u8, TcpStream) {
        socks_connect(
            self.net.pod(host),
            SocketAddr::from((self.net.node_a(), 15080)),
            dst,
        )
    }

    /// Opens web/reports/legacy -> catalog VIP and, when allowed, checks the echo.
    fn call_catalog(&self, host: u8) -> u8 {
        let (code, mut stream) = self.socks_from(host, self.net.catalog_vip());
        if code == SOCKS_OK {
            assert_eq!(round_trip(&mut stream, b"hello catalog"), b"hello catalog");
        }
        code
    }

    fn node_page(&self, node: Ipv4Addr, path: &str) -> String {
        let page = http_get(&format!("{node}:15000"), path).expect("node admin page");
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        page
    }
}

fn start_control(net: Net, dir: &Path) -> Proc {
    let child = weft()
        .arg("control")
        .arg("--config-dir")
        .arg(dir.join("config"))
        .arg("--token-file")
        .arg(dir.join("tokens.yaml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--secure-addr", &format!("{}:15012", net.control())])
        .args(["--admin-addr", &net.control_admin()])
        .stdout(Stdio::null())
        .stderr(log_file(dir, "control"))
        .spawn()
        .expect("spawn weft control");
    Proc {
        child,
        name: "weft control",
    }
}

fn start_node(net: Net, dir: &Path, node: &'static str, ip: Ipv4Addr, root: &Path) -> Proc {
    let child = weft()
        .arg("node")
        .args(["--control", &format!("{}:15012", net.control())])
        .args(["--node", node])
        .arg("--token-file")
        .arg(dir.join(format!("{node}.token")))
        .arg("--ca-root")
        .arg(root)
        .args(["--bind-ip", &ip.to_string(), "--drain-timeout", "1"])
        .stdout(Stdio::null())
        .stderr(log_file(dir, node))
        .spawn()
        .expect("spawn weft node");
    Proc { child, name: node }
}

/// Each process logs to a file in the test directory (read on failure, never parsed).
fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// A TCP echo server that counts the connections it accepted.
struct Echo {
    accepted: Arc<AtomicUsize>,
}

impl Echo {
    fn start(addr: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).expect("bind echo server");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || echo(stream));
            }
        });
        Self { accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn echo(stream: TcpStream) {
    let Ok(mut reader) = stream.try_clone() else {
        return;
    };
    let mut writer = stream;
    let _ = std::io::copy(&mut reader, &mut writer);
    let _ = writer.shutdown(Shutdown::Write);
}

/// Writes `payload`, half-closes, and reads everything the peer sends back.
fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    stream.write_all(payload).expect("write payload");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read echo");
    back
}

/// SOCKS5 CONNECT to an IPv4 `dst`; returns the reply code and the stream.
fn socks_connect(from: Ipv4Addr, proxy: SocketAddr, dst: SocketAddr) -> (u8, TcpStream) {
    let mut stream = connect_from(from, proxy);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.write_all(&[5, 1, 0]).expect("SOCKS greeting");
    let mut method = [0u8; 2];
    stream.read_exact(&mut method).expect("SOCKS method");
    assert_eq!(method, [5, 0], "SOCKS method choice");
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 destinations only")
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&dst.ip().octets());
    request.extend_from_slice(&dst.port().to_be_bytes());
    stream.write_all(&request).expect("SOCKS request");
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).expect("SOCKS reply");
    (reply[1], stream)
}

/// HTTP CONNECT to `dst`; returns the status line and the stream (tunnel if 200).
fn http_connect(from: Ipv4Addr, proxy: SocketAddr, dst: SocketAddr) -> (String, TcpStream) {
    let mut stream = connect_from(from, proxy);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    write!(stream, "CONNECT {dst} HTTP/1.1\r\nHost: {dst}\r\n\r\n").expect("CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).expect("read CONNECT answer") == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, stream)
}

/// A TCP connection whose source address is `from` (how the proxy knows the workload).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind source");
        let stream = socket.connect(to).await.expect("connect");
        let stream = stream.into_std().expect("std stream");
        stream.set_nonblocking(false).expect("blocking");
        stream
    })
}

fn weft_status(net: Net) -> Output {
    weft()
        .args(["status", "--control", &net.control_admin()])
        .output()
        .expect("run weft status")
}

/// True when `weft status` lists `node` with every resource type SYNCED.
fn node_synced(table: &str, node: &str) -> bool {
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(&format!("weft-node~{node}")))
        .collect();
    rows.len() >= 2
        && rows
            .iter()
            .all(|row| row.trim_end().ends_with("SYNCED") && !row.contains("NOT SYNCED"))
}

#[test]
fn control_plane_drives_two_node_proxies_that_enforce_the_example_policies() {
    let net = Net(net());
    let mesh = Mesh::start(net);

    // Both proxies connected over TLS and acknowledged the latest configuration.
    wait_for("both nodes SYNCED in `weft status`", || {
        let out = weft_status(net);
        let table = String::from_utf8_lossy(&out.stdout);
        out.status.success() && node_synced(&table, "node-a") && node_synced(&table, "node-b")
    });

    // frontend/web -> catalog VIP: allowed; the server-side proxy sees web's identity.
    let (code, mut open) = mesh.socks_from(WEB, net.catalog_vip());
    assert_eq!(code, SOCKS_OK, "web -> catalog must be allowed");
    open.write_all(b"ping").expect("write");
    let mut four = [0u8; 4];
    open.read_exact(&mut four).expect("echo while open");
    assert_eq!(&four, b"ping");
    let conns = mesh.node_page(net.node_b(), "/connections");
    assert!(
        conns.contains(&format!("spiffe://{WEB_PRINCIPAL}")),
        "node-b must see web's SPIFFE identity: {conns}"
    );
    assert_eq!(round_trip(&mut open, b""), b"");

    // HTTP CONNECT on the same port: web allowed, reports refused with 403.
    let proxy = SocketAddr::from((net.node_a(), 15080));
    let (status, mut tunnel) = http_connect(net.pod(WEB), proxy, net.catalog_vip());
    assert!(status.starts_with("HTTP/1.1 200"), "web CONNECT: {status}");
    assert_eq!(round_trip(&mut tunnel, b"via CONNECT"), b"via CONNECT");
    let (status, _) = http_connect(net.pod(REPORTS), proxy, net.catalog_vip());
    assert!(
        status.starts_with("HTTP/1.1 403"),
        "reports CONNECT: {status}"
    );

    // frontend/reports has its own identity, which the policy does not allow.
    let before = mesh.catalog.accepted();
    assert_eq!(
        mesh.call_catalog(REPORTS),
        SOCKS_NOT_ALLOWED,
        "reports -> catalog"
    );
    assert_eq!(
        mesh.catalog.accepted(),
        before,
        "a denied call must not reach catalog"
    );

    // legacy is not enrolled: node-a serves it nothing (no certificate, no listener, no
    // mTLS on its behalf), so it cannot reach STRICT shop through the proxy.
    assert_eq!(
        mesh.call_catalog(LEGACY),
        SOCKS_NOT_ALLOWED,
        "legacy -> catalog"
    );
    let certs = mesh.node_page(net.node_a(), "/certs");
    assert!(certs.contains("ns/frontend/sa/web"), "{certs}");
    assert!(
        !certs.contains("ns/legacy/"),
        "no identity for a non-mesh pod: {certs}"
    );
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((net.pod(LEGACY), 15008)), WAIT).is_err(),
        "no inbound HBONE listener for a non-mesh pod"
    );
    // Plaintext straight at catalog's HBONE port is not a way in either.
    let mut plain = connect_from(net.pod(LEGACY), SocketAddr::from((net.pod(CATALOG), 15008)));
    plain.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = plain.write_all(b"CONNECT 127.0.0.1:8080 HTTP/1.1\r\n\r\n");
    let mut sink = Vec::new();
    let _ = plain.read_to_end(&mut sink);
    assert!(!String::from_utf8_lossy(&sink).contains("200"), "{sink:?}");
    assert_eq!(
        mesh.catalog.accepted(),
        before,
        "plaintext must not reach catalog"
    );

    // Editing the policy file reaches node-b: reports becomes allowed.
    std::fs::write(
        mesh.config_dir().join("policy.yaml"),
        catalog_policy(&[WEB_PRINCIPAL, REPORTS_PRINCIPAL]),
    )
    .expect("edit policy");
    wait_for("the edited policy to allow reports", || {
        mesh.call_catalog(REPORTS) == SOCKS_OK
    });
    assert_eq!(mesh.call_catalog(WEB), SOCKS_OK, "web stays allowed");
}

#[test]
fn proxies_keep_serving_through_a_control_plane_outage_and_resync_after_it() {
    let net = Net(net());
    let mut mesh = Mesh::start(net);
    assert_eq!(
        mesh.call_catalog(WEB),
        SOCKS_OK,
        "web -> catalog before the outage"
    );

    // Both proxies hold xDS streams open; the control plane must still stop on SIGTERM.
    mesh.control.terminate();
    assert!(http_get(&net.control_admin(), "/ready").is_none());
    for _ in 0..3 {
        assert_eq!(
            mesh.call_catalog(WEB),
            SOCKS_OK,
            "web -> catalog during the outage"
        );
        assert_eq!(
            mesh.call_catalog(REPORTS),
            SOCKS_NOT_ALLOWED,
            "policy still enforced during the outage"
        );
    }
    mesh.node_a.assert_running();
    mesh.node_b.assert_running();
    for ip in [net.node_a(), net.node_b()] {
        let ready = http_get(&format!("{ip}:15021"), "/healthz/ready").expect("readiness");
        assert!(
            ready.starts_with("HTTP/1.1 200"),
            "{ip} stays ready: {ready}"
        );
    }

    // An edit made while the control plane is down is served by the next one, and both
    // proxies reconnect to it (same CA root from the state dir) and pick the edit up.
    std::fs::write(
        mesh.config_dir().join("policy.yaml"),
        catalog_policy(&[WEB_PRINCIPAL, REPORTS_PRINCIPAL]),
    )
    .expect("edit policy");
    mesh.restart_control();
    wait_for(
        "the restarted control plane to serve reports' new policy",
        || mesh.call_catalog(REPORTS) == SOCKS_OK,
    );
    wait_for("both nodes SYNCED with the restarted control plane", || {
        let out = weft_status(net);
        let table = String::from_utf8_lossy(&out.stdout);
        out.status.success() && node_synced(&table, "node-a") && node_synced(&table, "node-b")
    });
    mesh.control.assert_running();
}
