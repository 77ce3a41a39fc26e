//! `weft control`: run the control plane (config directory or Kubernetes API, CA, delta xDS,
//! admin).

use clap::Args as ClapArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft_control::ca_service::CaServiceConfig;
use weft_control::process::{ControlConfig, Objects, Overrides, run_with};
use weft_control::secure_server::SecureServerConfig;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kube::tokenreview::ServiceAccount;

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
    /// the Istio and Gateway API kinds, and the Secrets and ConfigMaps they reference
    /// (in-cluster configuration unless --kubeconfig).
    #[arg(long)]
    kubernetes: bool,
    /// Kubeconfig file for --kubernetes (its current context).
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    kubeconfig: Option<PathBuf>,
    /// Node proxies' service account for --kubernetes: its tokens stand for the node of the
    /// pod they are bound to. Default: `weft-node` in --namespace.
    #[arg(long, value_name = "NS/NAME", requires = "kubernetes")]
    node_service_account: Option<ServiceAccount>,
    /// Image of the gateways and waypoints the leader deploys for Gateways with
    /// --kubernetes (`weft install` sets the install's image). Default: the install's
    /// default image of this version.
    #[arg(long, value_name = "IMAGE", requires = "kubernetes")]
    proxy_image: Option<String>,
    /// Pull policy of that image: Always, IfNotPresent (default) or Never.
    #[arg(long, value_name = "POLICY", requires = "kubernetes")]
    proxy_image_pull_policy: Option<String>,
    /// Private state directory (the CA root is generated and kept here; not used with
    /// --kubernetes, whose root is in Secret `cacerts` or `istio-ca-secret`).
    /// Default: a per-user data directory.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Plug-in CA directory (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    #[arg(long, value_name = "DIR", conflicts_with = "kubernetes")]
    ca_dir: Option<PathBuf>,
    /// File mapping bearer tokens to node names or identities (YAML: `tokens: [{token, node}]`).
    /// Edits apply to new requests; an edit that does not load keeps the last good tokens.
    /// With --kubernetes, callers are authenticated by TokenReview instead.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    token_file: Option<PathBuf>,
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
    let (objects, cluster) = runtime.block_on(objects_from(&args))?;
    let overrides = cluster
        .as_ref()
        .map_or_else(Overrides::default, ClusterControl::overrides);
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        // not used: the CA root is kept in the cluster
        None if cluster.is_some() => PathBuf::new(),
        None => default_state_dir()?,
    };
    let plaintext_xds_addr = args
        .plaintext_xds_port
        .map(|port| SocketAddr::new(args.secure_addr.ip(), port));
    let mut config = ControlConfig {
        objects,
        state_dir,
        ca_dir: args.ca_dir,
        token_file: args.token_file.unwrap_or_default(),
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
        let result = run_with(config, overrides, |_| {}, shutdown_signal()).await;
        if let Some(cluster) = cluster {
            cluster.stop().await;
        }
        result?;
        tracing::info!("control plane stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The directory, or the Kubernetes API listed once and followed by watches, with the
/// cluster's CA root, TokenReview callers and the leader election (all running while the
/// returned [`ClusterControl`] lives).
async fn objects_from(args: &Args) -> anyhow::Result<(Objects, Option<ClusterControl>)> {
    if let Some(dir) = &args.config_dir {
        return Ok((Objects::Directory(dir.clone()), None));
    }
    let client = weft_kube::connect(args.kubeconfig.as_deref()).await?;
    let trust_domain = args.mesh.options().trust_domain;
    let mut settings = ClusterSettings::new(&args.namespace, &trust_domain, &replica_name());
    if let Some(account) = &args.node_service_account {
        settings.node_accounts = vec![account.clone()];
    }
    proxy_settings(args, &mut settings.proxies)?;
    let watch = weft_kube::WatchOptions::for_root_namespace(&args.mesh.options().root_namespace);
    // the control process waits for the first lists, its admin port answering meanwhile
    let cluster = ClusterControl::spawn(client, settings, &watch).await?;
    Ok((Objects::Source(cluster.objects()), Some(cluster)))
}

/// The image, pull policy and log filter (this process's `WEFT_LOG`) of the gateways and
/// waypoints the leader deploys; a bad value stops the start, naming the flag.
fn proxy_settings(args: &Args, proxies: &mut weft_install::Settings) -> anyhow::Result<()> {
    let sets = [
        ("--proxy-image", "image", args.proxy_image.clone()),
        (
            "--proxy-image-pull-policy",
            "imagePullPolicy",
            args.proxy_image_pull_policy.clone(),
        ),
        ("WEFT_LOG", "logLevel", std::env::var("WEFT_LOG").ok()),
    ];
    for (flag, key, value) in sets {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            proxies
                .set(&format!("{key}={value}"))
                .map_err(|error| anyhow::anyhow!("{flag}: {error}"))?;
        }
    }
    Ok(())
}

/// This replica's name in the leader Lease: `$POD_NAME`, else `$HOSTNAME` (a pod's name),
/// else one made from the process id.
fn replica_name() -> String {
    ["POD_NAME", "HOSTNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| format!("weft-control-{}", std::process::id()))
}

/// The control plane's state directory when --state-dir is not given (also `weft ca`'s).
pub(crate) fn default_state_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::data_local_dir()
        .ok_or_else(|| anyhow::anyhow!("no per-user data directory; pass --state-dir"))?
        .join("weft")
        .join("control"))
}

/// Completes on Ctrl-C or SIGTERM.
pub use weft_serve::shutdown_signal;
