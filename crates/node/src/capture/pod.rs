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
use weft_serve::handoff::OfferGuard;

use super::sockets::{OpenedSockets, PodListeners};
use super::{CaptureError, PodInfo};
use crate::dns::DnsResolver;
use crate::dns::server::{self, DnsScope, ForwardLimits, Forwarder, UdpFactory, Upstream};
use crate::handoff::Handoff;
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

/// What the data path needs to serve one pod.
pub(super) struct PodSetup<'a> {
    pub(super) node: &'a Node,
    pub(super) rules: &'a CaptureConfig,
    pub(super) handoff: &'a Handoff,
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
    /// Keeps the pod's listeners offered to a successor while they are open.
    _offers: Vec<OfferGuard>,
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
        let inherited = PodListeners::inherited(setup.handoff, &pod.uid, ip, &ports);
        let open_sockets = inherited.is_none();
        let (worker, opened) = blocking(move || {
            let worker = NetnsWorker::spawn(&netns).map_err(|source| CaptureError::Netns {
                what: "enter the pod's network namespace",
                netns: netns.clone(),
                source,
            })?;
            let opened = open_sockets
                .then(|| OpenedSockets::open_when_free(&worker, ip, &ports))
                .transpose()?;
            Ok((Arc::new(worker), opened))
        })
        .await?;
        let sockets = PodListeners::inherited_or_opened(inherited, opened).map_err(|source| {
            CaptureError::Socket {
                pod: pod.key(),
                source,
            }
        })?;
        let capture = Self {
            ip,
            ips: pod.ips.clone(),
            netns: pod.netns.clone(),
            stop: CancellationToken::new(),
            _offers: sockets.offer(setup.handoff, &pod.uid, ip, &ports),
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
        if !open_sockets {
            // Taken over from the previous proxy, whose rules are in place: installing
            // them again would briefly remove the policy route that returns replies to
            // transparent sockets, resetting connections that are still draining there.
            // Only the table is brought up to date, to add the probe exemption (a proxy
            // without it keeps the predecessor's table: the node's probe source NAT,
            // which it does not manage, may still be in place); if that fails the
            // predecessor's rules keep capturing.
            if !ports.exempt_probe_source {
                return Ok(capture);
            }
            let (netns, rules) = (pod.netns.clone(), ports);
            let refreshed = blocking(move || {
                weft_netns::refresh_capture_rules(&netns, &rules).map_err(|source| {
                    CaptureError::Netns {
                        what: "refresh the redirect rules",
                        netns,
                        source,
                    }
                })
            })
            .await;
            if let Err(error) = refreshed {
                tracing::warn!(pod = %pod.key(), %error, "cannot refresh the redirect rules taken over; the previous ones stay");
            }
            return Ok(capture);
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
        sockets: PodListeners,
        worker: Arc<NetnsWorker>,
    ) -> Result<(), CaptureError> {
        let pod_sockets = PodSockets {
            hbone: sockets.hbone,
            outbound: Some(sockets.outbound),
            inbound_plaintext: Some(sockets.inbound),
        };
        let (dns_tcp, dns_udp) = (sockets.dns_tcp, sockets.dns_udp);
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

    /// A successor proxy took the pod's listeners over: stops serving its DNS here. The
    /// data-path listeners stop with the node's shutdown; the pod's network stays
    /// registered for the connections still draining, and the redirect rules stay.
    pub(super) fn release(&self) {
        self.stop.cancel();
    }

    /// The namespace this capture lives in.
    pub(super) fn netns(&self) -> &Path {
        &self.netns
    }
}

/// Runs blocking namespace work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CaptureError> + Send + 'static,
) -> Result<T, CaptureError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CaptureError::Task(e.to_string()))?
}
