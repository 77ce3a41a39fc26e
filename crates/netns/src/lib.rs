//! Linux plumbing for running a mesh on one machine: named network namespaces, veth links
//! and routes ([`LocalCluster`]: an underlay bridge, node namespaces, pod namespaces),
//! sockets opened inside another namespace ([`open_listener_in`], [`NetnsWorker`],
//! transparent [`connect_in`]), in-pod capture rules ([`install_capture`]), the node-side
//! source NAT that lets kubelet probes past them ([`sync_probe_snat`]) and a minimal
//! kube-proxy ([`sync_service_rules`]).
//!
//! It owns nothing but what it creates: every namespace carries the caller's prefix, links
//! are created directly inside those namespaces, and the root namespace gets nothing but
//! what [`LocalCluster::expose_to_host`] is asked for (one link and /32 routes to chosen
//! pods). It does not proxy traffic, decide policy or know about Kubernetes objects;
//! the node proxy and `weft up` build on it.
//!
//! Rules use native nftables (`nft -f`), not iptables: each concern is one table
//! (`inet weft_capture` per pod, `ip weft_services` and `inet weft_probes` per node) replaced in one atomic
//! transaction and removed with one `delete table`, without touching rules anybody else
//! installed; `numgen` gives endpoint load-balancing in one rule; and there is no
//! dependency on the iptables-nft / iptables-legacy choice of the host. Namespaces, links
//! and routes use `ip` (iproute2). All tool failures carry the command and its stderr.
//!
//! A cluster, a workload, and the capture the node proxy installs for it:
//!
//! ```no_run
//! use std::net::{Ipv4Addr, SocketAddr};
//! use weft_netns::{CaptureConfig, ClusterSpec, LocalCluster, SocketOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = ClusterSpec::new("demo").node("a").node("b").pod("client", "a").pod("server", "b");
//! let cluster = LocalCluster::create(&spec, "/run/weft".as_ref())?; // torn down on drop
//! let server = cluster.pod("server").expect("declared above");
//! let _workload = server.netns.command("weft").args(["x", "echo", "--port", "8080"]).spawn()?;
//!
//! // Node proxy side: listeners inside the pod, then the redirect rules.
//! let (ns, config) = (server.netns.path(), CaptureConfig::default());
//! let inbound = weft_netns::open_listener_in(&ns, SocketAddr::from(([0, 0, 0, 0], config.inbound_port)))?;
//! weft_netns::install_capture(&ns, &config)?;
//! let (_downstream, caller) = inbound.accept()?;
//! let target = weft_netns::original_dst(&_downstream)?; // server IP:8080
//! // Connect to the workload as the caller; the bypass mark keeps it from being captured.
//! let opts = SocketOptions { mark: Some(config.bypass_mark), transparent_source: Some(caller) };
//! let _upstream = weft_netns::connect_in(&ns, SocketAddr::V4(target), opts)?;
//! # Ok(()) }
//! ```
//!
//! From async code, keep one [`NetnsWorker`] per pod and create sockets there, then
//! connect them on the runtime:
//!
//! ```no_run
//! # async fn f(worker: &weft_netns::NetnsWorker, peer: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! let opts = weft_netns::SocketOptions { mark: Some(0x539), transparent_source: None };
//! let socket = worker.run_async(move || weft_netns::tcp_socket(peer, opts)).await??;
//! socket.set_nonblocking(true)?;
//! let stream = tokio::net::TcpSocket::from_std_stream(socket).connect(peer).await?;
//! # drop(stream); Ok(()) }
//! ```
//!
//! Everything here needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`); [`check_prerequisites`]
//! says what is missing.

mod capture;
mod cluster;
mod error;
mod host;
mod inns;
mod netns;
mod probes;
mod services;
mod tool;

pub use capture::{
    CAPTURE_TABLE, CaptureConfig, capture_installed, install_capture, install_hold,
    refresh_capture_rules, remove_capture,
};
pub use cluster::{
    ClusterSpec, ClusterState, LocalCluster, Node, NodeSpec, POD_INTERFACE, Pod, PodSpec,
    UNDERLAY_BRIDGE, Underlay, teardown,
};
pub use error::{Error, Result};
pub use host::{HOST_LINK_UNDERLAY_END, HostLink, host_link_name};
pub use inns::{
    NetnsWorker, SocketOptions, bind_tcp_listener, bind_udp_socket, connect_in, open_listener_in,
    open_udp_in, original_dst, run_in_netns, tcp_connect, tcp_socket,
};
pub use netns::{NETNS_ETC_DIR, NETNS_RUN_DIR, NetNs, list_netns};
pub use probes::{
    PROBE_SOURCE_V4, PROBE_SOURCE_V6, PROBES_TABLE, probe_snat_script, remove_probe_snat,
    sync_probe_snat,
};
pub use services::{
    Protocol, SERVICES_TABLE, ServiceRule, remove_service_rules, services_nft_script,
    sync_service_rules,
};
pub use tool::check_prerequisites;
