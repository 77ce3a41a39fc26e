//! Kubelet probes of captured pods: the node-side half (source NAT in the node's network
//! namespace); the pod-side half is [`crate::CaptureConfig::exempt_probe_source`].
//!
//! The kubelet probes a pod (HTTP and TCP checks) from the node itself, in plaintext. A
//! captured pod's inbound redirect would hand such a connection to the node proxy, which
//! refuses plaintext under STRICT mTLS: every probed pod would fail its checks. So, as Istio
//! ambient does, connections the node opens to its captured pods leave with the link-local
//! source [`PROBE_SOURCE_V4`] ([`PROBE_SOURCE_V6`] for IPv6), and the pod's capture lets
//! that source past the redirect, straight to the workload.
//!
//! [`sync_probe_snat`] puts table `inet weft_probes` into the node's namespace: a set of the
//! captured pods' addresses and one `postrouting` (source NAT) rule per family rewriting
//! TCP towards an address of the set *when it comes from a socket of the node* (a packet
//! the node forwards has none: `meta skuid` only matches with one, like Istio's
//! `--socket-exists`) *with one of the node's addresses as source* (not a transparent
//! socket speaking for someone else). Traffic a node forwards (pod to pod, node to node)
//! keeps its source, even when it forges the node's own address. Like Istio's rule, this
//! covers every process on the node's network (host-network pods too), not only the
//! kubelet: the node is trusted with its own pods.
//!
//! The pod-side exemption is only installed by a proxy that also keeps this table (if the
//! table cannot be written, pods carry an exemption nothing uses): nothing else should
//! produce the link-local source. A sender on the pod network forging it gets past the
//! redirect but never sees an answer (the pod replies towards the node, which has no such
//! connection), so it cannot complete a TCP handshake; that is the same exposure as Istio's.
//! The table is replaced as a whole, atomically, on every change of the set: NAT already
//! applied to open connections lives in conntrack and is unaffected.

use crate::error::Result;
use crate::tool;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Name of the nftables table this module owns in the node's namespace.
pub const PROBES_TABLE: &str = "weft_probes";
/// Source address of the node's IPv4 connections to its captured pods (Istio's choice).
pub const PROBE_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 7, 127);
/// Source address of the node's IPv6 connections to its captured pods (Istio's choice).
pub const PROBE_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(
    0xfd16, 0x9254, 0x7127, 0x1337, 0xffff, 0xffff, 0xffff, 0xffff,
);

/// The nftables script that (re)creates the probe table holding `pods`.
#[must_use]
pub fn probe_snat_script(pods: &[IpAddr]) -> String {
    let elements = |want_v4: bool| {
        let listed: Vec<String> = pods
            .iter()
            .filter(|ip| ip.is_ipv4() == want_v4)
            .map(ToString::to_string)
            .collect();
        if listed.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", listed.join(", "))
        }
    };
    format!(
        "table inet {PROBES_TABLE} {{}}
delete table inet {PROBES_TABLE}
table inet {PROBES_TABLE} {{
  set pods_v4 {{ type ipv4_addr;{v4} }}
  set pods_v6 {{ type ipv6_addr;{v6} }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    meta l4proto tcp ip daddr @pods_v4 meta skuid >= 0 fib saddr type local snat ip to {PROBE_SOURCE_V4}
    meta l4proto tcp ip6 daddr @pods_v6 meta skuid >= 0 fib saddr type local snat ip6 to {PROBE_SOURCE_V6}
  }}
}}
",
        v4 = elements(true),
        v6 = elements(false),
    )
}

/// Makes the node's probe table (in the namespace at `node_netns`) hold exactly `pods`.
/// Idempotent.
///
/// # Errors
/// `nft` fails inside the namespace (stderr is in the error).
pub fn sync_probe_snat(node_netns: &Path, pods: &[IpAddr]) -> Result<()> {
    tool::nft_in(node_netns, &probe_snat_script(pods))
}

/// Removes the node's probe table; removing what is not there is fine.
///
/// # Errors
/// `nft` fails inside the namespace.
pub fn remove_probe_snat(node_netns: &Path) -> Result<()> {
    tool::remove_table_in(node_netns, "inet", PROBES_TABLE)
}
