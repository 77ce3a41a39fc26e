//! The mesh's own processes: `weft control` in the underlay namespace, one `weft node`
//! per node namespace, and the runtime flags of each waypoint pod's `weft waypoint run` and
//! each gateway pod's `weft gateway`.
//! Their command lines are built only here, so adapting to flag changes of those subcommands
//! touches one file.

use crate::layout::Layout;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Control plane secure port (CA + xDS).
pub const CONTROL_SECURE_PORT: u16 = 15012;
/// Control plane admin port (`/ready`).
pub const CONTROL_ADMIN_PORT: u16 = 15014;
/// Node proxy admin port (`/connections`, config dump), bound on the node's underlay address.
pub const NODE_ADMIN_PORT: u16 = 15000;
/// Node proxy readiness port (`/healthz/ready`).
pub const NODE_READINESS_PORT: u16 = 15021;
/// Node proxy explicit-mode (SOCKS5 / HTTP CONNECT) port.
pub const NODE_EXPLICIT_PORT: u16 = 15080;
/// A waypoint's HBONE port.
pub const WAYPOINT_HBONE_PORT: u16 = 15008;
/// A waypoint's metrics port.
pub const WAYPOINT_METRICS_PORT: u16 = 15020;
/// A waypoint's readiness port.
pub const WAYPOINT_READINESS_PORT: u16 = 15021;

/// `weft control`'s command line (program first: the weft binary).
#[must_use]
pub fn control_argv(weft: &Path, layout: &Layout, config_dir: &Path, ip: Ipv4Addr) -> Vec<String> {
    let ip = IpAddr::V4(ip);
    let mut argv = vec![
        path_arg(weft),
        "control".into(),
        "--config-dir".into(),
        path_arg(config_dir),
        "--token-file".into(),
        path_arg(&layout.control_tokens()),
        "--state-dir".into(),
        path_arg(&layout.control_state_dir()),
        "--secure-addr".into(),
        SocketAddr::new(ip, CONTROL_SECURE_PORT).to_string(),
        "--admin-addr".into(),
        SocketAddr::new(ip, CONTROL_ADMIN_PORT).to_string(),
    ];
    // Short-lived certificates for root rotation drills and tests (`weft up` clears the
    // environment of the processes it starts, so it passes this one on as a flag).
    if let Ok(seconds) = std::env::var(MAX_CERT_SECONDS_ENV) {
        argv.extend(["--max-cert-seconds".into(), seconds]);
    }
    argv
}

/// Environment variable `weft up` turns into `weft control --max-cert-seconds`.
pub const MAX_CERT_SECONDS_ENV: &str = "WEFT_MAX_CERT_SECONDS";

/// What a `weft node` binary supports (probed from its `--help`, so `weft up` keeps working
/// while the node proxy's capture flags are still being added).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeFeatures {
    /// `--pod-socket PATH`: pods announced over a Unix socket, captured in-pod.
    pub pod_socket: bool,
    /// `--handoff-socket PATH`: a second `weft node` takes the listeners over (`weft restart`).
    pub handoff_socket: bool,
}

impl NodeFeatures {
    /// Asks `weft node --help`.
    #[must_use]
    pub fn probe(weft: &Path) -> Self {
        let help = std::process::Command::new(weft)
            .args(["node", "--help"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        Self {
            pod_socket: help.contains("--pod-socket"),
            handoff_socket: lists_flag(&help, "--handoff-socket"),
        }
    }
}

/// `weft node`'s command line for `node`, whose underlay address is `ip`.
#[must_use]
pub fn node_argv(
    weft: &Path,
    layout: &Layout,
    node: &str,
    ip: Ipv4Addr,
    control_ip: Ipv4Addr,
    features: NodeFeatures,
) -> Vec<String> {
    let mut argv = vec![
        path_arg(weft),
        "node".into(),
        "--control".into(),
        SocketAddr::new(IpAddr::V4(control_ip), CONTROL_SECURE_PORT).to_string(),
        "--node".into(),
        node.into(),
        "--token-file".into(),
        path_arg(&layout.node_token(node)),
        "--ca-root".into(),
        path_arg(&layout.ca_root()),
        "--bind-ip".into(),
        ip.to_string(),
        "--drain-timeout".into(),
        "1".into(),
        // JSON access-log lines: `weft up --demo` reads the identities proxies saw.
        "--access-log-format".into(),
        "json".into(),
    ];
    if features.pod_socket {
        argv.extend(["--pod-socket".into(), path_arg(&layout.node_socket(node))]);
    }
    if features.handoff_socket {
        argv.extend([
            "--handoff-socket".into(),
            path_arg(&node_handoff_socket(layout, node)),
        ]);
    }
    argv
}

/// The hand-off socket of `node`'s proxy (`weft restart NODE`).
#[must_use]
pub fn node_handoff_socket(layout: &Layout, node: &str) -> PathBuf {
    layout.handoff_socket(&format!("node-{node}"))
}

/// `--handoff-socket PATH` for a process whose `help` lists it (restarts without closing a
/// port: `weft restart`), else nothing.
#[must_use]
pub fn handoff_args(handoff: &Path, help: &str) -> Vec<String> {
    if lists_flag(help, "--handoff-socket") {
        vec!["--handoff-socket".into(), path_arg(handoff)]
    } else {
        Vec::new()
    }
}

/// How many sampled spans a waypoint or gateway keeps for the dashboard when `weft up`
/// turns tracing on.
pub const RECENT_SPANS: usize = 256;

/// `--trace-sampling SHARE --recent-spans N` when tracing is on (`sampling`), each only
/// when `help` lists it; nothing when tracing is off.
#[must_use]
pub fn trace_args(sampling: Option<f64>, help: &str) -> Vec<String> {
    let Some(sampling) = sampling else {
        return Vec::new();
    };
    let flags = [
        ("--trace-sampling", sampling.to_string()),
        ("--recent-spans", RECENT_SPANS.to_string()),
    ];
    let listed = flags.into_iter().filter(|(flag, _)| lists_flag(help, flag));
    listed
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
}

/// Where a waypoint's pod finds the control plane: what `weft up` adds to the pod's
/// `weft waypoint run --gateway NS/NAME` (the node proxy's control address, its node's
/// token and the CA root, and listeners on the pod's address). Flags the binary's
/// `weft waypoint run --help` does not list are left out, and the CA root goes by the
/// name the help uses.
#[must_use]
pub fn waypoint_args(
    layout: &Layout,
    node: &str,
    control_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    help: &str,
) -> Vec<String> {
    let on_pod = |port: u16| SocketAddr::new(IpAddr::V4(pod_ip), port).to_string();
    let listeners = [("--hbone-addr", on_pod(WAYPOINT_HBONE_PORT))];
    pod_proxy_args(layout, node, control_ip, pod_ip, help, listeners)
}

/// Where a gateway's pod finds the control plane and what it listens on: what `weft up`
/// adds to the pod's `weft gateway --gateway NS/NAME --service-account SA` (as for a
/// waypoint, with the Gateway's listener ports bound on the pod's address).
#[must_use]
pub fn gateway_args(
    layout: &Layout,
    node: &str,
    control_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    help: &str,
) -> Vec<String> {
    let listeners = [("--listen-ip", pod_ip.to_string())];
    pod_proxy_args(layout, node, control_ip, pod_ip, help, listeners)
}

/// The runtime flags of a waypoint's or gateway's container: the control plane, the node's
/// token, the CA root, `listeners`, and metrics/readiness/admin on the pod's address; each
/// only when `help` lists it (`--control` always).
fn pod_proxy_args<const N: usize>(
    layout: &Layout,
    node: &str,
    control_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    help: &str,
    listeners: [(&str, String); N],
) -> Vec<String> {
    let control = SocketAddr::new(IpAddr::V4(control_ip), CONTROL_SECURE_PORT).to_string();
    let on_pod = |port: u16| SocketAddr::new(IpAddr::V4(pod_ip), port).to_string();
    let ca_flag = if help.contains("--ca-root") {
        "--ca-root"
    } else {
        "--ca-cert"
    };
    let common = [
        ("--control", control),
        ("--token-file", path_arg(&layout.node_token(node))),
        (ca_flag, path_arg(&layout.ca_root())),
    ];
    let telemetry = [
        ("--metrics-addr", on_pod(WAYPOINT_METRICS_PORT)),
        ("--readiness-addr", on_pod(WAYPOINT_READINESS_PORT)),
        ("--admin-addr", on_pod(NODE_ADMIN_PORT)),
        ("--drain-timeout", "1".to_owned()),
        // JSON access-log lines, as the node proxies write them.
        ("--access-log-format", "json".to_owned()),
    ];
    let mut argv = Vec::new();
    for (flag, value) in common.into_iter().chain(listeners).chain(telemetry) {
        if flag == "--control" || lists_flag(help, flag) {
            argv.extend([flag.to_owned(), value]);
        }
    }
    argv
}

/// Whether a `--help` text lists `flag` (followed by its value).
#[must_use]
pub fn lists_flag(help: &str, flag: &str) -> bool {
    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}="))
}

/// `weft waypoint run --help` of `weft` (empty when it has no such command).
#[must_use]
pub fn waypoint_help(weft: &Path) -> String {
    help_of(weft, &["waypoint", "run"])
}

/// `weft gateway --help` of `weft` (empty when it has no such command).
#[must_use]
pub fn gateway_help(weft: &Path) -> String {
    help_of(weft, &["gateway"])
}

fn help_of(weft: &Path, command: &[&str]) -> String {
    std::process::Command::new(weft)
        .args(command)
        .arg("--help")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Why token files could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write token file {path}: {source}")]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Generates a random bearer token per node and writes the control plane's token file and
/// each node's token file (all mode 0600).
///
/// # Errors
/// A file cannot be written.
pub fn write_tokens<'a>(
    layout: &Layout,
    nodes: impl IntoIterator<Item = &'a str>,
) -> Result<(), TokenError> {
    let mut yaml =
        String::from("# generated by weft up: one bearer token per node proxy\ntokens:\n");
    for node in nodes {
        let token: String = rand::random::<[u8; 24]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_private(&layout.node_token(node), &token)?;
        yaml.push_str(&format!("- token: \"{token}\"\n  node: \"{node}\"\n"));
    }
    write_private(&layout.control_tokens(), &yaml)
}

fn write_private(path: &Path, text: &str) -> Result<(), TokenError> {
    let fail = |source| TokenError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn waypoint_args_use_the_flags_its_help_lists() {
        let layout = Layout::new(Path::new("/s"), "t");
        let (control, pod) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 244, 1, 5));
        let help = "  --control <ADDR>\n  --token-file <FILE>\n  --ca-cert <FILE>\n  \
                    --hbone-addr <ADDR>\n";
        let args = waypoint_args(&layout, "node-a", control, pod, help);
        let expected = [
            "--control".to_owned(),
            "10.0.0.1:15012".to_owned(),
            "--token-file".to_owned(),
            path_arg(&layout.node_token("node-a")),
            "--ca-cert".to_owned(),
            path_arg(&layout.ca_root()),
            "--hbone-addr".to_owned(),
            "10.244.1.5:15008".to_owned(),
        ];
        assert_eq!(args, expected);
        let args = waypoint_args(&layout, "node-a", control, pod, "--ca-root <F>");
        assert!(args.contains(&"--ca-root".to_owned()), "{args:?}");
    }

    #[test]
    fn gateway_args_listen_on_the_pod_address() {
        let layout = Layout::new(Path::new("/s"), "t");
        let (control, pod) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 244, 1, 5));
        let help = "  --control <ADDR>\n  --ca-root <FILE>\n  --listen-ip <IP>\n  \
                    --readiness-addr <ADDR>\n  --hbone-addr <ADDR>\n";
        let args = gateway_args(&layout, "node-a", control, pod, help);
        let expected = [
            "--control",
            "10.0.0.1:15012",
            "--ca-root",
            &path_arg(&layout.ca_root()),
            "--listen-ip",
            "10.244.1.5",
            "--readiness-addr",
            "10.244.1.5:15021",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn tokens_are_private_distinct_and_listed_for_the_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "t");
        write_tokens(&layout, ["node-a", "node-b"]).unwrap();
        let a = std::fs::read_to_string(layout.node_token("node-a")).unwrap();
        let b = std::fs::read_to_string(layout.node_token("node-b")).unwrap();
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
        let yaml = std::fs::read_to_string(layout.control_tokens()).unwrap();
        assert!(yaml.contains(&format!("- token: \"{a}\"\n  node: \"node-a\"")));
        for path in [layout.node_token("node-a"), layout.control_tokens()] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
