//! `weft x l7-proxy`: weft's L7 engine (the waypoint's HTTP server, request headers and
//! pooled upstream client) as a plain reverse proxy to one address, for `bench/l7`'s
//! `weft-l7` row against Envoy doing the same job.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `weft x l7-proxy`.
#[derive(Debug, clap::Args)]
#[command(
    hide = true,
    about = "Developer tool: the waypoint's HTTP engine as a plain reverse proxy (HTTP/1.1 and h2c in, pooled HTTP/1.1 out) to one upstream; no mTLS, policy, routing, metrics or access log"
)]
pub struct L7ProxyArgs {
    /// Address to listen on (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long)]
    listen: SocketAddr,
    /// Address every request goes to (HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads, each a single-threaded runtime (1 = one core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
}

/// Runs the proxy until it fails. The access log is off (nothing is logged per request).
pub fn run(args: &L7ProxyArgs) -> anyhow::Result<ExitCode> {
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "weft x l7-proxy: {} -> {} ({} worker(s), access log off)",
        listener.local_addr()?,
        args.upstream,
        args.workers
    );
    weft_waypoint::reverse_proxy::run(listener, args.upstream, usize::from(args.workers))
        .context("l7-proxy stopped")?;
    Ok(ExitCode::SUCCESS)
}
