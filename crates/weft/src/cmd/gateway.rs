//! `weft gateway`: the ingress/egress gateway process of one Gateway of a weft class
//! (`weft_waypoint::gateway`). Flags mirror `weft waypoint run` and share its control-plane,
//! trace and signal handling.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use weft_waypoint::gateway::{GatewayListen, GatewayProcess};
use weft_waypoint::{Role, WaypointOptions};

use super::waypoint::run::{
    self as proxy, AccessLogArgs, ControlArgs, HandoffArgs, L7Limits, TraceArgs,
};

/// Run a gateway: the ingress/egress proxy of one Gateway (listener ports from its
/// configuration).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    control: ControlArgs,
    /// Service account the gateway runs as (its identity
    /// `spiffe://<trust domain>/ns/NAMESPACE/sa/SA`); default: the Gateway's NAME.
    #[arg(long, value_name = "SA")]
    service_account: Option<String>,
    /// Address the Gateway's listener ports are bound on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    listen_ip: IpAddr,
    /// Prometheus metrics and `/healthz/ready`.
    #[arg(long, default_value = "0.0.0.0:15020")]
    metrics_addr: SocketAddr,
    /// Readiness (`/healthz/ready`, as Istio's gateways serve it).
    #[arg(long, default_value = "0.0.0.0:15021")]
    readiness_addr: SocketAddr,
    /// Admin pages (`/config_dump`, private keys redacted).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    access_log: AccessLogArgs,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    handoff: HandoffArgs,
    #[command(flatten)]
    l7_limits: L7Limits,
    /// Seconds to let requests in flight finish after SIGTERM / ctrl-c.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    drain_timeout: u64,
}

/// Runs the gateway until a shutdown signal.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    proxy::runtime()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let drain = Duration::from_secs(args.drain_timeout);
    let handoff = args.handoff.handoff_socket.clone();
    let process = process(args)?;
    let tracer = process.tracer.clone();
    let running = match &handoff {
        Some(path) => weft_waypoint::gateway::take_over(process, path).await?,
        None => weft_waypoint::gateway::run(process).await?,
    };
    tracing::info!(
        gateway = %running.gateway.engine().options().resource_name(),
        identity = %running.gateway.engine().identity(),
        metrics = ?running.metrics,
        "weft gateway started"
    );
    proxy::stopped_or_handed_off(running.handed_off()).await;
    tracing::info!(
        ?drain,
        "shutting down: listeners closed, draining requests in flight"
    );
    running.shutdown(drain).await;
    proxy::flush(tracer).await;
    Ok(ExitCode::SUCCESS)
}

fn process(args: Args) -> anyhow::Result<GatewayProcess> {
    let (namespace, name) = proxy::gateway_name(&args.control)?;
    let tracer = proxy::tracer(&args.trace, format!("{name}.{namespace}"))?;
    let trust = proxy::trust(&args.control)?;
    let (ca, xds) = proxy::control_plane(&args.control, &trust)?;
    let options = WaypointOptions {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        service_account: args.service_account.clone().unwrap_or_default(),
        role: Role::Gateway,
        trust_domain: args.control.trust_domain.clone(),
        network: args.control.network.clone(),
        access_log: args.access_log.format(),
        max_mirrors_in_flight: args.l7_limits.max_mirrors_in_flight,
        http_idle_timeout: args.l7_limits.http_idle_timeout(),
        ..WaypointOptions::default()
    };
    Ok(GatewayProcess {
        options,
        listen: GatewayListen {
            ip: args.listen_ip,
            metrics: Some(args.metrics_addr),
            readiness: (args.readiness_addr != args.metrics_addr).then_some(args.readiness_addr),
            admin: Some(args.admin_addr),
        },
        xds,
        ca: Arc::new(ca),
        trust,
        certs: weft_identity::CertManagerConfig::default(),
        tracer: Some(Arc::new(tracer)),
    })
}
