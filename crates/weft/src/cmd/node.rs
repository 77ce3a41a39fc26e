//! `weft node`: the per-node proxy. Flags become a `weft_node::process::NodeConfig`; the
//! proxy runs until SIGTERM or ctrl-c, then drains open connections up to a deadline.
//! With `--handoff-socket PATH` it takes the listeners over from a proxy offering them
//! there (a restart: see `weft_node::handoff`), offers its own on PATH, and when a
//! successor takes them it stops accepting, drains and exits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ArgGroup;
use weft_identity::{
    CertManagerConfig, CertificateAuthority, CertificateProvider, GrpcCaClient, GrpcCaClientConfig,
    LocalCaProvider, TokenSource, TrustBundle,
};
use weft_node::capture::{CaptureConfig, CaptureOptions, source};
use weft_node::handoff::Handoff;
use weft_node::process::{ListenAddrs, NodeConfig, StateSource, XdsSource};
use weft_node::proxy::ProxyOptions;
use weft_serve::handoff::Takeover;

/// Run the node proxy (HBONE mTLS tunnels, L4 policy, telemetry) for one node.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("source").required(true).args(["control", "local_config"])))]
pub struct Args {
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
    /// With --pod-socket or --cni-socket: resolver (IP:PORT) for names the DNS proxy does
    /// not know (without one they fail at once).
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
    access_log: super::waypoint::run::AccessLogArgs,
    #[command(flatten)]
    limits: super::limit_flags::NodeLimits,
}

/// Runs `weft node` until a shutdown signal.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let drain = Duration::from_secs(args.drain_timeout);
    let handoff_drain = Duration::from_secs(args.handoff_drain_timeout);
    let handoff_socket = args.handoff_socket.clone();
    let handoff = take_over(handoff_socket.as_deref()).await?;
    let capture = capture_options(&args);
    let config = node_config(args)?;
    let mut running = weft_node::process::run_with_handoff(config, handoff.clone()).await?;
    let capture = match capture {
        Some((socket, options)) => {
            let node = running.node.clone();
            Some(source::start_with_pod_socket(node, &socket, options, handoff.clone()).await?)
        }
        None => None,
    };
    complete_takeover(&handoff).await;
    tracing::info!(addrs = ?running.addrs, "weft node started");
    let replaced = async {
        let Some(path) = &handoff_socket else {
            return std::future::pending().await;
        };
        match weft_node::handoff::offer_until_replaced(path, &handoff).await {
            Ok(successor) => successor,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot offer the listeners: a restart will not take them over");
                std::future::pending().await
            }
        }
    };
    let successor = tokio::select! {
        () = shutdown_signal() => None,
        successor = replaced => Some(successor),
    };
    let cut = match successor {
        None => {
            if let Some(capture) = capture {
                // Listeners close; the pods' redirect rules stay for the next proxy.
                capture.shutdown().await;
            }
            tracing::info!(
                ?drain,
                "shutting down: no new connections, draining open ones"
            );
            running.shutdown(drain).await
        }
        Some(successor) => {
            if let Some(capture) = capture {
                capture.release().await;
            }
            running.step_down();
            tracing::info!(
                successor = successor.pid,
                ?handoff_drain,
                "replaced: the successor accepts now; draining open connections"
            );
            let node = running.node.clone();
            tokio::select! {
                cut = running.shutdown(handoff_drain) => cut,
                cut = async { shutdown_signal().await; node.shutdown(drain).await } => cut,
            }
        }
    };
    if cut > 0 {
        tracing::warn!(cut, "closed connections still open at the drain deadline");
    }
    Ok(ExitCode::SUCCESS)
}

/// The sockets of the proxy offering on `path`, if one does.
async fn take_over(path: Option<&std::path::Path>) -> anyhow::Result<Handoff> {
    let Some(path) = path else {
        return Ok(Handoff::fresh());
    };
    let takeover = Takeover::connect(path)
        .await
        .with_context(|| format!("taking over from the proxy at {}", path.display()))?;
    Ok(match takeover {
        Some(takeover) => {
            tracing::info!(path = %path.display(), sockets = takeover.names().len(), "taking over from the running proxy once ready");
            Handoff::taking_over(takeover)
        }
        None => Handoff::fresh(),
    })
}

/// Tells the predecessor (if any) that this proxy serves now.
async fn complete_takeover(handoff: &Handoff) {
    let taking_over = handoff.is_taking_over();
    match handoff.complete().await {
        Ok(()) if taking_over => tracing::info!("took over: the previous proxy stopped accepting"),
        Ok(()) => {}
        Err(error) => tracing::warn!(%error, "the previous proxy did not confirm the hand-off"),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; only ctrl-c stops the proxy");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn node_config(args: Args) -> anyhow::Result<NodeConfig> {
    let (state, ca, trust) = match (&args.control, &args.local_config) {
        (Some(control), _) => control_source(&args, control)?,
        (None, Some(path)) => local_source(&args, path.clone())?,
        (None, None) => bail!("give --control ADDR or --local-config FILE"),
    };
    let mut options = ProxyOptions {
        node_name: args.node.clone(),
        network: args.network.clone(),
        hbone_port: args.hbone_port,
        pool: weft_hbone_pool(&args),
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        access_log: args.access_log.format(),
        ..ProxyOptions::default()
    };
    args.limits.apply(&mut options);
    Ok(NodeConfig {
        options,
        listen: listen_addrs(&args),
        state,
        ca,
        trust,
        certs: CertManagerConfig::default(),
        log_control: super::log_filter_control(),
    })
}

fn weft_hbone_pool(args: &Args) -> weft_node::proxy::PoolConfig {
    weft_node::proxy::PoolConfig {
        max_streams_per_connection: args.max_streams_per_connection.max(1),
        spread_connections: usize::from(args.hbone_spread_connections),
        ..weft_node::proxy::PoolConfig::default()
    }
}

fn listen_addrs(args: &Args) -> ListenAddrs {
    let local = args.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let any = args.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let capture = |port| args.capture_listeners.then_some(SocketAddr::new(any, port));
    ListenAddrs {
        explicit: Some(SocketAddr::new(local, args.explicit_port)),
        outbound: capture(args.outbound_port),
        inbound_plaintext: capture(args.inbound_plaintext_port),
        admin: Some(SocketAddr::new(local, args.admin_port)),
        metrics: Some(SocketAddr::new(any, args.metrics_port)),
        readiness: Some(SocketAddr::new(any, args.readiness_port)),
        workload_hbone_listeners: !args.no_workload_listeners && pod_socket(args).is_none(),
    }
}

type Sources = (StateSource, Arc<dyn CertificateProvider>, TrustBundle);

fn local_source(args: &Args, path: PathBuf) -> anyhow::Result<Sources> {
    if !args.insecure_local_ca {
        bail!(
            "--local-config needs a certificate authority: pass --insecure-local-ca to sign \
             workload certificates with a local self-signed CA (development only), or use \
             --control to get certificates from the control plane"
        );
    }
    let ca = match &args.local_ca_dir {
        Some(dir) => CertificateAuthority::load_or_create_self_signed(dir)
            .with_context(|| format!("local CA in {}", dir.display()))?,
        None => CertificateAuthority::generate_in_memory().context("generating a local CA")?,
    };
    tracing::warn!(
        ca = ca.description(),
        "using an INSECURE local CA (--insecure-local-ca)"
    );
    let trust = TrustBundle::new(args.trust_domain.clone(), [ca.root().clone()])
        .context("trust bundle of the local CA")?;
    let provider: Arc<dyn CertificateProvider> = Arc::new(LocalCaProvider::new(Arc::new(ca)));
    Ok((StateSource::LocalFile(path), provider, trust))
}

fn control_source(args: &Args, control: &str) -> anyhow::Result<Sources> {
    let Some(ca_root) = &args.ca_root else {
        bail!(
            "--control needs --ca-root FILE: the PEM root that signs the control plane's certificate"
        );
    };
    let pem = std::fs::read_to_string(ca_root)
        .with_context(|| format!("reading --ca-root {}", ca_root.display()))?;
    let trust = TrustBundle::from_pem(args.trust_domain.clone(), &pem)
        .with_context(|| format!("--ca-root {}", ca_root.display()))?;
    let token_file = args
        .token_file
        .clone()
        .context("--control needs --token-file FILE")?;
    let endpoint = format!("https://{control}");
    let ca = GrpcCaClient::new(GrpcCaClientConfig {
        cluster_id: args.cluster_id.clone(),
        ..GrpcCaClientConfig::node_proxy(
            endpoint.clone(),
            args.control_san.clone(),
            trust.clone(),
            TokenSource::File(token_file.clone()),
        )
    })
    .context("CA client")?;
    let channel = weft_node::process::control_channel(&endpoint, &args.control_san, &trust)?;
    let token: Arc<dyn Fn() -> Option<String> + Send + Sync> = Arc::new(move || {
        std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    let source = XdsSource {
        channel,
        token: Some(token),
        cluster_id: args.cluster_id.clone(),
    };
    Ok((StateSource::Xds(source), Arc::new(ca), trust))
}

/// The pod socket: `--pod-socket` or `--cni-socket`.
fn pod_socket(args: &Args) -> Option<&PathBuf> {
    args.pod_socket.as_ref().or(args.cni_socket.as_ref())
}

/// The pod socket and capture settings, when `--pod-socket` or `--cni-socket` is given.
fn capture_options(args: &Args) -> Option<(PathBuf, CaptureOptions)> {
    let socket = pod_socket(args)?.clone();
    let rules = CaptureConfig {
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_plaintext_port,
        hbone_port: args.hbone_port,
        ..CaptureConfig::default()
    };
    let mut options = CaptureOptions {
        rules,
        dns_upstream: args.dns_upstream,
        cluster_domain: args.cluster_domain.clone(),
        state_file: Some(source::state_file_for(&socket)),
        discover: args.cni_socket.is_some(),
        hold_unknown: args.cni_socket.is_some(),
        ..CaptureOptions::default()
    };
    args.limits.apply_capture(&mut options);
    Some((socket, options))
}
