//! `weft dashboard`: the mesh seen live in a browser, from what the mesh already knows. A
//! background [`collector`] reads the control plane's admin pages (`/debug/syncz`,
//! `/debug/configz`, `/debug/analyzez`, `/debug/config_errors`, `/debug/gatewayz`) and
//! every proxy's Prometheus metrics (the Istio names: `istio_requests_total`,
//! `istio_tcp_*`, `istio_request_duration_milliseconds`...), and [`api`] serves a
//! single-page app embedded in the binary plus the JSON data API behind it.
//!
//! - [`prom`]: the metrics text reader; [`history`]: recent scrapes and counter increases;
//! - [`graph`]: edges between workloads with rates, success, latency, bytes and mTLS;
//! - [`proxies`], [`workloads`], [`findings`]: the control plane's pages as the page shows
//!   them ([`workloads`] answers `/api/authz` with `weft_control::authz`, the same code
//!   as `weft x authz check`);
//! - [`traces`]: the waypoints' and gateways' kept spans joined into request traces;
//! - [`fetch`]: GETs through a [`Dialer`], so `weft up` reads from inside its network
//!   namespaces.

pub mod api;
pub mod collector;
pub mod fetch;
pub mod findings;
pub mod graph;
pub mod history;
pub mod prom;
pub mod proxies;
pub mod traces;
pub mod workloads;

pub use collector::{Collector, Sources, View};
pub use fetch::{Dialer, DirectDialer};

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Default listen address of `weft dashboard` and of the one `weft up` starts.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:15100";

/// How often the dashboard reads the mesh.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// A dashboard serving on its listener.
#[derive(Debug)]
pub struct RunningDashboard {
    /// Where the page is served.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningDashboard {
    /// `http://ADDR/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for RunningDashboard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds `listen` and starts collecting from `sources` and serving the page; both stop
/// when the returned value is dropped.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(listen: SocketAddr, sources: Sources) -> std::io::Result<RunningDashboard> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let collector = Collector::new(sources);
    let router = api::router(&collector);
    let tasks = vec![
        tokio::spawn(collector.run()),
        tokio::spawn(weft_serve::serve(listener, router)),
    ];
    Ok(RunningDashboard { addr, tasks })
}
