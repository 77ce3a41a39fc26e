//! `weft dashboard`: serves the mesh's live dashboard (logic in weft-dashboard).

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

/// Serve a web page showing the mesh live: the service graph with rates, success, latency
/// and mTLS, proxies and their sync state, workloads and their policies, denials, and
/// findings on the live configuration. Reads the control plane's admin API and every
/// proxy's metrics; the page is built into the binary (no internet access needed).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Control plane admin address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    control: String,
    /// Address to serve the page and its data API (`/api/...`) on.
    #[arg(long, default_value = weft_dashboard::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Seconds between two reads of the mesh.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=300))]
    interval: u64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let control = args
        .control
        .to_socket_addrs()
        .map_err(|err| anyhow::anyhow!("--control {}: {err}", args.control))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--control {}: no address", args.control))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sources = weft_dashboard::Sources {
            control,
            dialer: std::sync::Arc::new(weft_dashboard::DirectDialer),
            interval: Duration::from_secs(args.interval),
        };
        let running = weft_dashboard::start(args.listen, sources)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", args.listen))?;
        println!(
            "dashboard: {} (reading the control plane at {control}); Ctrl-C stops",
            running.url()
        );
        super::control::shutdown_signal().await;
        drop(running);
        Ok(ExitCode::SUCCESS)
    })
}
