//! In-pod traffic capture rules (native nftables, one table per pod namespace).
//!
//! [`install_capture`] puts table `inet weft_capture` into a pod's namespace:
//!
//! - `prerouting` (nat): TCP arriving from outside the pod (not on `lo`) is redirected to the
//!   inbound port (15006), except the HBONE port (15008), which reaches the proxy's HBONE
//!   listener as is, and (with [`CaptureConfig::exempt_probe_source`]) TCP from the
//!   node's probe source, which reaches the workload as is (see [`crate::sync_probe_snat`]).
//! - `output` (nat): the pod's own outgoing traffic, except packets carrying the bypass mark
//!   and traffic staying on `lo`: DNS (UDP and TCP port 53) goes to the DNS port (15053), all
//!   other TCP to the outbound port (15001). UDP other than DNS is not captured. Redirected
//!   packets are addressed to 127.0.0.1: bind the DNS UDP socket to `127.0.0.1:15053` so its
//!   answers leave from the address conntrack expects and reach the client as coming from
//!   the resolver it asked.
//! - `route_output` (route): packets carrying the bypass mark copy it into their conntrack
//!   entry; packets going the *reply* way of such a connection (the workload answering a
//!   transparent connect from the proxy) get the reply mark, which makes the kernel route
//!   them again.
//! - policy routing: `ip rule fwmark <reply mark> lookup <table>` and
//!   `local 0.0.0.0/0 dev lo table <table>`, so those replies are delivered to the proxy's
//!   transparent socket inside the pod instead of leaving through the default route toward
//!   the caller's real IP.
//!
//! [`install_hold`] puts a table of the same name in place *before* a pod can be captured
//! (the node proxy knows where the pod is, not yet whether the mesh enrolls it): new TCP
//! connections into and out of the pod and its DNS queries are dropped, so the pod's
//! kernel sends them again (SYN and DNS retries) instead of failing or leaving the mesh
//! uncaptured. [`install_capture`] replaces that table atomically once the pod is
//! enrolled (the next retry is redirected to the proxy), [`remove_capture`] deletes it
//! once the mesh says the pod is not enrolled.
//!
//! Listeners the proxy opens in the pod (with [`crate::open_listener_in`] /
//! [`crate::open_udp_in`]): outbound `127.0.0.1:15001` (or `0.0.0.0`), inbound
//! `0.0.0.0:15006` (prerouting redirects to the pod's own address), HBONE `<pod IP>:15008`,
//! DNS `127.0.0.1:15053` on UDP and TCP. Opening the listeners before installing the rules
//! means no connection is ever redirected to a port nobody listens on.
//!
//! The proxy sets `SO_MARK = bypass_mark` on every socket it opens in the pod (upstream
//! connects, transparent inbound connects, DNS upstream queries), so nothing it sends is
//! captured again. Redirected connections keep their original destination in conntrack:
//! read it with [`crate::original_dst`].

use crate::error::{Error, Result};
use crate::probes::{PROBE_SOURCE_V4, PROBE_SOURCE_V6};
use crate::tool;
use std::path::Path;

/// Name of the nftables table this module owns in each pod namespace.
pub const CAPTURE_TABLE: &str = "weft_capture";

/// Ports and marks of the in-pod capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Where the pod's outgoing TCP is redirected (default 15001).
    pub outbound_port: u16,
    /// Where incoming plaintext TCP is redirected (default 15006).
    pub inbound_port: u16,
    /// Incoming TCP to this port is left alone: the HBONE listener (default 15008).
    pub hbone_port: u16,
    /// Where the pod's DNS queries (UDP and TCP 53) are redirected (default 15053).
    pub dns_port: u16,
    /// `SO_MARK` of the proxy's own sockets: never captured (default 0x539).
    pub bypass_mark: u32,
    /// Mark given to replies of the proxy's transparent connections (default 0x53a).
    pub reply_mark: u32,
    /// Routing table delivering reply-marked packets locally (default 133).
    pub route_table: u32,
    /// Let TCP from the node's probe source ([`crate::PROBE_SOURCE_V4`],
    /// [`crate::PROBE_SOURCE_V6`]) reach the workload without the redirect (default off).
    /// Only together with the node's source NAT ([`crate::sync_probe_snat`]).
    pub exempt_probe_source: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            outbound_port: 15001,
            inbound_port: 15006,
            hbone_port: 15008,
            dns_port: 15053,
            bypass_mark: 0x539,
            reply_mark: 0x53a,
            route_table: 133,
            exempt_probe_source: false,
        }
    }
}

impl CaptureConfig {
    /// The nftables script that (re)creates the capture table atomically.
    #[must_use]
    pub fn nft_script(&self) -> String {
        let Self {
            outbound_port,
            inbound_port,
            hbone_port,
            dns_port,
            bypass_mark,
            reply_mark,
            exempt_probe_source,
            ..
        } = *self;
        let probes = if exempt_probe_source {
            format!(
                "ip saddr {PROBE_SOURCE_V4} meta l4proto tcp return
    ip6 saddr {PROBE_SOURCE_V6} meta l4proto tcp return
    "
            )
        } else {
            String::new()
        };
        format!(
            "table inet {CAPTURE_TABLE} {{}}
delete table inet {CAPTURE_TABLE}
table inet {CAPTURE_TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"lo\" return
    meta mark {bypass_mark:#x} return
    tcp dport {hbone_port} return
    {probes}meta l4proto tcp redirect to :{inbound_port}
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    meta mark {bypass_mark:#x} return
    oifname \"lo\" return
    meta l4proto {{ tcp, udp }} th dport 53 redirect to :{dns_port}
    meta l4proto tcp redirect to :{outbound_port}
  }}
  chain route_output {{
    type route hook output priority mangle; policy accept;
    meta mark {bypass_mark:#x} ct mark set {bypass_mark:#x}
    ct direction reply ct mark {bypass_mark:#x} meta mark set {reply_mark:#x}
  }}
}}
"
        )
    }

    /// The nftables script that (re)creates the capture table as a hold: new TCP
    /// connections in either direction (a SYN without ACK, counted) and DNS queries are
    /// dropped; loopback, the proxy's own (bypass-marked) packets and established
    /// connections pass.
    #[must_use]
    pub fn hold_script(&self) -> String {
        let bypass_mark = self.bypass_mark;
        format!(
            "table inet {CAPTURE_TABLE} {{}}
delete table inet {CAPTURE_TABLE}
table inet {CAPTURE_TABLE} {{
  chain hold_input {{
    type filter hook input priority filter; policy accept;
    iifname \"lo\" accept
    meta mark {bypass_mark:#x} accept
    tcp flags & (syn | ack) == syn counter drop
  }}
  chain hold_output {{
    type filter hook output priority filter; policy accept;
    oifname \"lo\" accept
    meta mark {bypass_mark:#x} accept
    tcp flags & (syn | ack) == syn counter drop
    meta l4proto {{ tcp, udp }} th dport 53 drop
  }}
}}
"
        )
    }

    /// `ip rule` arguments selecting the reply-mark rule.
    fn rule_selector(&self) -> [String; 4] {
        [
            "fwmark".into(),
            format!("{:#x}", self.reply_mark),
            "lookup".into(),
            self.route_table.to_string(),
        ]
    }
}

/// Installs (or replaces) the capture rules in the pod namespace at `netns`. Idempotent.
///
/// # Errors
/// `nft` or `ip` fails inside the namespace (stderr is in the error).
pub fn install_capture(netns: &Path, config: &CaptureConfig) -> Result<()> {
    // The proxy's ports must never be handed out as a workload's ephemeral source port:
    // a client socket holding 15006 would keep a restarted proxy from listening there.
    let reserved = [
        config.outbound_port,
        config.inbound_port,
        config.hbone_port,
        config.dns_port,
    ]
    .map(|port| port.to_string())
    .join(",");
    crate::netns::set_sysctl_in(netns, "net.ipv4.ip_local_reserved_ports", &reserved)?;
    tool::nft_in(netns, &config.nft_script())?;
    remove_policy_routing(netns, config)?;
    let table = config.route_table.to_string();
    tool::run_in(
        netns,
        "ip",
        &[
            "route",
            "replace",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            &table,
        ],
        None,
    )?;
    let selector = config.rule_selector();
    let mut add = vec!["rule", "add"];
    add.extend(selector.iter().map(String::as_str));
    add.extend(["pref", "100"]);
    tool::run_in(netns, "ip", &add, None)?;
    Ok(())
}

/// Replaces only the capture table of a pod whose capture is installed (a proxy taking a
/// pod over from its predecessor, whose rules may be of another version), leaving policy
/// routing alone: re-adding that would briefly drop the route returning replies to the
/// transparent sockets of connections still draining in the predecessor. The table is
/// replaced in one transaction; redirections already made live in conntrack. Idempotent.
///
/// # Errors
/// `nft` fails inside the namespace (stderr is in the error).
pub fn refresh_capture_rules(netns: &Path, config: &CaptureConfig) -> Result<()> {
    tool::nft_in(netns, &config.nft_script())
}

/// Holds the pod's new connections (see [`CaptureConfig::hold_script`]) until
/// [`install_capture`] or [`remove_capture`] replaces or removes the table. Idempotent.
///
/// # Errors
/// `nft` fails inside the namespace (stderr is in the error).
pub fn install_hold(netns: &Path, config: &CaptureConfig) -> Result<()> {
    tool::nft_in(netns, &config.hold_script())
}

/// Removes everything [`install_capture`] added; removing what is not there is fine.
///
/// # Errors
/// A command fails for a reason other than "not there".
pub fn remove_capture(netns: &Path, config: &CaptureConfig) -> Result<()> {
    tool::remove_table_in(netns, "inet", CAPTURE_TABLE)?;
    remove_policy_routing(netns, config)
}

/// Whether the capture table is present in the namespace at `netns`.
///
/// # Errors
/// `nft` cannot be run there.
pub fn capture_installed(netns: &Path) -> Result<bool> {
    let tables = tool::run_in(netns, "nft", &["list", "tables"], None)?;
    Ok(tables
        .lines()
        .any(|l| l.trim() == format!("table inet {CAPTURE_TABLE}")))
}

fn remove_policy_routing(netns: &Path, config: &CaptureConfig) -> Result<()> {
    // `ip rule del` fails once no matching rule is left: delete until it does.
    let selector = config.rule_selector();
    let mut del = vec!["rule", "del"];
    del.extend(selector.iter().map(String::as_str));
    for _ in 0..16 {
        if tool::run_in(netns, "ip", &del, None).is_err() {
            break;
        }
    }
    let table = config.route_table.to_string();
    match tool::run_in(netns, "ip", &["route", "flush", "table", &table], None) {
        Ok(_) => Ok(()),
        // An empty/unknown table is "already removed".
        Err(Error::Command { stderr, .. })
            if stderr.contains("FIB table does not exist") || stderr.is_empty() =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
