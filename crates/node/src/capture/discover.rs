//! Finding pods that started before the node proxy (`weft node --cni-socket`).
//!
//! A pod whose sandbox was created before the CNI plugin was installed, or while the node
//! proxy was being replaced by a proxy without the saved pod list, was never announced.
//! The mesh state still lists its workload on this node, so the node proxy looks for the
//! network namespace that holds the workload's address: the named namespaces under
//! `/var/run/netns` first (containerd, CRI-O and `ip netns` keep a pod's namespace there),
//! then every process's `/proc/PID/ns/net`. Each distinct namespace (by device and inode)
//! is entered once, on a short-lived thread, to read its interface addresses; the host's
//! own namespace is skipped (host-network pods are not captured).
//!
//! Scanning is not cheap, so it runs only for enrolled addresses no known pod holds and
//! that were not searched for before (a host-network workload would otherwise cause a
//! scan on every state change).

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where named network namespaces live.
const NAMED_NETNS_DIR: &str = "/var/run/netns";

/// A network namespace and the addresses configured in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FoundNetns {
    /// A path that opens it (a named namespace when one exists).
    pub(super) path: PathBuf,
    /// Its global unicast addresses (loopback and link-local left out).
    pub(super) ips: Vec<IpAddr>,
}

/// The network namespaces holding any of `wanted`, each with all of its addresses.
/// Namespaces that vanish or cannot be entered while scanning are passed over.
pub(super) fn namespaces_holding(wanted: &HashSet<IpAddr>) -> Vec<FoundNetns> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let host = namespace_id(Path::new("/proc/self/ns/net"));
    let mut seen = HashSet::new();
    seen.extend(host);
    let mut found = Vec::new();
    for path in candidates() {
        let Some(id) = namespace_id(&path) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let Ok(ips) = weft_netns::run_in_netns(&path, interface_addresses) else {
            continue;
        };
        if ips.iter().any(|ip| wanted.contains(ip)) {
            found.push(FoundNetns { path, ips });
        }
    }
    found
}

/// Named namespaces first (stable paths that outlive any one process), then processes'.
fn candidates() -> impl Iterator<Item = PathBuf> {
    let named = sorted_entries(Path::new(NAMED_NETNS_DIR));
    let processes = sorted_entries(Path::new("/proc"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|p| p.join("ns/net"));
    named.into_iter().chain(processes)
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Device and inode of the namespace a path opens.
fn namespace_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The addresses of the current thread's network namespace.
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .filter(|ip| is_pod_address(*ip))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn is_pod_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    }
}

/// Remembers which enrolled addresses were searched for, so each is searched once while
/// it stays enrolled and unclaimed.
#[derive(Debug, Default)]
pub(super) struct Searched {
    ips: HashSet<IpAddr>,
}

impl Searched {
    /// Of `unclaimed` (enrolled addresses no known pod holds), those not searched for
    /// yet; forgets addresses no longer unclaimed, so they are searched again if they
    /// come back.
    pub(super) fn next(&mut self, unclaimed: &HashSet<IpAddr>) -> HashSet<IpAddr> {
        self.ips.retain(|ip| unclaimed.contains(ip));
        let fresh: HashSet<IpAddr> = unclaimed.difference(&self.ips).copied().collect();
        self.ips.extend(fresh.iter().copied());
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unclaimed_address_is_searched_once_until_it_leaves() {
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let mut searched = Searched::default();
        let first: HashSet<IpAddr> = [ip(1), ip(2)].into();
        assert_eq!(searched.next(&first), first);
        assert!(searched.next(&first).is_empty());
        // 2 was claimed (or left), 3 is new
        let second: HashSet<IpAddr> = [ip(1), ip(3)].into();
        assert_eq!(searched.next(&second), [ip(3)].into());
        // 2 comes back: searched again
        let third: HashSet<IpAddr> = [ip(1), ip(2), ip(3)].into();
        assert_eq!(searched.next(&third), [ip(2)].into());
    }

    #[test]
    fn only_global_addresses_identify_a_pod() {
        assert!(is_pod_address("10.1.2.3".parse().unwrap()));
        assert!(is_pod_address("fd00::5".parse().unwrap()));
        for other in ["127.0.0.1", "169.254.1.1", "::1", "fe80::1", "0.0.0.0"] {
            assert!(!is_pod_address(other.parse().unwrap()), "{other}");
        }
    }
}
