//! `weft up` end to end (root: network namespaces; never skipped): the demo's seven outcomes,
//! live edits, Ctrl-C cleanup, and `weft down` after `weft up` was killed.
//!
//! Each test runs the real binary with its own `--prefix` and a temporary `--state-dir`, so
//! tests run in parallel; every wait polls with a deadline.

mod up_harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use up_harness::{Up, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(60);

fn require_root() {
    assert!(
        is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
}

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// `weft up extra..` as the current user, with its own prefix and state directory.
fn start_up(extra: &[&str]) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    let binary = env!("CARGO_BIN_EXE_weft").into();
    Up::start(weft(), binary, state, unique_prefix('u'), extra, WAIT)
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
fn demo_shows_allowed_denied_strict_passthrough_and_the_waypoints_split_and_denial() {
    require_root();
    let mut up = start_up(&["--demo", "--exit"]);
    let summary = up.wait_line("steps as expected");
    let status = up.wait_exit();
    let output = up.output();
    // six steps inside the mesh, and (7) ingress through the shop gateway
    assert_eq!(summary, "7/7 steps as expected", "{output}");
    assert!(status.success(), "{status}: {output}");
    // The table: web is enrolled with its SPIFFE identity, legacy is not, the waypoint runs
    // as its own pod with its own identity.
    assert!(
        up.lines().iter().any(|l| l.contains("frontend/web-0")
            && l.contains("yes")
            && l.ends_with("spiffe://cluster.local/ns/frontend/sa/web")),
        "{output}"
    );
    assert!(
        up.lines()
            .iter()
            .any(|l| l.contains("legacy/legacy-client-0") && l.contains(" no ")),
        "{output}"
    );
    assert!(
        up.lines().iter().any(|l| l.contains("shop/waypoint-")
            && l.contains(" waypoint ")
            && l.ends_with("spiffe://cluster.local/ns/shop/sa/waypoint")),
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
        // (5) the waypoint split reviews' requests between both versions
        "reviews-v1 x",
        // (6) and denied /admin at L7
        "HTTP 403 Forbidden / RBAC: access denied",
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
    let mut up = start_up(&[]);
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
    assert!(status.success(), "{status}: {}", up.output());
    assert_nothing_left(&up.prefix, &up.instance_dir(), &pids);
}

#[test]
fn exec_runs_commands_as_a_pod_in_its_namespace() {
    require_root();
    let mut up = start_up(&[]);
    up.wait_line("mesh is up");
    up.assert_exec_runs_commands_as_pods();
}

#[test]
fn down_cleans_up_after_weft_up_was_killed() {
    require_root();
    let mut up = start_up(&[]);
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
        .arg(&up.state_dir)
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
    let mut up = start_up(&[&dir]);
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
