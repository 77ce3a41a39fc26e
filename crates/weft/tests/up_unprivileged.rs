//! `weft up` in explicit mode on loopback addresses: what it does without root, and with
//! `--explicit` as root (so CI, which runs as root, tests the same path).
//!
//! - `--explicit --demo --exit`: the start message, the table on loopback addresses, the
//!   demo's six outcomes (allowed with the caller's SPIFFE identity seen by the server-side
//!   proxy, denied by policy, the non-mesh pod refused as not enrolled, passthrough, the
//!   waypoint's L7 split and L7 denial), and
//!   nothing left running or on disk afterwards.
//! - A real non-root run with no flags, as the README's first command: as root the test
//!   drops to uid/gid 65534 with `setpriv` (util-linux) on a copy of the binary in a
//!   world-readable directory (the build directory may not be reachable by that user); as
//!   non-root it runs the binary as it is. Either way `weft up` must say it is not root, fall
//!   back, keep its files in a private per-user state directory, and the demo must go as
//!   expected.
//! - Ctrl-C after start stops every process and removes the instance directory.
//!
//! Each run has its own `--prefix` and temporary `--state-dir` (the no-flags run: its own
//! `TMPDIR`) and a leased loopback network, so the tests run in parallel; every wait polls
//! with a deadline.

mod up_harness;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use up_harness::{Up, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(90);
const NOBODY: &str = "65534";

/// Runs `command up extra.. --prefix P --state-dir D` (`command` is the weft binary, or
/// `setpriv` with its options followed by the binary).
fn start_up(command: Command, weft: PathBuf, extra: &[&str]) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    // Writable by an unprivileged user too.
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod state dir");
    Up::start(command, weft, state, unique_prefix('e'), extra, WAIT)
}

/// `N` of the loopback network `127.N.0.0/16` the run printed.
fn loopback_octet(up: &Up) -> String {
    let line = up
        .lines()
        .iter()
        .find(|l| l.contains("control plane on 127."))
        .unwrap_or_else(|| panic!("no loopback addresses in:\n{}", up.output()));
    let ip = line
        .split("control plane on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("control plane address");
    ip.split('.').nth(1).expect("second octet").to_owned()
}

/// Pids of processes whose command line mentions the loopback network `127.N.` (the
/// control plane, node proxies and echo pods all name their addresses).
fn processes_on(octet: &str) -> Vec<u32> {
    let needle = format!("127.{octet}.");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            });
            running
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(&needle)
        })
        .collect()
}

fn assert_demo_went_as_expected(up: &mut Up) {
    let summary = up.wait_line("steps as expected");
    let status = up.wait_exit();
    let output = up.output();
    assert_eq!(summary, "6/6 steps as expected", "{output}");
    assert!(status.success(), "{status}: {output}");
    let octet = loopback_octet(up);
    // The table: pods on loopback addresses, web enrolled with its identity, legacy not.
    assert!(
        up.lines().iter().any(|l| l.contains("frontend/web-0")
            && l.contains(&format!(" 127.{octet}."))
            && l.ends_with("spiffe://cluster.local/ns/frontend/sa/web")),
        "{output}"
    );
    assert!(
        up.lines()
            .iter()
            .any(|l| l.contains("legacy/legacy-client-0") && l.contains(" no ")),
        "{output}"
    );
    for expected in [
        // (1) allowed through web's node proxy; the server side saw web's identity
        "answered by catalog-v",
        "peer identity spiffe://cluster.local/ns/frontend/sa/web",
        // (2) denied by the AuthorizationPolicy: SOCKS5 "not allowed", reports' identity seen
        "connection not allowed (SOCKS5 reply 2",
        "peer identity spiffe://cluster.local/ns/frontend/sa/reports (denied",
        // (3) the non-mesh pod: refused by its node proxy as not enrolled
        "refuses it as not enrolled",
        // (4) passthrough to the non-mesh httpbin
        "answered by httpbin-0",
        // (5), (6) through the waypoint pod: split, and /admin denied at L7
        "reviews-v1 x",
        "HTTP 403 Forbidden / RBAC: access denied",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    assert!(!up.instance_dir().exists(), "instance directory left");
    assert_eq!(processes_on(&octet), Vec::<u32>::new(), "processes left");
}

#[test]
fn explicit_flag_runs_the_demo_on_loopback_and_leaves_nothing() {
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let mut up = start_up(
        Command::new(&weft),
        weft,
        &["--explicit", "--demo", "--exit"],
    );
    let first = up.wait_line("explicit mode");
    if is_root() {
        assert!(
            first.starts_with("--explicit: running in explicit mode on loopback"),
            "{first}"
        );
    }
    assert!(
        first.contains("SOCKS5/HTTP CONNECT port via ALL_PROXY/HTTP_PROXY"),
        "{first}"
    );
    assert!(
        first.contains("traffic is not captured transparently"),
        "{first}"
    );
    assert_demo_went_as_expected(&mut up);
}

/// A copy of the weft binary that uid 65534 can run (the build directory may be private).
fn world_runnable_weft(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let copy = dir.join("weft");
    std::fs::copy(env!("CARGO_BIN_EXE_weft"), &copy).expect("copy weft");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod weft");
    copy
}

/// The effective uid of this process.
fn euid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("read own status");
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    uids.split_whitespace().nth(2).expect("euid").to_owned()
}

/// The README's first command as a user without root would run it: no flags at all. The
/// state directory must then be one that user can write: `$XDG_RUNTIME_DIR/weft` only when
/// that directory is the user's own (here it is root's, as after `su`), else
/// `$TMPDIR/weft-<uid>`.
#[test]
fn without_root_weft_up_with_no_flags_says_so_and_falls_back_to_explicit_mode() {
    let bin_dir = tempfile::tempdir().expect("binary dir");
    let temp = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod temp dir");
    let (mut command, weft, uid) = if is_root() {
        let weft = world_runnable_weft(bin_dir.path());
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(&weft)
            // root's own runtime directory, inherited: not the user's, so not used
            .env("XDG_RUNTIME_DIR", bin_dir.path());
        (command, weft, NOBODY.to_owned())
    } else {
        let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
        let mut command = Command::new(&weft);
        command.env_remove("XDG_RUNTIME_DIR");
        (command, weft, euid())
    };
    command.env("TMPDIR", temp.path());
    let state_dir = temp.path().join(format!("weft-{uid}"));
    let mut up =
        Up::start_with_defaults(command, weft, temp, state_dir, &["--demo", "--exit"], WAIT);
    let first = up.wait_line("falling back");
    assert_eq!(
        first,
        "not running as root: falling back to explicit mode on loopback (workloads reach the \
         mesh through the node proxy's SOCKS5/HTTP CONNECT port via ALL_PROXY/HTTP_PROXY; \
         traffic is not captured transparently)"
    );
    assert_demo_went_as_expected(&mut up);
    // the run kept its files in the per-user directory it made private
    let meta = std::fs::metadata(&up.state_dir).expect("default state directory made");
    assert_eq!(meta.uid().to_string(), uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

#[test]
fn exec_runs_commands_as_a_pod_through_its_node_proxy() {
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let mut up = start_up(Command::new(&weft), weft, &["--explicit"]);
    up.wait_line("mesh is up");
    up.assert_exec_runs_commands_as_pods();
}

#[test]
fn ctrl_c_stops_every_process_and_removes_the_files() {
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let mut up = start_up(Command::new(&weft), weft, &["--explicit"]);
    up.wait_line("mesh is up");
    let octet = loopback_octet(&up);
    let pids = processes_on(&octet);
    // weft control + 2 node proxies + 8 pods
    assert!(pids.len() >= 11, "only {} processes: {pids:?}", pids.len());
    assert!(up.instance_dir().join("effective/mesh.yaml").exists());
    up.signal("-INT");
    let status = up.wait_exit();
    assert!(status.success(), "{status}: {}", up.output());
    assert_eq!(processes_on(&octet), Vec::<u32>::new(), "processes left");
    assert!(!up.instance_dir().exists(), "instance directory left");
}

#[test]
fn down_stops_what_a_killed_weft_up_left_running() {
    let weft = PathBuf::from(env!("CARGO_BIN_EXE_weft"));
    let mut up = start_up(Command::new(&weft), weft.clone(), &["--explicit"]);
    up.wait_line("mesh is up");
    let octet = loopback_octet(&up);
    up.signal("-KILL");
    up.wait_exit();
    assert!(
        processes_on(&octet).len() >= 11,
        "SIGKILL cannot stop the children"
    );
    let down = Command::new(&weft)
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
    assert!(text.contains("explicit-mode processes"), "{text}");
    assert_eq!(processes_on(&octet), Vec::<u32>::new(), "processes left");
    assert!(!up.instance_dir().exists(), "instance directory left");
}
