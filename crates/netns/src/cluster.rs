//! [`LocalCluster`]: nodes and pods as network namespaces on one machine.
//!
//! Topology (every name starts with the caller's prefix `P`, which has no `-`):
//!
//! ```text
//!  P-underlay: bridge br0 (underlay .1) ─┬─ n0 ══ eth0  P-n-NODE1 (underlay .2, forwards)
//!                                        └─ n1 ══ eth0  P-n-NODE2 (underlay .3)
//!  P-n-NODE1: vp0 (gateway .1/32) ══ eth0  P-p-POD  (pod IP/32, default via gateway)
//! ```
//!
//! - The underlay namespace holds the bridge joining the nodes, with its own address (a
//!   place for processes every node must reach, such as the control plane) and routes to
//!   every pod CIDR.
//! - Each node routes the other nodes' pod CIDRs via their underlay addresses, and
//!   everything else (e.g. an "external" service run in the underlay namespace) to the
//!   underlay address.
//! - Each pod has a /32 address and reaches everything through its node, whose veth end
//!   carries the pod CIDR's first address as the gateway.
//! - Links are created directly inside the namespaces, so interface names only need to be
//!   unique per namespace, and nothing is configured in the root namespace unless a pod is
//!   exposed to it ([`LocalCluster::expose_to_host`], see [`crate::host`]: one veth pair to
//!   the underlay and a /32 route per exposed pod).
//!
//! The state file `<state_dir>/<prefix>.json` records the cluster; [`teardown`] (and the
//! drop guard) delete every namespace recorded there or named `P-*`, which removes their
//! links, addresses, routes and nftables rules, after stopping their processes.

use crate::error::{Error, Result};
use crate::netns::{NetNs, list_netns, validate_name};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Name of the bridge in the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "br0";
/// Name of a pod's (and a node's underlay) interface inside its own namespace.
pub const POD_INTERFACE: &str = "eth0";

/// What to build: nodes (with pod CIDRs) and pods on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Unique prefix for every namespace name: `[a-z0-9]{1,16}`.
    pub prefix: String,
    /// Addresses of the underlay (bridge gets the first, nodes the next ones).
    pub underlay_cidr: Ipv4Net,
    /// The nodes, in order.
    pub nodes: Vec<NodeSpec>,
    /// The pods, in order.
    pub pods: Vec<PodSpec>,
}

/// One node of a [`ClusterSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node name (`[A-Za-z0-9._-]`, up to 100 characters).
    pub name: String,
    /// The node's pod addresses; the first host address is the pods' gateway.
    pub pod_cidr: Ipv4Net,
}

/// One pod of a [`ClusterSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Pod name, unique in the cluster (`[A-Za-z0-9._-]`, up to 100 characters).
    pub name: String,
    /// The node it runs on.
    pub node: String,
}

impl ClusterSpec {
    /// An empty cluster with underlay 172.30.0.0/24.
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            underlay_cidr: Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 24).unwrap_or_default(),
            nodes: Vec::new(),
            pods: Vec::new(),
        }
    }

    /// Adds a node whose pod CIDR is `10.244.<n>.0/24` (n = 1 for the first node, ...).
    #[must_use]
    pub fn node(self, name: &str) -> Self {
        let third = u8::try_from(self.nodes.len() + 1).unwrap_or(u8::MAX);
        let cidr = Ipv4Net::new(Ipv4Addr::new(10, 244, third, 0), 24).unwrap_or_default();
        self.node_with_cidr(name, cidr)
    }

    /// Adds a node with an explicit pod CIDR.
    #[must_use]
    pub fn node_with_cidr(mut self, name: &str, pod_cidr: Ipv4Net) -> Self {
        self.nodes.push(NodeSpec {
            name: name.to_owned(),
            pod_cidr,
        });
        self
    }

    /// Adds a pod on `node`.
    #[must_use]
    pub fn pod(mut self, name: &str, node: &str) -> Self {
        self.pods.push(PodSpec {
            name: name.to_owned(),
            node: node.to_owned(),
        });
        self
    }
}

/// The underlay ("switch") namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Underlay {
    /// Its namespace.
    pub netns: NetNs,
    /// The bridge's address (reachable from every node and pod).
    pub ip: Ipv4Addr,
    /// The underlay network.
    pub cidr: Ipv4Net,
}

/// A node of a running cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Its namespace.
    pub netns: NetNs,
    /// Its address on the underlay (its `eth0`).
    pub underlay_ip: Ipv4Addr,
    /// Its pod addresses.
    pub pod_cidr: Ipv4Net,
    /// Gateway address its pods use (on each pod link of the node).
    pub gateway: Ipv4Addr,
}

/// A pod of a running cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// The node it is attached to.
    pub node: String,
    /// Its namespace (its interface is `eth0`).
    pub netns: NetNs,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The node-side end of its veth pair (in the node namespace).
    pub node_link: String,
}

/// Everything a cluster consists of; also the state file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The name prefix.
    pub prefix: String,
    /// The underlay.
    pub underlay: Underlay,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The pods.
    pub pods: Vec<Pod>,
    /// Counter naming the next node-side pod link (`vp<n>`).
    pub next_link: u32,
    /// The link to the root namespace, once a pod was exposed to it.
    #[serde(default)]
    pub host: Option<crate::host::HostLink>,
}

/// A running local cluster. Dropping it tears it down unless [`LocalCluster::disarm`] was
/// called (then use [`teardown`] with the same state dir and prefix later).
#[derive(Debug)]
pub struct LocalCluster {
    state: ClusterState,
    state_file: PathBuf,
    armed: bool,
}

impl LocalCluster {
    /// Builds the cluster described by `spec`, recording it in `state_dir/<prefix>.json`.
    /// On failure everything already made is removed again.
    ///
    /// # Errors
    /// Invalid names or addresses, a namespace with this prefix already exists, or a
    /// command fails.
    pub fn create(spec: &ClusterSpec, state_dir: &Path) -> Result<Self> {
        let state = plan(spec)?;
        if let Some(clash) = list_netns()?
            .into_iter()
            .find(|ns| owned_by(ns, &spec.prefix))
        {
            return Err(Error::Topology(format!(
                "namespace {} already exists: prefix {:?} is in use (`teardown` it first)",
                clash.name(),
                spec.prefix
            )));
        }
        std::fs::create_dir_all(state_dir).map_err(|source| Error::File {
            op: "create",
            path: state_dir.to_owned(),
            source,
        })?;
        let mut cluster = Self {
            state_file: state_file(state_dir, &spec.prefix),
            state: ClusterState {
                pods: Vec::new(),
                ..state
            },
            armed: true,
        };
        cluster.save()?;
        cluster.build_underlay_and_nodes()?;
        for pod in &spec.pods {
            cluster.add_pod(&pod.name, &pod.node)?;
        }
        Ok(cluster)
    }

    fn build_underlay_and_nodes(&self) -> Result<()> {
        let underlay = &self.state.underlay;
        let ul = NetNs::create(underlay.netns.name())?;
        ul.ip(&["link", "add", UNDERLAY_BRIDGE, "type", "bridge"])?;
        ul.ip(&[
            "addr",
            "add",
            &cidr_of(underlay.ip, underlay.cidr),
            "dev",
            UNDERLAY_BRIDGE,
        ])?;
        ul.ip(&["link", "set", UNDERLAY_BRIDGE, "up"])?;
        for (index, node) in self.state.nodes.iter().enumerate() {
            let port = format!("n{index}");
            let ns = NetNs::create(node.netns.name())?;
            ul.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                POD_INTERFACE,
                "netns",
                ns.name(),
            ])?;
            ul.ip(&["link", "set", &port, "master", UNDERLAY_BRIDGE, "up"])?;
            ns.ip(&[
                "addr",
                "add",
                &cidr_of(node.underlay_ip, underlay.cidr),
                "dev",
                POD_INTERFACE,
            ])?;
            ns.ip(&["link", "set", POD_INTERFACE, "up"])?;
            ns.ip(&["route", "add", "default", "via", &underlay.ip.to_string()])?;
            ns.set_sysctl("net.ipv4.ip_forward", "1")?;
            ul.ip(&[
                "route",
                "add",
                &node.pod_cidr.to_string(),
                "via",
                &node.underlay_ip.to_string(),
            ])?;
        }
        for node in &self.state.nodes {
            for other in self.state.nodes.iter().filter(|o| o.name != node.name) {
                let via = other.underlay_ip.to_string();
                node.netns
                    .ip(&["route", "add", &other.pod_cidr.to_string(), "via", &via])?;
            }
        }
        Ok(())
    }

    /// Creates pod `name` on `node` (also at runtime) and returns it.
    ///
    /// # Errors
    /// Unknown node, duplicate or invalid name, pod CIDR full, or a command fails.
    pub fn add_pod(&mut self, name: &str, node: &str) -> Result<Pod> {
        self.add_pod_with_ip(name, node, None)
    }

    /// Like [`LocalCluster::add_pod`], with the pod's address chosen by the caller (e.g. the
    /// one the control plane also computed); `None` picks the first free host address.
    ///
    /// # Errors
    /// As [`LocalCluster::add_pod`]; also when `ip` is outside the node's pod CIDR, is its
    /// gateway, or is taken by another pod.
    pub fn add_pod_with_ip(&mut self, name: &str, node: &str, ip: Option<Ipv4Addr>) -> Result<Pod> {
        validate_name("pod name", name, 100)?;
        if self.pod(name).is_some() {
            return Err(Error::Topology(format!("pod {name:?} already exists")));
        }
        let node = self
            .node(node)
            .ok_or_else(|| Error::Topology(format!("pod {name:?}: unknown node {node:?}")))?
            .clone();
        let pod = Pod {
            name: name.to_owned(),
            node: node.name.clone(),
            netns: NetNs::named(&format!("{}-p-{name}", self.state.prefix))?,
            ip: match ip {
                Some(ip) => self.check_pod_ip(&node, ip)?,
                None => self.free_pod_ip(&node)?,
            },
            node_link: format!("vp{}", self.state.next_link),
        };
        self.state.next_link += 1;
        // Record first: a failure halfway still leaves the namespace in the state file.
        self.state.pods.push(pod.clone());
        self.save()?;
        attach_pod(&pod, &node)?;
        Ok(pod)
    }

    /// Stops pod `name`'s processes and removes its namespace and links.
    ///
    /// # Errors
    /// Unknown pod, or a command fails.
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let index = self
            .state
            .pods
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::Topology(format!("unknown pod {name:?}")))?;
        self.state.pods[index].netns.destroy()?;
        self.state.pods.remove(index);
        self.save()
    }

    fn check_pod_ip(&self, node: &Node, ip: Ipv4Addr) -> Result<Ipv4Addr> {
        let usable = node.pod_cidr.contains(&ip)
            && ip != node.gateway
            && ip != node.pod_cidr.network()
            && ip != node.pod_cidr.broadcast();
        if !usable {
            return Err(Error::Topology(format!(
                "address {ip} is not a pod address of node {} (pod CIDR {}, gateway {})",
                node.name, node.pod_cidr, node.gateway
            )));
        }
        if let Some(owner) = self.state.pods.iter().find(|p| p.ip == ip) {
            return Err(Error::Topology(format!(
                "address {ip} is already used by pod {:?}",
                owner.name
            )));
        }
        Ok(ip)
    }

    fn free_pod_ip(&self, node: &Node) -> Result<Ipv4Addr> {
        node.pod_cidr
            .hosts()
            .filter(|ip| *ip != node.gateway)
            .find(|ip| !self.state.pods.iter().any(|p| p.ip == *ip))
            .ok_or_else(|| {
                Error::Topology(format!(
                    "pod CIDR {} of node {} is full",
                    node.pod_cidr, node.name
                ))
            })
    }

    /// The whole cluster description.
    #[must_use]
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The underlay.
    #[must_use]
    pub fn underlay(&self) -> &Underlay {
        &self.state.underlay
    }

    /// The node named `name`.
    #[must_use]
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.state.nodes.iter().find(|n| n.name == name)
    }

    /// The pod named `name`.
    #[must_use]
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.state.pods.iter().find(|p| p.name == name)
    }

    /// The state file path.
    #[must_use]
    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    /// Keeps the cluster alive after this value is dropped (e.g. before handing it to
    /// processes that outlive this one); [`teardown`] removes it later.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Removes the whole cluster now (the drop guard does the same).
    ///
    /// # Errors
    /// Some namespace could not be removed; the others were still tried.
    pub fn teardown(mut self) -> Result<()> {
        self.armed = false;
        let dir = self.state_file.parent().unwrap_or(Path::new("."));
        teardown(dir, &self.state.prefix)
    }

    /// Records the host link (see [`crate::host`]).
    pub(crate) fn update_host_link_to(
        &mut self,
        link: Option<crate::host::HostLink>,
    ) -> Result<()> {
        self.state.host = link;
        self.save()
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.state).map_err(|source| Error::State {
            path: self.state_file.clone(),
            source,
        })?;
        let tmp = self.state_file.with_extension("json.tmp");
        let io_err = |op, path: &Path| {
            let path = path.to_owned();
            move |source| Error::File { op, path, source }
        };
        std::fs::write(&tmp, text).map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &self.state_file).map_err(io_err("rename", &tmp))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.armed {
            let dir = self.state_file.parent().unwrap_or(Path::new("."));
            if let Err(e) = teardown(dir, &self.state.prefix) {
                tracing::warn!(prefix = %self.state.prefix, error = %e, "local cluster teardown failed");
            }
        }
    }
}

/// Connects a pod namespace to its node with a veth pair and addresses it.
fn attach_pod(pod: &Pod, node: &Node) -> Result<()> {
    let ns = NetNs::create(pod.netns.name())?;
    let (gateway, ip) = (node.gateway.to_string(), pod.ip.to_string());
    let link = pod.node_link.as_str();
    node.netns.ip(&[
        "link",
        "add",
        link,
        "type",
        "veth",
        "peer",
        "name",
        POD_INTERFACE,
        "netns",
        ns.name(),
    ])?;
    node.netns
        .ip(&["addr", "add", &format!("{gateway}/32"), "dev", link])?;
    node.netns.ip(&["link", "set", link, "up"])?;
    node.netns.ip(&[
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        link,
        "src",
        &gateway,
    ])?;
    ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", POD_INTERFACE])?;
    ns.ip(&["link", "set", POD_INTERFACE, "up"])?;
    ns.ip(&[
        "route",
        "add",
        &gateway,
        "dev",
        POD_INTERFACE,
        "scope",
        "link",
    ])?;
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        &gateway,
        "dev",
        POD_INTERFACE,
        "src",
        &ip,
    ])?;
    Ok(())
}

fn cidr_of(ip: Ipv4Addr, net: Ipv4Net) -> String {
    format!("{ip}/{}", net.prefix_len())
}

fn state_file(state_dir: &Path, prefix: &str) -> PathBuf {
    state_dir.join(format!("{prefix}.json"))
}

/// Whether `ns` belongs to the cluster with `prefix` (prefixes contain no `-`).
fn owned_by(ns: &NetNs, prefix: &str) -> bool {
    ns.name()
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// Checks the spec and assigns addresses and names (nothing is created).
fn plan(spec: &ClusterSpec) -> Result<ClusterState> {
    validate_prefix(&spec.prefix)?;
    let prefix = &spec.prefix;
    let mut underlay_hosts = spec.underlay_cidr.hosts();
    let mut next_underlay = |what: &str| {
        underlay_hosts.next().ok_or_else(|| {
            Error::Topology(format!(
                "underlay {} has no address left for {what}",
                spec.underlay_cidr
            ))
        })
    };
    let underlay = Underlay {
        netns: NetNs::named(&format!("{prefix}-underlay"))?,
        ip: next_underlay("the bridge")?,
        cidr: spec.underlay_cidr,
    };
    let mut nodes: Vec<Node> = Vec::new();
    for node in &spec.nodes {
        validate_name("node name", &node.name, 100)?;
        if nodes
            .iter()
            .any(|n| n.name == node.name || n.pod_cidr.contains(&node.pod_cidr.network()))
        {
            return Err(Error::Topology(format!(
                "node {:?}: duplicate name or overlapping pod CIDR",
                node.name
            )));
        }
        let gateway = node.pod_cidr.hosts().next().ok_or_else(|| {
            Error::Topology(format!(
                "pod CIDR {} of node {} is too small",
                node.pod_cidr, node.name
            ))
        })?;
        nodes.push(Node {
            name: node.name.clone(),
            netns: NetNs::named(&format!("{prefix}-n-{}", node.name))?,
            underlay_ip: next_underlay(&node.name)?,
            pod_cidr: node.pod_cidr.trunc(),
            gateway,
        });
    }
    Ok(ClusterState {
        prefix: prefix.clone(),
        underlay,
        nodes,
        pods: Vec::new(),
        next_link: 0,
        host: None,
    })
}

fn validate_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "cluster prefix",
            name: prefix.to_owned(),
            reason: "must be 1-16 characters of [a-z0-9]",
        })
    }
}

/// Removes every namespace of the cluster `prefix` (those in `state_dir/<prefix>.json` and
/// any other named `<prefix>-*`), stopping their processes first, then the state file.
/// Safe to call when nothing is left.
///
/// # Errors
/// The prefix is invalid, the state file cannot be read (a corrupt one is ignored), or a
/// namespace could not be removed (the others are still tried; the first error is returned).
pub fn teardown(state_dir: &Path, prefix: &str) -> Result<()> {
    validate_prefix(prefix)?;
    let file = state_file(state_dir, prefix);
    let mut doomed: Vec<NetNs> = match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice::<ClusterState>(&bytes) {
            Ok(state) => {
                if let Some(link) = &state.host
                    && let Err(e) = crate::host::remove_host_link(link)
                {
                    tracing::warn!(link = %link.name, error = %e, "could not remove the host link");
                }
                // Pods first, then nodes, then the underlay: each step leaves a working rest.
                let pods = state.pods.into_iter().map(|p| p.netns);
                let nodes = state.nodes.into_iter().map(|n| n.netns);
                pods.chain(nodes).chain([state.underlay.netns]).collect()
            }
            Err(source) => {
                // Still remove what the prefix names; the unreadable file goes too.
                let e = Error::State {
                    path: file.clone(),
                    source,
                };
                tracing::warn!(error = %e, "ignoring the state file, removing by prefix");
                Vec::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Error::File {
                op: "read",
                path: file,
                source,
            });
        }
    };
    for ns in list_netns()? {
        if owned_by(&ns, prefix) && !doomed.contains(&ns) {
            doomed.push(ns);
        }
    }
    let mut first_error = None;
    for ns in &doomed {
        if let Err(e) = ns.destroy() {
            tracing::warn!(netns = ns.name(), error = %e, "could not remove namespace");
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::File {
            op: "remove",
            path: file,
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_assigns_underlay_addresses_gateways_and_names() {
        let spec = ClusterSpec::new("demo").node("a").node("b");
        let state = plan(&spec).expect("valid spec");
        assert_eq!(state.underlay.netns.name(), "demo-underlay");
        assert_eq!(state.underlay.ip, Ipv4Addr::new(172, 30, 0, 1));
        let b = &state.nodes[1];
        assert_eq!(
            (b.netns.name(), b.underlay_ip),
            ("demo-n-b", Ipv4Addr::new(172, 30, 0, 3))
        );
        assert_eq!(b.pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(b.gateway, Ipv4Addr::new(10, 244, 2, 1));
    }

    #[test]
    fn plan_rejects_bad_prefixes_names_and_overlaps() {
        for prefix in ["", "has-dash", "UPPER", "waytoolongprefix0"] {
            assert!(
                matches!(
                    plan(&ClusterSpec::new(prefix)),
                    Err(Error::InvalidName { .. })
                ),
                "{prefix}"
            );
        }
        assert!(plan(&ClusterSpec::new("p").node("a b")).is_err());
        let cidr = "10.1.0.0/16".parse().unwrap();
        let overlap = ClusterSpec::new("p")
            .node_with_cidr("a", cidr)
            .node_with_cidr("b", "10.1.2.0/24".parse().unwrap());
        assert!(matches!(plan(&overlap), Err(Error::Topology(_))));
    }

    #[test]
    fn ownership_needs_the_exact_prefix() {
        let ns = |n: &str| NetNs::named(n).unwrap();
        assert!(owned_by(&ns("t1-p-web"), "t1"));
        assert!(!owned_by(&ns("t12-p-web"), "t1"));
        assert!(!owned_by(&ns("t1"), "t1"));
    }
}
