//! One captured pod: a [`NetnsWorker`] inside its network namespace, the listeners opened
//! there and handed to the data path, its DNS proxy, and its redirect rules.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use tokio_util::sync::CancellationToken;
use weft_netns::{CaptureConfig, NetnsWorker, SocketOptions};

use super::{CaptureError, PodInfo};
use crate::dns::DnsResolver;
use crate::dns::server::{self, DnsScope, ForwardLimits, Forwarder, UdpFactory, Upstream};
use crate::proxy::{Node, PodNetwork, PodSockets, SocketFuture};

/// How long a forwarded DNS query waits for the upstream.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The proxy's sockets for one pod, made inside the pod's namespace with the bypass mark.
struct NetnsNetwork {
    worker: Arc<NetnsWorker>,
    mark: u32,
}

fn io_error(error: weft_netns::Error) -> io::Error {
    io::Error::other(error)
}

impl PodNetwork for NetnsNetwork {
    fn tcp_socket(&self, peer: SocketAddr, transparent_source: Option<IpAddr>) -> SocketFuture {
        let worker = Arc::clone(&self.worker);
        let options = SocketOptions {
            mark: Some(self.mark),
            transparent_source: transparent_source.map(|ip| SocketAddr::new(ip, 0)),
        };
        Box::pin(async move {
            let socket = worker
                .run_async(move || weft_netns::tcp_socket(peer, options))
                .await
                .map_err(io_error)?
                .map_err(io_error)?;
            socket.set_nonblocking(true)?;
            Ok(tokio::net::TcpSocket::from_std_stream(socket))
        })
    }
}

/// Unconnected, marked UDP sockets inside the pod (DNS upstream queries).
fn udp_factory(worker: Arc<NetnsWorker>, mark: u32) -> UdpFactory {
    Arc::new(move || {
        let worker = Arc::clone(&worker);
        Box::pin(async move {
            let socket = worker
                .run_async(move || -> io::Result<std::net::UdpSocket> {
                    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
                    let socket = weft_netns::bind_udp_socket(any).map_err(io_error)?;
                    setsockopt(&socket, sockopt::Mark, &mark)?;
                    Ok(socket)
                })
                .await
                .map_err(io_error)??;
            socket.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(socket)
        })
    })
}

/// Listeners opened inside the pod, still blocking std sockets.
struct OpenedSockets {
    outbound: std::net::TcpListener,
    inbound: std::net::TcpListener,
    hbone: std::net::TcpListener,
    dns_udp: std::net::UdpSocket,
    dns_tcp: std::net::TcpListener,
}

/// How long opening a pod's listeners waits for the previous capture of the same pod to
/// release its ports (its listeners close asynchronously when a pod is replaced or re-added).
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

impl OpenedSockets {
    /// Opens the listeners, retrying with a short backoff while a port is still held by a
    /// listener of this pod that is shutting down.
    fn open_when_free(
        worker: &NetnsWorker,
        ip: IpAddr,
        ports: &CaptureConfig,
    ) -> Result<Self, CaptureError> {
        let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::open(worker, ip, ports) {
                Err(CaptureError::Netns {
                    source: weft_netns::Error::Socket { source, .. },
                    ..
                }) if source == nix::errno::Errno::EADDRINUSE
                    && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                result => return result,
            }
        }
    }

    fn open(worker: &NetnsWorker, ip: IpAddr, ports: &CaptureConfig) -> Result<Self, CaptureError> {
        let ports = *ports;
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let opened = worker.run(move || -> weft_netns::Result<Self> {
            Ok(Self {
                outbound: weft_netns::bind_tcp_listener(local(ports.outbound_port))?,
                inbound: weft_netns::bind_tcp_listener(SocketAddr::from((
                    Ipv4Addr::UNSPECIFIED,
                    ports.inbound_port,
                )))?,
                hbone: weft_netns::bind_tcp_listener(SocketAddr::new(ip, ports.hbone_port))?,
                dns_udp: weft_netns::bind_udp_socket(local(ports.dns_port))?,
                dns_tcp: weft_netns::bind_tcp_listener(local(ports.dns_port))?,
            })
        });
        let netns = worker.netns_path().to_owned();
        let failed = move |source| CaptureError::Netns {
            what: "open the pod's listeners",
            netns: netns.clone(),
            source,
        };
        opened.map_err(&failed)?.map_err(failed)
    }
}

fn tokio_listener(listener: std::net::TcpListener) -> io::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// What the data path needs to serve one pod.
pub(super) struct PodSetup<'a> {
    pub(super) node: &'a Node,
    pub(super) rules: &'a CaptureConfig,
    pub(super) dns: DnsResolver,
    pub(super) dns_upstream: Option<SocketAddr>,
    pub(super) dns_limits: Arc<ForwardLimits>,
}

/// A pod whose traffic is captured: dropping it does not undo anything, [`PodCapture::stop`] does.
pub(super) struct PodCapture {
    /// The mesh address whose listeners are attached.
    pub(super) ip: IpAddr,
    ips: Vec<IpAddr>,
    netns: PathBuf,
    stop: CancellationToken,
}

impl PodCapture {
    /// Opens the pod's listeners, hands them to the data path and installs the redirect
    /// rules (in that order, so nothing is redirected to a port nobody listens on).
    pub(super) async fn start(
        setup: PodSetup<'_>,
        pod: &PodInfo,
        ip: IpAddr,
    ) -> Result<Self, CaptureError> {
        let netns = pod.netns.clone();
        let ports = *setup.rules;
        let (worker, sockets) = blocking(move || {
            let worker = NetnsWorker::spawn(&netns).map_err(|source| CaptureError::Netns {
                what: "enter the pod's network namespace",
                netns: netns.clone(),
                source,
            })?;
            let sockets = OpenedSockets::open_when_free(&worker, ip, &ports)?;
            Ok((Arc::new(worker), sockets))
        })
        .await?;
        let capture = Self {
            ip,
            ips: pod.ips.clone(),
            netns: pod.netns.clone(),
            stop: CancellationToken::new(),
        };
        let network: Arc<dyn PodNetwork> = Arc::new(NetnsNetwork {
            worker: Arc::clone(&worker),
            mark: ports.bypass_mark,
        });
        setup.node.pod_networks().insert(&capture.ips, &network);
        if let Err(error) = capture.serve(&setup, pod, sockets, worker) {
            capture.undo(setup.node);
            return Err(error);
        }
        let (netns, rules) = (pod.netns.clone(), ports);
        let installed = blocking(move || {
            weft_netns::install_capture(&netns, &rules).map_err(|source| CaptureError::Netns {
                what: "install the redirect rules",
                netns,
                source,
            })
        })
        .await;
        if let Err(error) = installed {
            capture.undo(setup.node);
            return Err(error);
        }
        Ok(capture)
    }

    /// Attaches the data-path listeners and starts the DNS proxy.
    fn serve(
        &self,
        setup: &PodSetup<'_>,
        pod: &PodInfo,
        sockets: OpenedSockets,
        worker: Arc<NetnsWorker>,
    ) -> Result<(), CaptureError> {
        let convert = |source| CaptureError::Socket {
            pod: pod.key(),
            source,
        };
        let pod_sockets = PodSockets {
            hbone: tokio_listener(sockets.hbone).map_err(convert)?,
            outbound: Some(tokio_listener(sockets.outbound).map_err(convert)?),
            inbound_plaintext: Some(tokio_listener(sockets.inbound).map_err(convert)?),
        };
        let dns_tcp = tokio_listener(sockets.dns_tcp).map_err(convert)?;
        sockets.dns_udp.set_nonblocking(true).map_err(convert)?;
        let dns_udp = tokio::net::UdpSocket::from_std(sockets.dns_udp).map_err(convert)?;
        setup
            .node
            .workload_listeners()
            .attach(self.ip, pod_sockets)
            .map_err(|source| CaptureError::Attach {
                pod: pod.key(),
                source,
            })?;
        let scope = DnsScope {
            resolver: setup.dns.clone(),
            namespace: pod.namespace.as_str().into(),
            forwarder: setup.dns_upstream.map(|addr| {
                let upstream = Upstream {
                    addr,
                    socket: udp_factory(worker, setup.rules.bypass_mark),
                    timeout: UPSTREAM_TIMEOUT,
                };
                let limits = Arc::clone(&setup.dns_limits);
                Arc::new(Forwarder::new(upstream, limits, self.stop.clone()))
            }),
            tcp_timeout: server::TCP_TIMEOUT,
        };
        server::serve_udp(dns_udp, scope.clone(), self.stop.clone());
        server::serve_tcp(dns_tcp, scope, self.stop.clone());
        Ok(())
    }

    /// Closes the listeners and forgets the pod's network (connections already open
    /// drain normally).
    fn undo(&self, node: &Node) {
        self.stop.cancel();
        node.workload_listeners().detach(self.ip);
        node.pod_networks().remove(&self.ips);
    }

    /// Stops capturing: removes the redirect rules first (when `remove_rules`; a proxy
    /// that is only restarting keeps them so the pod's traffic never bypasses the mesh),
    /// then closes the listeners.
    pub(super) async fn stop(self, node: &Node, rules: &CaptureConfig, remove_rules: bool) {
        if remove_rules {
            let (netns, rules) = (self.netns.clone(), *rules);
            let removed = blocking(move || {
                weft_netns::remove_capture(&netns, &rules).map_err(|source| CaptureError::Netns {
                    what: "remove the redirect rules",
                    netns,
                    source,
                })
            })
            .await;
            if let Err(error) = removed {
                // A pod whose namespace is already gone has no rules left to remove.
                tracing::info!(%error, "capture rules not removed");
            }
        }
        self.undo(node);
    }

    /// The namespace this capture lives in.
    pub(super) fn netns(&self) -> &Path {
        &self.netns
    }
}

/// Runs blocking namespace work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CaptureError> + Send + 'static,
) -> Result<T, CaptureError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CaptureError::Task(e.to_string()))?
}
