//! Linux plumbing for running a mesh on one machine: named network namespaces, veth links
//! and routes ([`LocalCluster`]: an underlay bridge, node namespaces, pod namespaces),
//! sockets opened inside another namespace ([`open_listener_in`], [`NetnsWorker`],
//! transparent [`connect_in`]), in-pod capture rules ([`install_capture`]) and a minimal
//! kube-proxy ([`sync_service_rules`]).
//!
//! It owns nothing but what it creates: every namespace carries the caller's prefix, links
//! are created directly inside those namespaces, and nothing is configured in the root
//! namespace. It does not proxy traffic, decide policy or know about Kubernetes objects;
//! the node proxy and `weft up` build on it.
//!
//! Rules use native nftables (`nft -f`), not iptables: each concern is one table
//! (`inet weft_capture` per pod, `ip weft_services` per node) replaced in one atomic
//! transaction and removed with one `delete table`, without touching rules anybody else
//! installed; `numgen` gives endpoint load-balancing in one rule; and there is no
//! dependency on the iptables-nft / iptables-legacy choice of the host. Namespaces, links
//! and routes use `ip` (iproute2). All tool failures carry the command and its stderr.
//!
//! Everything here needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`); [`check_prerequisites`]
//! says what is missing.

mod capture;
mod cluster;
mod error;
mod inns;
mod netns;
mod services;
mod tool;

pub use capture::{
    CAPTURE_TABLE, CaptureConfig, capture_installed, install_capture, remove_capture,
};
pub use cluster::{
    ClusterSpec, ClusterState, LocalCluster, Node, NodeSpec, POD_INTERFACE, Pod, PodSpec,
    UNDERLAY_BRIDGE, Underlay, teardown,
};
pub use error::{Error, Result};
pub use inns::{
    NetnsWorker, SocketOptions, bind_tcp_listener, bind_udp_socket, connect_in, open_listener_in,
    open_udp_in, original_dst, run_in_netns, tcp_connect, tcp_socket,
};
pub use netns::{NETNS_ETC_DIR, NETNS_RUN_DIR, NetNs, list_netns};
pub use services::{
    Protocol, SERVICES_TABLE, ServiceRule, remove_service_rules, services_nft_script,
    sync_service_rules,
};
pub use tool::check_prerequisites;
