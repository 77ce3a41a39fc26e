//! `weft up` end to end (root: network namespaces; never skipped): the demo's four outcomes,
//! live edits, Ctrl-C cleanup, and `weft down` after `weft up` was killed.
//!
//! Each test runs the real binary with its own `--prefix` and a temporary `--state-dir`, so
//! tests run in parallel; every wait polls with a deadline.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn require_root() {
    assert!(
        nix_is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
}

fn nix_is_root() -> bool {
    // The effective uid is the second number of the Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A prefix no other test (or test run) uses at the same time.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "u{}x{}",
        std::process::id() % 1_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// A running `weft up` whose stdout lines arrive on a channel.
struct Up {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    prefix: String,
    state: tempfile::TempDir,
}

impl Up {
    fn start(extra: &[&str]) -> Up {
        let prefix = unique_prefix();
        let state = tempfile::tempdir().expect("temp state dir");
        let mut child = weft()
            .arg("up")
            .args(extra)
            .args(["--prefix", &prefix, "--state-dir"])
            .arg(state.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weft up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child,
            lines,
            seen: Vec::new(),
            prefix,
            state,
        }
    }

    /// Waits for a stdout line containing `text`.
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line with {text:?} in time; output:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "weft up ended before printing {text:?}; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait weft up") {
                return status;
            }
            assert!(Instant::now() < deadline, "weft up did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn instance_dir(&self) -> PathBuf {
        self.state.path().join(&self.prefix)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed test must not leave namespaces behind for the next run.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = weft()
            .args(["down", "--prefix", &self.prefix, "--state-dir"])
            .arg(self.state.path())
            .output();
    }
}

fn namespaces(prefix: &str) -> Vec<String> {
    let start = format!("{prefix}-");
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(&start))
                .collect()
        })
        .unwrap_or_default()
}

fn etc_netns(prefix: &str) -> Vec<String> {
    let start = format!("{prefix}-");
    std::fs::read_dir("/etc/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(&start))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of every process inside the instance's namespaces.
fn processes_in(prefix: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for ns in namespaces(prefix) {
        let out = Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .expect("ip netns pids");
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by a parent that is gone) does not count.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn assert_nothing_left(prefix: &str, instance: &Path, pids: &[u32]) {
    assert_eq!(namespaces(prefix), Vec::<String>::new(), "namespaces left");
    assert_eq!(
        etc_netns(prefix),
        Vec::<String>::new(),
        "/etc/netns entries left"
    );
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "processes left: {survivors:?}");
    assert!(!instance.exists(), "{} left", instance.display());
}

#[test]
fn demo_shows_allowed_denied_strict_and_passthrough() {
    require_root();
    let mut up = Up::start(&["--demo", "--exit"]);
    let summary = up.wait_line("steps as expected");
    let status = up.wait_exit();
    let output = up.seen.join("\n");
    assert_eq!(summary, "4/4 steps as expected", "{output}");
    assert!(status.success(), "{status}: {output}");
    // The table: web is enrolled with its SPIFFE identity, legacy is not.
    assert!(
        up.seen.iter().any(|l| l.contains("frontend/web-0")
            && l.contains("yes")
            && l.ends_with("spiffe://cluster.local/ns/frontend/sa/web")),
        "{output}"
    );
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("legacy/legacy-client-0") && l.contains(" no ")),
        "{output}"
    );
    for expected in [
        // (1) allowed, and the server-side proxy saw web's identity
        "peer identity spiffe://cluster.local/ns/frontend/sa/web",
        "HTTP 200 OK; answered by catalog-v",
        // (2) denied by the AuthorizationPolicy, reports' identity seen
        "peer identity spiffe://cluster.local/ns/frontend/sa/reports (denied",
        // (3) STRICT: plaintext from the legacy pod refused by the mTLS policy
        "weft-mtls-strict",
        // (4) passthrough answered by httpbin
        "answered by httpbin-0",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    assert_nothing_left(&up.prefix, &up.instance_dir(), &[]);
}

#[test]
fn ctrl_c_removes_every_namespace_process_and_file() {
    require_root();
    let mut up = Up::start(&[]);
    up.wait_line("mesh is up");
    let pids = processes_in(&up.prefix);
    // control + 2 node proxies + 8 pods' containers, all inside the mesh's namespaces
    assert!(pids.len() >= 11, "only {} processes: {pids:?}", pids.len());
    assert!(
        namespaces(&up.prefix).len() >= 11,
        "{:?}",
        namespaces(&up.prefix)
    );
    assert!(!etc_netns(&up.prefix).is_empty());
    up.signal("-INT");
    let status = up.wait_exit();
    assert!(status.success(), "{status}: {}", up.seen.join("\n"));
    assert_nothing_left(&up.prefix, &up.instance_dir(), &pids);
}

#[test]
fn down_cleans_up_after_weft_up_was_killed() {
    require_root();
    let mut up = Up::start(&[]);
    up.wait_line("mesh is up");
    let pids = processes_in(&up.prefix);
    up.signal("-KILL");
    up.wait_exit();
    assert!(
        !namespaces(&up.prefix).is_empty(),
        "SIGKILL cannot clean up"
    );
    let down = weft()
        .args(["down", "--prefix", &up.prefix, "--state-dir"])
        .arg(up.state.path())
        .output()
        .expect("run weft down");
    let text = String::from_utf8_lossy(&down.stdout);
    assert!(
        down.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(text.contains("removed"), "{text}");
    assert_nothing_left(&up.prefix, &up.instance_dir(), &pids);
}

#[test]
fn edits_to_the_directory_add_and_remove_pods_live() {
    require_root();
    let config = tempfile::tempdir().expect("config dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for file in ["cluster.yaml", "frontend.yaml", "legacy.yaml", "shop.yaml"] {
        std::fs::copy(examples.join(file), config.path().join(file)).expect("copy example");
    }
    let dir = config.path().to_str().expect("utf-8 path").to_owned();
    let mut up = Up::start(&[&dir]);
    up.wait_line("mesh is up");
    let pod_ns = format!("{}-p-legacy.extra-0", up.prefix);

    let extra = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: extra, namespace: legacy}
spec:
  selector: {matchLabels: {app: extra}}
  template:
    metadata: {labels: {app: extra}}
    spec:
      containers:
      - name: extra
        image: example/extra
        ports: [{containerPort: 9000}]
";
    std::fs::write(config.path().join("extra.yaml"), extra).expect("write extra.yaml");
    up.wait_line("added pod legacy/extra-0");
    assert!(namespaces(&up.prefix).contains(&pod_ns));
    let log = up.instance_dir().join("logs/legacy/extra-0/extra.log");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("0.0.0.0:9000")) {
        assert!(
            Instant::now() < deadline,
            "image-only container did not serve :9000"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    std::fs::remove_file(config.path().join("extra.yaml")).expect("remove extra.yaml");
    up.wait_line("removed pod legacy/extra-0");
    assert!(!namespaces(&up.prefix).contains(&pod_ns));

    up.signal("-TERM");
    assert!(up.wait_exit().success());
    assert_nothing_left(&up.prefix, &up.instance_dir(), &[]);
}
