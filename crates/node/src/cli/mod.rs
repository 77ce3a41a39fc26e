//! The node proxy's command line, shared by `weft node` and the `weft-node` binary (the
//! node proxy alone, without the control plane, installer and CLI tools, so its process
//! maps only the node's code): [`NodeArgs`] are the flags (a contract: both commands take
//! exactly these), [`run`] starts the proxy from them and runs it until SIGTERM or ctrl-c,
//! then drains open connections up to a deadline. With `--handoff-socket PATH` it takes
//! the listeners over from a proxy offering them there (a restart: see [`crate::handoff`]),
//! offers its own on PATH, and when a successor takes them it stops accepting, drains and
//! exits. [`main`] is the whole `weft-node` binary.
//!
//! - [`flags`]: flag groups other weft proxies share (limits, access-log format);
//! - `config`: flags to a [`crate::process::NodeConfig`];
//! - `lifecycle`: start, hand-off, shutdown and drain.

mod config;
pub mod flags;
mod lifecycle;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Parser as _};

pub use flags::{AccessLogArgs, HboneLimits, NodeLimits};

// The `weft-node` binary's command line: `weft node`'s flags and `--log-level`, as `weft`
// takes it before a subcommand. (A doc comment here would be its `--help` text.)
/// Run the node proxy (HBONE mTLS tunnels, L4 policy, telemetry) for one node.
#[derive(Debug, clap::Parser)]
#[command(name = "weft-node", version, long_about = None)]
pub struct NodeCommand {
    // Flattened first and `--log-level` placed as `weft`'s global flag is, so that the help
    // lists the flags in `weft node --help`'s order.
    #[command(flatten)]
    pub args: NodeArgs,
    /// Log filter (e.g. `info`, `weft=debug`); overrides `RUST_LOG`.
    #[arg(long, env = "WEFT_LOG", display_order = 0)]
    pub log_level: Option<String>,
}

/// The long flags of the node proxy's command line (without dashes, `help` and `version`
/// included): what `weft-node --help` and `weft node --help` must both list.
pub fn flag_names() -> std::collections::BTreeSet<String> {
    let command = <NodeCommand as clap::CommandFactory>::command();
    let mut names: std::collections::BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    names.extend(["help".to_owned(), "version".to_owned()]);
    names
}

/// The `weft-node` binary: parses [`NodeCommand`], sets up logging and runs the proxy;
/// errors are printed and exit with code 2, as `weft` does.
pub fn main() -> ExitCode {
    // One crypto provider for the whole process, chosen before any TLS config is built.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("weft-node: a rustls crypto provider was already installed");
    }
    let command = NodeCommand::parse();
    weft_serve::logging::init(command.log_level.as_deref());
    match run(command.args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Run the node proxy (HBONE mTLS tunnels, L4 policy, telemetry) for one node.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("source").required(true).args(["control", "local_config"])))]
pub struct NodeArgs {
    /// Control plane secure address (xDS + CA), e.g. `weft-control:15012` or `127.0.0.1:15012`.
    #[arg(long, requires = "token_file")]
    control: Option<String>,
    /// Run from a local file of workloads/services/policies (proto JSON mapping, YAML or JSON).
    #[arg(long, value_name = "FILE")]
    local_config: Option<PathBuf>,
    /// This node's name: workloads whose `node` is this name are served here.
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Bearer token for the control plane (re-read on every request).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM roots that sign the control plane's serving certificate (the mesh root); also
    /// trusted for peer workload certificates.
    #[arg(long, value_name = "FILE")]
    ca_root: Option<PathBuf>,
    /// DNS name the control plane's certificate must carry.
    #[arg(long, default_value = "weft-control.weft-system.svc")]
    control_san: String,
    /// Cluster id sent to the control plane (`clusterid`).
    #[arg(long)]
    cluster_id: Option<String>,
    /// With --local-config: sign workload certificates with a local self-signed CA.
    /// Never use this in production: anyone with the CA key can impersonate workloads.
    #[arg(long)]
    insecure_local_ca: bool,
    /// With --insecure-local-ca: keep the local CA in this directory (created if missing),
    /// so several node processes share one root. Without it the root lives in memory.
    #[arg(long, value_name = "DIR", requires = "insecure_local_ca")]
    local_ca_dir: Option<PathBuf>,
    /// Trust domain of workload identities.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Network of this node (empty = default network).
    #[arg(long, default_value = "")]
    network: String,
    /// IP for every node-level listener (explicit, admin, metrics, readiness, capture);
    /// by default explicit and admin use 127.0.0.1, metrics and readiness 0.0.0.0.
    #[arg(long)]
    bind_ip: Option<IpAddr>,
    /// SOCKS5 / HTTP CONNECT port for explicit-mode workloads.
    #[arg(long, default_value_t = 15080)]
    explicit_port: u16,
    /// Inbound HBONE port, bound on each local workload's address (and dialled on remote ones).
    #[arg(long, default_value_t = 15008)]
    hbone_port: u16,
    /// Also bind the capture listeners (outbound and plaintext inbound, destinations from
    /// SO_ORIGINAL_DST) on the node address.
    #[arg(long)]
    capture_listeners: bool,
    /// Outbound capture port (with --capture-listeners).
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Plaintext inbound capture port (with --capture-listeners).
    #[arg(long, default_value_t = 15006)]
    inbound_plaintext_port: u16,
    /// Admin port (config_dump, certs, connections, logging).
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Prometheus port (`/metrics`).
    #[arg(long, default_value_t = 15020)]
    metrics_port: u16,
    /// Readiness port (`/healthz/ready`).
    #[arg(long, default_value_t = 15021)]
    readiness_port: u16,
    /// Do not bind `<workload ip>:<hbone port>` automatically (a capture component
    /// provides per-pod listeners instead).
    #[arg(long)]
    no_workload_listeners: bool,
    /// In-pod capture: learn this node's pods from a Unix socket at PATH (one JSON line
    /// per request: add/remove/list, see `weft_node::capture::source`), open each enrolled
    /// pod's listeners inside its network namespace and install its redirect rules. The
    /// pod list is kept in `PATH.pods.json` and recaptured after a restart. Implies
    /// --no-workload-listeners.
    #[arg(long, value_name = "PATH")]
    pod_socket: Option<PathBuf>,
    /// Kubernetes in-pod capture: the pod socket at PATH (as --pod-socket) that the
    /// `weft-cni` plugin hands each new pod to; on start (and when the mesh enrolls a
    /// workload no known pod holds) the node's network namespaces are searched for the
    /// pods of enrolled workloads that started before the proxy or its plugin.
    #[arg(long, value_name = "PATH", conflicts_with = "pod_socket")]
    cni_socket: Option<PathBuf>,
    /// With --pod-socket or --cni-socket: the node's own network namespace (the
    /// kubelet's; `/proc/1/ns/net` from a hostPID pod). Its connections to captured pods
    /// leave from 169.254.7.127 (fd16:9254:7127:1337:ffff:ffff:ffff:ffff), which the pods'
    /// rules let past the redirect: kubelet HTTP/TCP probes work under STRICT mTLS.
    #[arg(long, value_name = "PATH")]
    probe_snat_netns: Option<PathBuf>,
    /// Resolver (IP:PORT) for names the DNS proxy (with --pod-socket or --cni-socket) does
    /// not know; without one they fail at once. Also the resolver for endpoints known by
    /// host name only (a `resolution: DNS` ServiceEntry's hosts), which otherwise use
    /// /etc/resolv.conf.
    #[arg(long, value_name = "ADDR")]
    dns_upstream: Option<SocketAddr>,
    /// Kubernetes cluster domain for the DNS proxy.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Seconds to let open connections finish after SIGTERM / ctrl-c.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    drain_timeout: u64,
    /// Restart without dropping traffic: take over the listening sockets (node ports, the
    /// pod socket and every captured pod's listeners) from the proxy offering them on this
    /// Unix socket, once configuration and certificates are ready; then offer this
    /// proxy's own there for the next one. Start a second `weft node` with the same flags
    /// to restart.
    #[arg(long, value_name = "PATH")]
    handoff_socket: Option<PathBuf>,
    /// Seconds a proxy replaced through --handoff-socket keeps its open connections and
    /// HBONE tunnels flowing before it cuts them and exits (a SIGTERM shortens it to
    /// --drain-timeout).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    handoff_drain_timeout: u64,
    /// Threads running the proxy (default: one per CPU). Fewer threads mean fewer
    /// cross-thread wake-ups per packet (lower latency) and less CPU for throughput.
    #[arg(long, env = "WEFT_WORKER_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    /// Close a connection after this many seconds without traffic (0 = never).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Streams per pooled HBONE connection before another is opened.
    #[arg(long, default_value_t = 100)]
    max_streams_per_connection: usize,
    /// Pooled HBONE connections to one peer that its streams are spread over: while each
    /// open connection carries a stream, a new stream opens another one (and waits for its
    /// handshake), so the streams run on several cores. Default 1: a second connection
    /// only at --max-streams-per-connection (spreading showed no gain on 2 cores).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    hbone_spread_connections: u16,
    #[command(flatten)]
    access_log: AccessLogArgs,
    #[command(flatten)]
    limits: NodeLimits,
}

/// Runs the node proxy until a shutdown signal (or, with `--handoff-socket`, until a
/// successor took its listeners and its connections drained).
///
/// # Errors
/// When the flags do not make a configuration, or the proxy cannot start.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(lifecycle::serve(args))
}
