//! Reaching chosen pods from the machine's own (root) network namespace: the one place that
//! configures anything outside the cluster's namespaces, and only on request
//! ([`LocalCluster::expose_to_host`]), so a mesh without gateways changes nothing there.
//!
//! ```text
//!  root ns: P-host (HOST_IP/32) ══ host0 (LINK_IP/32)  P-underlay (forwards)
//!           route POD/32 via LINK_IP dev P-host onlink src HOST_IP
//! ```
//!
//! - One veth pair per cluster, created on the first exposed pod; both ends get /32
//!   addresses taken from the top of the underlay range, so no subnet route appears in the
//!   root namespace and the host's own routes are untouched.
//! - The root namespace gets one /32 route per exposed pod, never a route for a whole pod
//!   CIDR: several clusters (tests in parallel, different prefixes) may use the same pod
//!   CIDRs. An address another link already routes is left alone and reported.
//! - The underlay forwards between the link and the nodes, and answers ARP for `HOST_IP` on
//!   its bridge (a proxy entry), so nodes and pods reply through it.
//! - Deleting the underlay namespace deletes the pair with every route through it, so
//!   [`crate::teardown`] (also after a crash) leaves nothing behind; the state file records
//!   the link and routes all the same.

use crate::cluster::{LocalCluster, UNDERLAY_BRIDGE};
use crate::error::{Error, Result};
use crate::tool;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Name of the link's end inside the underlay namespace.
pub const HOST_LINK_UNDERLAY_END: &str = "host0";

/// The link between the root namespace and the underlay, and the pods routed through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLink {
    /// The link's name in the root namespace (at most 15 characters).
    pub name: String,
    /// The root namespace's address on it (the source of requests to pods).
    pub host_ip: Ipv4Addr,
    /// The underlay's address on it (the next hop of the root namespace's routes).
    pub underlay_ip: Ipv4Addr,
    /// Pod addresses the root namespace routes through it.
    pub routes: Vec<Ipv4Addr>,
}

/// The root-namespace link name of cluster `prefix`: `<prefix>-host`, or, when that is
/// longer than an interface name may be, `wh<hash>`: unique per prefix either way.
#[must_use]
pub fn host_link_name(prefix: &str) -> String {
    let plain = format!("{prefix}-host");
    if plain.len() <= 15 {
        return plain;
    }
    let hash = prefix.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("wh-{:012x}", hash & 0xffff_ffff_ffff)
}

impl LocalCluster {
    /// Makes pod address `ip` reachable from the root namespace. Returns `false` (and
    /// changes nothing) when the root namespace already routes `ip` through another link,
    /// e.g. another cluster using the same pod addresses.
    ///
    /// # Errors
    /// `ip` is no pod address of this cluster, or a command fails.
    pub fn expose_to_host(&mut self, ip: Ipv4Addr) -> Result<bool> {
        if !self.state().nodes.iter().any(|n| n.pod_cidr.contains(&ip)) {
            return Err(Error::Topology(format!(
                "{ip} is not in a pod CIDR of this cluster: only pods are routed from the host"
            )));
        }
        let link = match self.state().host.clone() {
            Some(link) => link,
            None => self.create_host_link()?,
        };
        if link.routes.contains(&ip) {
            return Ok(true);
        }
        if routed_elsewhere(ip, &link.name)? {
            return Ok(false);
        }
        let (via, src) = (link.underlay_ip.to_string(), link.host_ip.to_string());
        let target = format!("{ip}/32");
        let args = [
            "route", "add", &target, "via", &via, "dev", &link.name, "onlink", "src", &src,
        ];
        if let Err(e) = tool::run("ip", &args) {
            // Lost a race with another cluster adding the same address: theirs stays.
            return if routed_elsewhere(ip, &link.name)? {
                Ok(false)
            } else {
                Err(e)
            };
        }
        self.update_host_link(|link| link.routes.push(ip))?;
        Ok(true)
    }

    /// Removes the root namespace's route to `ip` (if this cluster added one).
    ///
    /// # Errors
    /// The route cannot be removed.
    pub fn unexpose_from_host(&mut self, ip: Ipv4Addr) -> Result<()> {
        let Some(link) = self.state().host.clone() else {
            return Ok(());
        };
        if !link.routes.contains(&ip) {
            return Ok(());
        }
        let target = format!("{ip}/32");
        if link_exists(&link.name)? {
            tool::run("ip", &["route", "del", &target, "dev", &link.name])?;
        }
        self.update_host_link(|link| link.routes.retain(|r| *r != ip))
    }

    /// The link between the root namespace and the underlay, once a pod was exposed.
    #[must_use]
    pub fn host_link(&self) -> Option<&HostLink> {
        self.state().host.as_ref()
    }

    fn create_host_link(&mut self) -> Result<HostLink> {
        let underlay = self.underlay().clone();
        let mut top = underlay.cidr.hosts().rev();
        let (host_ip, underlay_ip) = match (top.next(), top.next()) {
            (Some(host), Some(link)) if link != underlay.ip => (host, link),
            _ => {
                return Err(Error::Topology(format!(
                    "underlay {} has no addresses left for the host link",
                    underlay.cidr
                )));
            }
        };
        let link = HostLink {
            name: host_link_name(&self.state().prefix),
            host_ip,
            underlay_ip,
            routes: Vec::new(),
        };
        // Record first: a failure halfway still leaves the link in the state file.
        self.update_host_link_to(Some(link.clone()))?;
        let ul = &underlay.netns;
        let (host, peer) = (format!("{host_ip}/32"), format!("{underlay_ip}/32"));
        tool::run(
            "ip",
            &[
                "link",
                "add",
                &link.name,
                "type",
                "veth",
                "peer",
                "name",
                HOST_LINK_UNDERLAY_END,
                "netns",
                ul.name(),
            ],
        )?;
        tool::run("ip", &["addr", "add", &host, "dev", &link.name])?;
        tool::run("ip", &["link", "set", &link.name, "up"])?;
        let end = HOST_LINK_UNDERLAY_END;
        ul.ip(&["addr", "add", &peer, "dev", end])?;
        ul.ip(&["link", "set", end, "up"])?;
        ul.ip(&["route", "add", &host, "dev", end])?;
        // Nodes reach HOST_IP on the bridge's subnet: the underlay answers for it.
        let host_ip = host_ip.to_string();
        ul.ip(&["neigh", "add", "proxy", &host_ip, "dev", UNDERLAY_BRIDGE])?;
        ul.set_sysctl("net.ipv4.ip_forward", "1")?;
        Ok(link)
    }

    fn update_host_link(&mut self, change: impl FnOnce(&mut HostLink)) -> Result<()> {
        let mut link = self.state().host.clone();
        if let Some(link) = link.as_mut() {
            change(link);
        }
        self.update_host_link_to(link)
    }
}

/// Deletes the root-namespace end of `link` if it still exists (deleting the underlay
/// namespace does the same).
pub(crate) fn remove_host_link(link: &HostLink) -> Result<()> {
    if link_exists(&link.name)? {
        tool::run("ip", &["link", "del", &link.name])?;
    }
    Ok(())
}

fn link_exists(name: &str) -> Result<bool> {
    Ok(!tool::run("ip", &["-o", "link", "show"])?
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .all(|found| found.trim().split('@').next() != Some(name)))
}

/// Whether the root namespace has a /32 route to `ip` through a link other than `ours`.
fn routed_elsewhere(ip: Ipv4Addr, ours: &str) -> Result<bool> {
    let out = tool::run("ip", &["-o", "route", "show", "exact", &format!("{ip}/32")])?;
    Ok(out.lines().any(|line| {
        let mut words = line.split_whitespace();
        let dev = words.by_ref().skip_while(|w| *w != "dev").nth(1);
        dev.is_some_and(|dev| dev != ours)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_an_interface_name_and_differ_per_prefix() {
        assert_eq!(host_link_name("weft"), "weft-host");
        assert_eq!(host_link_name("abcdefghij"), "abcdefghij-host");
        let long = host_link_name("abcdefghijklmnop");
        assert!(long.len() <= 15, "{long}");
        assert_ne!(long, host_link_name("abcdefghijklmnoq"));
    }
}
