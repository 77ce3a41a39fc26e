//! A minimal kube-proxy: Service ClusterIP DNAT in a node namespace (native nftables).
//!
//! [`sync_service_rules`] replaces table `ip weft_services` in one atomic `nft -f`
//! transaction. Packets to `vip:port` (forwarded from the node's pods, or sent by the node
//! itself) are DNATed to one ready endpoint picked by `numgen random`; a service without
//! endpoints rejects (TCP reset / ICMP port unreachable) instead of timing out.
//! Not handled: a pod reaching itself through its own service (hairpin; that needs
//! masquerading), session affinity, NodePorts.

use crate::error::Result;
use crate::tool;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

/// Name of the nftables table this module owns in each node namespace.
pub const SERVICES_TABLE: &str = "weft_services";

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One service port: `vip:port` goes to one of `endpoints` (pod IP : target port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    /// The ClusterIP.
    pub vip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Ready endpoints; empty means "reject".
    pub endpoints: Vec<SocketAddrV4>,
}

/// The nftables script that replaces the services table with `rules`.
#[must_use]
pub fn services_nft_script(rules: &[ServiceRule]) -> String {
    let mut dnat = String::new();
    let mut reject = String::new();
    for rule in rules {
        let proto = rule.protocol.nft();
        let matcher = format!("ip daddr {} {proto} dport {}", rule.vip, rule.port);
        if rule.endpoints.is_empty() {
            let how = match rule.protocol {
                Protocol::Tcp => "reject with tcp reset",
                Protocol::Udp => "reject",
            };
            let _ = writeln!(reject, "    {matcher} {how}");
            continue;
        }
        let choices: Vec<String> = rule
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| format!("{i} : {} . {}", ep.ip(), ep.port()))
            .collect();
        let _ = writeln!(
            dnat,
            "    {matcher} dnat ip to numgen random mod {} map {{ {} }}",
            rule.endpoints.len(),
            choices.join(", ")
        );
    }
    format!(
        "table ip {SERVICES_TABLE} {{}}
delete table ip {SERVICES_TABLE}
table ip {SERVICES_TABLE} {{
  chain services {{
{dnat}  }}
  chain no_endpoints {{
{reject}  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }}
  chain output_nat {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    jump no_endpoints
  }}
  chain output_filter {{
    type filter hook output priority filter; policy accept;
    jump no_endpoints
  }}
}}
"
    )
}

/// Makes the service DNAT rules in the namespace at `netns` exactly `rules` (atomic,
/// idempotent: call it with the full set after every change).
///
/// # Errors
/// `nft` fails in the namespace (stderr is in the error).
pub fn sync_service_rules(netns: &Path, rules: &[ServiceRule]) -> Result<()> {
    tool::nft_in(netns, &services_nft_script(rules))
}

/// Removes the services table from the namespace at `netns` (absent is fine).
///
/// # Errors
/// `nft` fails in the namespace.
pub fn remove_service_rules(netns: &Path) -> Result<()> {
    tool::remove_table_in(netns, "ip", SERVICES_TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_dnats_to_endpoints_and_rejects_without_endpoints() {
        let vip = Ipv4Addr::new(10, 96, 0, 1);
        let script = services_nft_script(&[
            ServiceRule {
                vip,
                port: 80,
                protocol: Protocol::Tcp,
                endpoints: vec![
                    "10.244.1.2:8080".parse().unwrap(),
                    "10.244.2.2:8080".parse().unwrap(),
                ],
            },
            ServiceRule {
                vip,
                port: 53,
                protocol: Protocol::Udp,
                endpoints: Vec::new(),
            },
        ]);
        assert!(script.contains(
            "ip daddr 10.96.0.1 tcp dport 80 dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.2.2 . 8080 }"
        ));
        assert!(script.contains("ip daddr 10.96.0.1 udp dport 53 reject\n"));
        assert!(script.starts_with("table ip weft_services {}\ndelete table ip weft_services\n"));
    }
}
