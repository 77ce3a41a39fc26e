//! `weft control`: run the control plane (config directory or Kubernetes API, CA, delta xDS,
//! admin).

use clap::Args as ClapArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft_control::ca_service::CaServiceConfig;
use weft_control::process::{ControlConfig, Objects, run};
use weft_control::secure_server::SecureServerConfig;

/// Run the control plane: reads DIR (or the Kubernetes API), runs the CA, serves delta xDS
/// to node proxies.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Directory of YAML manifests (watched: edits are pushed live).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    config_dir: Option<PathBuf>,
    /// Follow the Kubernetes API instead of a directory: Namespaces, Pods, Services, Nodes,
    /// the Istio and Gateway API kinds (in-cluster configuration unless --kubeconfig).
    #[arg(long)]
    kubernetes: bool,
    /// Kubeconfig file for --kubernetes (its current context).
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    kubeconfig: Option<PathBuf>,
    /// Private state directory (the CA root is generated and kept here).
    /// Default: a per-user data directory.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Plug-in CA directory (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// File mapping bearer tokens to node names or identities (YAML: `tokens: [{token, node}]`).
    /// Edits apply to new requests; an edit that does not load keeps the last good tokens.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// TLS port serving the CA and xDS.
    #[arg(long, default_value = "0.0.0.0:15012")]
    secure_addr: SocketAddr,
    /// Also serve xDS without TLS on this port (local development only).
    #[arg(long, value_name = "PORT")]
    plaintext_xds_port: Option<u16>,
    /// Admin/monitoring address (/ready, /metrics, /debug/syncz, /debug/configz).
    #[arg(long, default_value = "0.0.0.0:15014")]
    admin_addr: SocketAddr,
    /// Namespace the control plane runs in (serving cert SAN `weft-control.<ns>.svc`).
    #[arg(long, default_value = "weft-system")]
    namespace: String,
    /// Extra DNS SAN for the serving certificate (repeatable).
    #[arg(long = "server-san", value_name = "NAME")]
    server_sans: Vec<String>,
    #[command(flatten)]
    mesh: super::mesh_flags::MeshFlags,
    /// Longest certificate lifetime granted, in hours.
    #[arg(long, default_value_t = 24 * 7)]
    max_cert_hours: u64,
    /// Longest certificate lifetime granted, in seconds; overrides --max-cert-hours (root
    /// rotation drills and tests, where certificates must renew within seconds).
    #[arg(long, value_name = "SECONDS")]
    max_cert_seconds: Option<u64>,
    #[command(flatten)]
    limits: super::limit_flags::ControlLimits,
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    // the watches run as long as the control plane: `_api` is dropped when it stops
    let (objects, _api) = runtime.block_on(objects_from(&args))?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    let plaintext_xds_addr = args
        .plaintext_xds_port
        .map(|port| SocketAddr::new(args.secure_addr.ip(), port));
    let mut config = ControlConfig {
        objects,
        state_dir,
        ca_dir: args.ca_dir,
        token_file: args.token_file,
        secure_addr: args.secure_addr,
        plaintext_xds_addr,
        admin_addr: args.admin_addr,
        translate: args.mesh.options(),
        secure: SecureServerConfig {
            namespace: args.namespace,
            extra_sans: args.server_sans,
            ..SecureServerConfig::default()
        },
        ca: CaServiceConfig {
            max_validity: Duration::from_secs(
                args.max_cert_seconds.unwrap_or(args.max_cert_hours * 3600),
            ),
            ..CaServiceConfig::default()
        },
        watch_debounce: weft_control::process::DEFAULT_WATCH_DEBOUNCE,
        xds: weft_xds::ServerConfig::default(),
    };
    args.limits.apply(&mut config.secure, &mut config.xds);
    runtime.block_on(async {
        run(config, |_| {}, shutdown_signal()).await?;
        tracing::info!("control plane stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The directory, or the Kubernetes API listed once and followed by watches that run
/// while the returned source lives.
async fn objects_from(args: &Args) -> anyhow::Result<(Objects, Option<weft_kube::ApiSource>)> {
    if let Some(dir) = &args.config_dir {
        return Ok((Objects::Directory(dir.clone()), None));
    }
    let client = weft_kube::connect(args.kubeconfig.as_deref()).await?;
    tracing::info!("listing the Kubernetes API");
    let api = weft_kube::ApiSource::start(client, &weft_kube::WatchOptions::default()).await;
    Ok((Objects::Source(api.objects()), Some(api)))
}

/// The control plane's state directory when --state-dir is not given (also `weft ca`'s).
pub(crate) fn default_state_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::data_local_dir()
        .ok_or_else(|| anyhow::anyhow!("no per-user data directory; pass --state-dir"))?
        .join("weft")
        .join("control"))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
