//! `weft waypoint apply|list|delete`: waypoint Gateways (and the labels that enroll traffic
//! into them) in a config directory. The file logic lives in `weft_api::waypoint`.
//! `weft waypoint run`: the waypoint process itself (`weft_waypoint`).

use super::report_args::OutputFormat;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_api::waypoint::{self, ApplyRequest, Outcome, TrafficType, WaypointEntry};

/// Waypoints: write, list and delete the `istio-waypoint` Gateways of a config directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WaypointCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WaypointCommand {
    /// Write a waypoint Gateway (its own file `waypoint-<ns>-<name>.yaml`); idempotent.
    Apply(ApplyArgs),
    /// Waypoints of the directory and what uses each (NAMESPACE NAME FOR ENROLLED FILE).
    List(ListArgs),
    /// Remove a waypoint Gateway and the Namespace labels pointing at it.
    Delete(DeleteArgs),
    /// Run a waypoint: the L7 proxy of one waypoint Gateway (HBONE on 15008).
    Run(Box<run::RunArgs>),
}

/// Where the configuration is.
#[derive(Debug, clap::Args)]
struct DirArg {
    /// Config directory (as given to `weft up` / `weft control`).
    #[arg(long, value_name = "DIR", default_value = ".")]
    config_dir: PathBuf,
}

/// Which waypoint.
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Namespace of the waypoint.
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: String,
    /// Name of the waypoint Gateway.
    #[arg(long, value_name = "N", default_value = "waypoint")]
    name: String,
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Label the Namespace `istio.io/use-waypoint: <name>` (in its file, in place).
    #[arg(long)]
    enroll_namespace: bool,
    /// Which traffic the waypoint takes (label `istio.io/waypoint-for`).
    #[arg(long = "for", value_enum, default_value_t = ForArg::Service)]
    traffic: ForArg,
    /// Replace an `istio.io/use-waypoint` label that names another waypoint.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ForArg {
    Service,
    Workload,
    All,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only waypoints of this namespace (default: all).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    #[command(flatten)]
    dir: DirArg,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    #[command(flatten)]
    target: TargetArgs,
}

/// Runs `weft waypoint ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        WaypointCommand::Apply(args) => apply(args),
        WaypointCommand::List(args) => list(&args),
        WaypointCommand::Run(args) => run::run(*args),
        WaypointCommand::Delete(args) => {
            let target = args.target;
            let outcome =
                waypoint::delete(&target.dir.config_dir, &target.namespace, &target.name)?;
            Ok(print_outcome(&outcome))
        }
    }
}

fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let request = ApplyRequest {
        namespace: args.target.namespace,
        name: args.target.name,
        traffic: match args.traffic {
            ForArg::Service => TrafficType::Service,
            ForArg::Workload => TrafficType::Workload,
            ForArg::All => TrafficType::All,
        },
        enroll_namespace: args.enroll_namespace,
        overwrite: args.overwrite,
    };
    let outcome = waypoint::apply(&args.target.dir.config_dir, &request)?;
    Ok(print_outcome(&outcome))
}

/// Messages to stdout, warnings to stderr.
fn print_outcome(outcome: &Outcome) -> ExitCode {
    for message in &outcome.messages {
        println!("{message}");
    }
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let entries = waypoint::list(&args.dir.config_dir, args.namespace.as_deref())?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        OutputFormat::Text => print!("{}", table(&entries)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAMESPACE NAME FOR ENROLLED FILE`, columns padded to their widest cell.
fn table(entries: &[WaypointEntry]) -> String {
    let header = ["NAMESPACE", "NAME", "FOR", "ENROLLED", "FILE"].map(str::to_owned);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(entries.iter().map(|e| {
            let enrolled = if e.enrolled.is_empty() {
                "-".to_owned()
            } else {
                e.enrolled.join(",")
            };
            let file = format!("{}:{}", e.file.display(), e.line);
            [
                e.namespace.clone(),
                e.name.clone(),
                e.traffic.clone(),
                enrolled,
                file,
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|r| r[column].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

/// `weft waypoint run`; its control-plane, trace and signal pieces are shared with
/// `weft gateway`.
pub(crate) mod run {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{Context, bail};
    use weft_identity::{GrpcCaClient, TokenSource, TrustBundle};
    use weft_node::process::XdsSource;
    use weft_waypoint::otlp::{OtlpOptions, OtlpTracer};
    use weft_waypoint::{ListenAddrs, WaypointOptions, WaypointProcess};

    /// How an L7 proxy (waypoint or gateway) reaches the control plane and whom it serves.
    #[derive(Debug, clap::Args)]
    #[command(group(clap::ArgGroup::new("credential").required(true).args(["token_file", "token"])))]
    pub struct ControlArgs {
        /// Control plane secure address (xDS + CA), e.g. `weft-control:15012`.
        #[arg(long)]
        pub control: String,
        /// The Gateway this process serves, `NAMESPACE/NAME` (its identity is
        /// `spiffe://<trust domain>/ns/NAMESPACE/sa/NAME`, a gateway's service account can
        /// be set apart).
        #[arg(long, value_name = "NS/NAME")]
        pub gateway: String,
        /// Bearer token for the control plane (re-read on every request).
        #[arg(long, value_name = "FILE")]
        pub token_file: Option<PathBuf>,
        /// Bearer token for the control plane, inline.
        #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
        pub token: Option<String>,
        /// PEM roots that sign the control plane's certificate (the mesh root); also
        /// trusted for peer certificates.
        #[arg(long, visible_alias = "ca-cert", value_name = "FILE")]
        pub ca_root: PathBuf,
        /// DNS name the control plane's certificate must carry.
        #[arg(long, default_value = "weft-control.weft-system.svc")]
        pub control_san: String,
        /// Cluster id sent to the control plane (`clusterid`).
        #[arg(long)]
        pub cluster_id: Option<String>,
        /// Trust domain of identities.
        #[arg(long, default_value = "cluster.local")]
        pub trust_domain: String,
        /// Network of the proxy (empty = default network).
        #[arg(long, default_value = "")]
        pub network: String,
    }

    /// Restarts of an L7 proxy without closing its ports.
    #[derive(Debug, clap::Args)]
    pub struct HandoffArgs {
        /// Unix socket for restarts that drop no connection: take the listening sockets of
        /// the process offering them on PATH (when one does), tell it to drain once this
        /// one is ready, then offer ours on PATH for the next restart.
        #[arg(long, value_name = "PATH")]
        pub handoff_socket: Option<PathBuf>,
    }

    /// Waits for SIGTERM / ctrl-c or for a successor that took the listeners over.
    pub async fn stopped_or_handed_off(handed_off: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = stopped() => {}
            () = handed_off => tracing::info!("a new process took over the listeners"),
        }
    }

    /// Trace export of an L7 proxy.
    #[derive(Debug, clap::Args)]
    pub struct TraceArgs {
        /// OTLP trace collector, e.g. `http://collector:4318`.
        #[arg(long, value_name = "URL")]
        pub otlp_endpoint: Option<String>,
        /// Share of traces sampled when the caller did not decide (0..1).
        #[arg(long, default_value_t = 0.01)]
        pub trace_sampling: f64,
        /// Keep the last N sampled spans in memory, served as JSON at `/debug/traces` on
        /// the metrics port (what `weft dashboard` shows); 0 keeps none.
        #[arg(long, value_name = "N", default_value_t = 0)]
        pub recent_spans: usize,
    }

    /// Limits on an L7 proxy's own work.
    #[derive(Debug, clap::Args)]
    pub struct L7Limits {
        /// Mirrored request copies (RequestMirror filters) in flight at most; a copy
        /// beyond that is not sent and counts in `weft_request_mirrors_dropped_total` (0:
        /// mirror nothing).
        #[arg(long, value_name = "N", default_value_t = weft_waypoint::DEFAULT_MIRRORS_IN_FLIGHT)]
        pub max_mirrors_in_flight: usize,
        /// Seconds an HTTP/2 client connection may go without a request in flight (an
        /// answer still streaming is one) before it is closed with GOAWAY; 0: never.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = weft_waypoint::DEFAULT_HTTP_IDLE_TIMEOUT.as_secs(),
            value_parser = clap::value_parser!(u64).range(0..=31_536_000)
        )]
        pub http_idle_timeout: u64,
    }

    impl L7Limits {
        /// [`L7Limits::http_idle_timeout`] as a duration.
        #[must_use]
        pub fn http_idle_timeout(&self) -> std::time::Duration {
            std::time::Duration::from_secs(self.http_idle_timeout)
        }
    }

    /// The access log of a proxy: the node proxy's flag, shared.
    pub use weft_node::cli::AccessLogArgs;

    /// Flags of `weft waypoint run` (control plane, CA trust and token as for `weft node`).
    #[derive(Debug, clap::Args)]
    pub struct RunArgs {
        #[command(flatten)]
        control: ControlArgs,
        /// HBONE listener.
        #[arg(long, default_value = "0.0.0.0:15008")]
        hbone_addr: SocketAddr,
        /// Prometheus metrics and `/healthz/ready`.
        #[arg(long, default_value = "0.0.0.0:15020")]
        metrics_addr: SocketAddr,
        /// Admin pages (`/config_dump`).
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin_addr: SocketAddr,
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        access_log: AccessLogArgs,
        #[command(flatten)]
        handoff: HandoffArgs,
        #[command(flatten)]
        limits: crate::cmd::limit_flags::HboneLimits,
        #[command(flatten)]
        l7_limits: L7Limits,
        /// Seconds to let open tunnels finish after SIGTERM / ctrl-c.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        drain_timeout: u64,
    }

    /// Runs the waypoint until a shutdown signal.
    pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
        runtime()?.block_on(serve(args))
    }

    /// The multi-threaded runtime every L7 proxy runs on.
    pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    }

    async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
        let drain = Duration::from_secs(args.drain_timeout);
        let handoff = args.handoff.handoff_socket.clone();
        let process = process(args)?;
        let tracer = process.tracer.clone();
        let running = match &handoff {
            Some(path) => weft_waypoint::process::take_over(process, path).await?,
            None => weft_waypoint::run(process).await?,
        };
        tracing::info!(addrs = ?running.addrs, identity = %running.waypoint.identity(), "weft waypoint started");
        stopped_or_handed_off(running.handed_off()).await;
        tracing::info!(?drain, "shutting down: no new tunnels, draining open ones");
        running.shutdown(drain).await;
        flush(tracer).await;
        Ok(ExitCode::SUCCESS)
    }

    /// Sends the last batch of spans; blocking, so off the runtime's workers.
    pub async fn flush(tracer: Option<Arc<dyn weft_waypoint::Tracer>>) {
        if let Some(tracer) = tracer {
            let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        }
    }

    /// SIGTERM or ctrl-c.
    pub async fn stopped() {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }

    /// `NAMESPACE/NAME` of `--gateway`.
    pub fn gateway_name(args: &ControlArgs) -> anyhow::Result<(&str, &str)> {
        args.gateway
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
            .with_context(|| format!("--gateway {:?}: expected NAMESPACE/NAME", args.gateway))
    }

    /// Largest `--recent-spans`: about 5 MB of spans.
    const MAX_RECENT_SPANS: usize = 10_000;

    /// The OTLP tracer of service `service` (`<name>.<namespace>`).
    pub fn tracer(args: &TraceArgs, service: String) -> anyhow::Result<OtlpTracer> {
        if !(0.0..=1.0).contains(&args.trace_sampling) {
            bail!(
                "--trace-sampling {}: expected a share between 0 and 1",
                args.trace_sampling
            );
        }
        if args.recent_spans > MAX_RECENT_SPANS {
            bail!(
                "--recent-spans {}: at most {MAX_RECENT_SPANS} spans are kept in memory",
                args.recent_spans
            );
        }
        Ok(OtlpTracer::new(&OtlpOptions {
            sampling_rate: args.trace_sampling,
            recent_spans: args.recent_spans,
            ..OtlpOptions::new(args.otlp_endpoint.clone(), service)
        })?)
    }

    /// The mesh roots of `--ca-root`.
    pub fn trust(args: &ControlArgs) -> anyhow::Result<TrustBundle> {
        let pem = std::fs::read_to_string(&args.ca_root)
            .with_context(|| format!("reading --ca-root {}", args.ca_root.display()))?;
        TrustBundle::from_pem(args.trust_domain.clone(), &pem)
            .with_context(|| format!("--ca-root {}", args.ca_root.display()))
    }

    fn process(args: RunArgs) -> anyhow::Result<WaypointProcess> {
        let (namespace, name) = gateway_name(&args.control)?;
        let tracer = tracer(&args.trace, format!("{name}.{namespace}"))?;
        let trust = trust(&args.control)?;
        let (ca, xds) = control_plane(&args.control, &trust)?;
        let options = WaypointOptions {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            trust_domain: args.control.trust_domain.clone(),
            network: args.control.network.clone(),
            access_log: args.access_log.format(),
            inbound_limits: args.limits.config(),
            max_mirrors_in_flight: args.l7_limits.max_mirrors_in_flight,
            http_idle_timeout: args.l7_limits.http_idle_timeout(),
            ..WaypointOptions::default()
        };
        Ok(WaypointProcess {
            options,
            listen: ListenAddrs {
                hbone: args.hbone_addr,
                metrics: Some(args.metrics_addr),
                admin: Some(args.admin_addr),
            },
            xds,
            ca: Arc::new(ca),
            trust,
            certs: weft_identity::CertManagerConfig::default(),
            tracer: Some(Arc::new(tracer)),
        })
    }

    /// The CA client and the xDS source of `args`.
    pub fn control_plane(
        args: &ControlArgs,
        trust: &TrustBundle,
    ) -> anyhow::Result<(GrpcCaClient, XdsSource)> {
        let token = match (&args.token_file, &args.token) {
            (Some(file), _) => TokenSource::File(file.clone()),
            (None, Some(token)) => TokenSource::Static(token.clone()),
            (None, None) => bail!("give --token-file FILE or --token TOKEN"),
        };
        let (ca, xds) = weft_node::process::control_plane_clients(
            &args.control,
            &args.control_san,
            trust,
            token,
            args.cluster_id.clone(),
        )?;
        Ok((ca, xds))
    }
}
