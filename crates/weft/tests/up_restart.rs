//! `weft restart` end to end through `weft up` (root: network namespaces; never skipped):
//! a gateway restarted under steady HTTP traffic from this machine's shell (keep-alive
//! clients and clients opening a connection per request) drops no request and resets no
//! connection; the new process (a new pid) serves afterwards and the old one drains and
//! exits; the same for a waypoint restarted under requests a pod sends through it (`weft
//! exec POD -- curl`); the same for both node proxies, restarted one after the other under
//! requests a pod sends to a Service with pods on both nodes; and the mesh root rotated
//! (`weft ca rotate`) under the same traffic. Requests `weft up` cannot
//! honour are refused with a reason.
//!
//! Each test has its own `--prefix`, state and config directory (the gateway test its own
//! pod CIDRs, second octet 221), so they run in parallel with the other `weft up` tests. Every wait polls a
//! condition with a deadline.

mod up_harness;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use up_harness::{Up, eventually, require_root_and_curl, unique_prefix};

const WAIT: Duration = Duration::from_secs(90);

/// One app behind a Gateway of class `weft` listening on port 80.
const SHOP: &str = "\
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.221.1.0/24}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
spec: {podCIDR: 10.221.2.0/24}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - {name: app, image: example/app, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec:
  selector: {app: app}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: front, namespace: shop}
spec:
  gatewayClassName: weft
  listeners: [{name: web, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: shop}
spec:
  parentRefs: [{name: front}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
";

/// Requests made by the clients, and every one that did not end in a 200.
#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    reused: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    /// Counts the `-w` lines (`CODE CONNECTS`) and the errors of one curl run.
    fn record(&self, output: &Output) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut failures = self.failures.lock().unwrap();
        if !output.status.success() || !stderr.trim().is_empty() {
            failures.push(format!("curl {}: {}", output.status, stderr.trim()));
        }
        for line in stdout.lines() {
            self.requests.fetch_add(1, Ordering::Relaxed);
            match line.split_once(' ') {
                Some(("200", connects)) => {
                    if connects == "0" {
                        self.reused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => failures.push(format!("response {line:?}")),
            }
        }
    }
}

/// One curl run of `requests` requests to `url` over one kept-alive connection (curl opens
/// a new one only when the server closes it), run by the command `via` (e.g. `weft exec
/// POD --`) or from this machine's shell when `via` is empty.
fn curl_run(via: &[String], url: &str, requests: usize) -> Output {
    let mut command = match via.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg("curl");
            command
        }
        None => Command::new("curl"),
    };
    command.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "%{http_code} %{num_connects}\n",
    ]);
    for _ in 0..requests {
        command.args(["-o", "/dev/null", url]);
    }
    command.output().expect("run curl")
}

/// Clients until `stop`: `keep_alive` of them sending 20 requests per connection, `fresh`
/// of them one request per connection.
fn start_clients(
    via: &[String],
    url: &str,
    keep_alive: usize,
    fresh: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    let per_run = std::iter::repeat_n(20, keep_alive).chain(std::iter::repeat_n(1, fresh));
    per_run
        .map(|requests| {
            let (via, url) = (via.to_vec(), url.to_owned());
            let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    tally.record(&curl_run(&via, &url, requests));
                }
            })
        })
        .collect()
}

/// Waits until the clients made at least `n` requests; returns how many they made.
fn wait_requests(tally: &Tally, n: usize) -> usize {
    eventually(WAIT, || {
        let done = tally.requests.load(Ordering::Relaxed);
        (done >= n)
            .then_some(done)
            .ok_or(format!("{done} requests"))
    })
}

/// Stops the clients, waits for them, and asserts that no request failed; returns how many
/// requests they made.
fn stop_clients(
    stop: &AtomicBool,
    clients: Vec<std::thread::JoinHandle<()>>,
    tally: &Tally,
    during: &str,
) -> usize {
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let failures = tally.failures.lock().unwrap();
    let requests = tally.requests.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed or were reset {during}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    requests
}

/// `weft up DIR` with its own prefix and state directory.
fn start_up(config: &std::path::Path) -> Up {
    start_up_with(config, &[])
}

/// [`start_up`] with `env` set for `weft up`.
fn start_up_with(config: &std::path::Path, env: &[(&str, &str)]) -> Up {
    let state = tempfile::tempdir().expect("state dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.envs(env.iter().copied());
    Up::start(
        command,
        env!("CARGO_BIN_EXE_weft").into(),
        state,
        unique_prefix('r'),
        &[config.to_str().expect("utf-8 path")],
        WAIT,
    )
}

/// `weft restart WORDS..` against `up`.
fn restart(up: &Up, words: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("restart")
        .args(words)
        .args(["--prefix", &up.prefix, "--state-dir"])
        .arg(&up.state_dir)
        .output()
        .expect("run weft restart")
}

/// The two pids of `restarted ...: pid NEW took over the listeners, pid OLD drains`.
fn pids(text: &str) -> (u32, u32) {
    let numbers: Vec<u32> = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .filter(|(word, _)| *word == "pid")
        .map(|(_, pid)| pid.parse().expect("a pid"))
        .collect();
    assert_eq!(numbers.len(), 2, "{text}");
    (numbers[0], numbers[1])
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Restarts `words` (`gateway NS/NAME`...) while clients run by `via` send requests to
/// `url`, and checks that none failed, that the old process drained and exited, that the
/// new one serves, and that `weft up` printed `printed` and no crash.
fn restart_under_traffic(up: &mut Up, via: &[String], url: &str, words: &[&str], printed: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(via, url, 3, 3, &stop, &tally);
    let before = wait_requests(&tally, 100);

    let restarted = restart(up, words);
    let text = String::from_utf8_lossy(&restarted.stdout).into_owned();
    assert!(
        restarted.status.success(),
        "{text}{}\nweft up:\n{}",
        String::from_utf8_lossy(&restarted.stderr),
        up.output()
    );
    let (new, old) = pids(&text);
    assert_ne!(new, old);
    // The old process drains and exits; the new one keeps serving.
    eventually(WAIT, || {
        (!running(old))
            .then_some(())
            .ok_or(format!("pid {old} still runs"))
    });
    // At least 100 requests after the drain, and over 200 since the restart began (a fast
    // drain leaves few in between).
    let after_drain = tally.requests.load(Ordering::Relaxed);
    wait_requests(&tally, (after_drain + 100).max(before + 201));
    let requests = stop_clients(&stop, clients, &tally, "across the restart");
    assert!(running(new), "the new process runs: pid {new}");
    eprintln!(
        "{requests} requests ({} before the restart, {} on reused connections); {}",
        before,
        tally.reused.load(Ordering::Relaxed),
        text.trim()
    );
    assert!(requests > before + 200, "{requests} requests");
    assert!(
        tally.reused.load(Ordering::Relaxed) > 0,
        "keep-alive clients reused connections"
    );
    let output = up.wait_line(printed);
    assert!(output.contains(&format!("pid {new}")), "{output}");
    assert!(
        !up.output().contains("exited"),
        "weft up reported no crash:\n{}",
        up.output()
    );
}

#[test]
fn a_gateway_restart_under_steady_traffic_drops_nothing() {
    require_root_and_curl();
    let config = tempfile::tempdir().expect("config dir");
    std::fs::write(config.path().join("shop.yaml"), SHOP).expect("write config");
    let mut up = start_up(config.path());
    let line = up.wait_line("gateway shop/front: ");
    let url = line.split_once(": ").expect("gateway line").1;
    let url = url.split(", ").next().expect("a URL").to_owned();
    up.wait_line("mesh is up");
    eventually(WAIT, || {
        let output = curl_run(&[], &url, 1);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.starts_with("200 ").then_some(()).ok_or(text)
    });

    // What cannot be restarted is refused with a reason, and changes nothing.
    let refused = restart(&up, &["gateway", "shop/nope"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("no gateway shop/nope"), "{error}");
    let refused = restart(&up, &["gateway", "nope"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("NAMESPACE/NAME"));

    restart_under_traffic(
        &mut up,
        &[],
        &url,
        &["gateway", "shop/front"],
        "restarted shop/front",
    );
}

#[test]
fn a_waypoint_restart_under_steady_traffic_from_a_pod_drops_nothing() {
    require_root_and_curl();
    let (_config, mut up, via) = bundled_mesh_with_client_pod(244);
    let url = "http://reviews.shop/";
    wait_served(&via, url);
    restart_under_traffic(
        &mut up,
        &via,
        url,
        &["waypoint", "shop/waypoint"],
        "restarted shop/waypoint",
    );
}

/// The bundled example mesh running with pod addresses `10.<octet>.<node>.x` (distinct per
/// test: gateway pods get host routes), and the command prefix that runs a command as the
/// pod `frontend/web-0` (on node-a). Keep the config directory while `weft up` runs.
fn bundled_mesh_with_client_pod(octet: u8) -> (tempfile::TempDir, Up, Vec<String>) {
    bundled_mesh_with_client_pod_env(octet, &[])
}

/// [`bundled_mesh_with_client_pod`] with `env` set for `weft up`.
fn bundled_mesh_with_client_pod_env(
    octet: u8,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, Up, Vec<String>) {
    let config = tempfile::tempdir().expect("config dir");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for file in ["cluster.yaml", "frontend.yaml", "shop.yaml", "reviews.yaml"] {
        let text = std::fs::read_to_string(examples.join(file)).expect("read example");
        let text = text.replace("10.244.", &format!("10.{octet}."));
        std::fs::write(config.path().join(file), text).expect("write example");
    }
    let mut up = start_up_with(config.path(), env);
    up.wait_line("mesh is up");
    let via: Vec<String> = [env!("CARGO_BIN_EXE_weft"), "exec", "frontend/web-0"]
        .into_iter()
        .map(str::to_owned)
        .chain([
            "--prefix".to_owned(),
            up.prefix.clone(),
            "--state-dir".to_owned(),
        ])
        .chain([up.state_dir.display().to_string(), "--".to_owned()])
        .collect();
    (config, up, via)
}

/// Waits until a request run by `via` to `url` answers 200.
fn wait_served(via: &[String], url: &str) {
    eventually(WAIT, || {
        let output = curl_run(via, url, 1);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.starts_with("200 ").then_some(()).ok_or(text)
    });
}

/// Both node proxies restarted, one after the other, while `frontend/web-0` (node-a) calls
/// `catalog.shop` (pods on both nodes): the client's proxy, then the servers' one.
#[test]
fn node_proxy_restarts_under_steady_traffic_from_a_pod_drop_nothing() {
    require_root_and_curl();
    let (_config, mut up, via) = bundled_mesh_with_client_pod(223);
    let url = "http://catalog.shop/";
    wait_served(&via, url);
    for node in ["node-a", "node-b"] {
        let printed = format!("restarted weft node {node}");
        restart_under_traffic(&mut up, &via, url, &[node], &printed);
    }
}

/// The roots `weft control` publishes (`<instance>/control/ca/trust-bundle.pem`), as PEM
/// blocks.
fn published_roots(up: &Up) -> Vec<String> {
    let path = up.instance_dir().join("control/ca/trust-bundle.pem");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_owned)
        .collect()
}

/// `weft ca rotate` while `frontend/web-0` (node-a) calls `catalog.shop` (pods on both
/// nodes, so node proxies verify each other's workload certificates): with 8-second
/// certificates the control plane publishes both roots, signs with the new one once every
/// holder has both, drops the old one once no live certificate chains to it, and no request
/// fails on the way.
#[test]
fn a_root_rotation_under_steady_traffic_from_a_pod_drops_nothing() {
    require_root_and_curl();
    let (_config, up, via) =
        bundled_mesh_with_client_pod_env(225, &[("WEFT_MAX_CERT_SECONDS", "8")]);
    let url = "http://catalog.shop/";
    wait_served(&via, url);
    let old = published_roots(&up);
    assert_eq!(old.len(), 1, "one root before the rotation: {old:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(&via, url, 2, 2, &stop, &tally);
    let before = wait_requests(&tally, 50);
    let rotate = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["ca", "rotate", "--state-dir"])
        .arg(up.instance_dir().join("control"))
        .output()
        .expect("run weft ca rotate");
    assert!(
        rotate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&rotate.stdout),
        String::from_utf8_lossy(&rotate.stderr)
    );
    eventually(WAIT, || {
        let roots = published_roots(&up);
        (roots.len() == 2 && roots[0] == old[0])
            .then_some(())
            .ok_or(format!("{} roots published", roots.len()))
    });
    let new = eventually(WAIT, || {
        let roots = published_roots(&up);
        let count = roots.len();
        (count == 1 && roots[0] != old[0])
            .then_some(roots)
            .ok_or(format!("{count} roots published"))
    });
    // Certificates from the new root only: the next renewals carry the bundle without the
    // old root to every proxy; traffic keeps flowing through and after that.
    let rotated = tally.requests.load(Ordering::Relaxed);
    wait_requests(&tally, rotated + 100);
    let requests = stop_clients(&stop, clients, &tally, "during the rotation");
    eprintln!("{requests} requests ({before} before the rotation, {rotated} when it completed)");
    assert_ne!(new, old);
}
