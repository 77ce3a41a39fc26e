//! The listening sockets of one captured pod: opened inside its network namespace, or
//! inherited from the proxy this one replaces (see [`crate::handoff`]); offered to the
//! next proxy either way, so a restart never closes them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use weft_netns::{CaptureConfig, NetnsWorker};
use weft_serve::handoff::OfferGuard;

use super::CaptureError;
use crate::handoff::{Handoff, Transport, pod_socket_name};

/// Where a pod's listeners are bound.
#[derive(Debug, Clone, Copy)]
struct PodAddrs {
    outbound: SocketAddr,
    inbound: SocketAddr,
    hbone: SocketAddr,
    dns: SocketAddr,
}

impl PodAddrs {
    fn new(ip: IpAddr, ports: &CaptureConfig) -> Self {
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self {
            outbound: local(ports.outbound_port),
            inbound: SocketAddr::from((Ipv4Addr::UNSPECIFIED, ports.inbound_port)),
            hbone: SocketAddr::new(ip, ports.hbone_port),
            dns: local(ports.dns_port),
        }
    }

    /// The TCP listeners' hand-off names and addresses (outbound, inbound, HBONE, DNS).
    fn tcp(&self, uid: &str) -> [(String, SocketAddr); 4] {
        [self.outbound, self.inbound, self.hbone, self.dns]
            .map(|addr| (pod_socket_name(uid, Transport::Tcp, addr.port()), addr))
    }

    fn dns_udp_name(&self, uid: &str) -> String {
        pod_socket_name(uid, Transport::Udp, self.dns.port())
    }
}

/// Listeners opened inside the pod, still blocking std sockets.
pub(super) struct OpenedSockets {
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
    pub(super) fn open_when_free(
        worker: &NetnsWorker,
        ip: IpAddr,
        ports: &CaptureConfig,
    ) -> Result<Self, CaptureError> {
        let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::open(worker, PodAddrs::new(ip, ports)) {
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

    fn open(worker: &NetnsWorker, addrs: PodAddrs) -> Result<Self, CaptureError> {
        let opened = worker.run(move || -> weft_netns::Result<Self> {
            Ok(Self {
                outbound: weft_netns::bind_tcp_listener(addrs.outbound)?,
                inbound: weft_netns::bind_tcp_listener(addrs.inbound)?,
                hbone: weft_netns::bind_tcp_listener(addrs.hbone)?,
                dns_udp: weft_netns::bind_udp_socket(addrs.dns)?,
                dns_tcp: weft_netns::bind_tcp_listener(addrs.dns)?,
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

/// A pod's listeners, ready for the data path.
pub(super) struct PodListeners {
    pub(super) outbound: TcpListener,
    pub(super) inbound: TcpListener,
    pub(super) hbone: TcpListener,
    pub(super) dns_udp: UdpSocket,
    pub(super) dns_tcp: TcpListener,
}

impl PodListeners {
    /// The pod's listeners inherited from the previous proxy: all of them bound where this
    /// proxy would bind them, or none (then the caller opens them).
    pub(super) fn inherited(
        handoff: &Handoff,
        uid: &str,
        ip: IpAddr,
        ports: &CaptureConfig,
    ) -> Option<Self> {
        let addrs = PodAddrs::new(ip, ports);
        let [outbound, inbound, hbone, dns_tcp] = addrs
            .tcp(uid)
            .map(|(name, addr)| handoff.take_tcp(&name, addr).ok().flatten());
        let dns_udp = handoff
            .take_udp(&addrs.dns_udp_name(uid), addrs.dns)
            .ok()
            .flatten();
        Some(Self {
            outbound: outbound?,
            inbound: inbound?,
            hbone: hbone?,
            dns_udp: dns_udp?,
            dns_tcp: dns_tcp?,
        })
    }

    /// Inherited listeners, or the ones just opened.
    pub(super) fn inherited_or_opened(
        inherited: Option<Self>,
        opened: Option<OpenedSockets>,
    ) -> io::Result<Self> {
        match (inherited, opened) {
            (Some(inherited), _) => Ok(inherited),
            (None, Some(opened)) => Self::from_opened(opened),
            (None, None) => Err(io::Error::other("the pod's listeners were not opened")),
        }
    }

    fn from_opened(opened: OpenedSockets) -> io::Result<Self> {
        opened.dns_udp.set_nonblocking(true)?;
        Ok(Self {
            outbound: tokio_listener(opened.outbound)?,
            inbound: tokio_listener(opened.inbound)?,
            hbone: tokio_listener(opened.hbone)?,
            dns_udp: UdpSocket::from_std(opened.dns_udp)?,
            dns_tcp: tokio_listener(opened.dns_tcp)?,
        })
    }

    /// Offers every listener to a successor; the offers end when the guards drop.
    pub(super) fn offer(
        &self,
        handoff: &Handoff,
        uid: &str,
        ip: IpAddr,
        ports: &CaptureConfig,
    ) -> Vec<OfferGuard> {
        let addrs = PodAddrs::new(ip, ports);
        let [outbound, inbound, hbone, dns_tcp] = addrs.tcp(uid).map(|(name, _)| name);
        let tcp = [
            (outbound, &self.outbound),
            (inbound, &self.inbound),
            (hbone, &self.hbone),
            (dns_tcp, &self.dns_tcp),
        ];
        let mut guards: Vec<OfferGuard> = tcp
            .iter()
            .filter_map(|(name, listener)| handoff.offer(name, *listener))
            .collect();
        guards.extend(handoff.offer(&addrs.dns_udp_name(uid), &self.dns_udp));
        guards
    }
}

fn tokio_listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}
