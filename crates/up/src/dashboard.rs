//! The dashboard `weft up` runs beside the mesh (`weft dashboard`'s page and data API on
//! the machine's own loopback), reading the control plane and the proxies from inside the
//! mesh's underlay namespace, where their admin and metrics ports are.

use crate::mesh::Mesh;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use weft_dashboard::{Dialer, DirectDialer, RunningDashboard, Sources};

/// Connects from inside a network namespace.
#[derive(Debug)]
struct NetnsDialer {
    netns: PathBuf,
}

impl Dialer for NetnsDialer {
    fn dial(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        weft_netns::connect_in(&self.netns, addr, weft_netns::SocketOptions::default())
            .map_err(std::io::Error::other)
    }
}

/// Starts the dashboard on `listen` for `mesh`; the line to print either way (its URL, or
/// why it did not start: the mesh runs without it).
pub async fn start(mesh: &Mesh, listen: SocketAddr) -> (Option<RunningDashboard>, String) {
    let (control, netns) = mesh.control_admin();
    let dialer: Arc<dyn Dialer> = match netns {
        Some(netns) => Arc::new(NetnsDialer { netns }),
        None => Arc::new(DirectDialer),
    };
    let sources = Sources {
        control,
        dialer,
        interval: weft_dashboard::DEFAULT_INTERVAL,
    };
    match weft_dashboard::start(listen, sources).await {
        Ok(running) => {
            let line = format!("dashboard: {}", running.url());
            (Some(running), line)
        }
        Err(err) => (
            None,
            format!(
                "dashboard: not started, cannot listen on {listen}: {err} (pick another with \
                 --dashboard ADDR)"
            ),
        ),
    }
}
