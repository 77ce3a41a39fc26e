//! `weft up` without root: explicit mode on loopback addresses.
//!
//! Without network namespaces nothing can be captured, so the mesh runs on a leased loopback
//! network `127.N.0.0/16`: `weft control` on `127.N.0.1`, node `i` (in name order) on
//! `127.N.0.(2+i)`, its pods on `127.N.(1+i).x`, Service ClusterIPs in `127.N.240.0/20`.
//! Pods are plain processes; each container gets `ALL_PROXY`/`HTTP_PROXY`/`HTTPS_PROXY`
//! pointing at its node proxy's explicit port and `LOCALDOMAIN` (its DNS search path), so a
//! client that honours them reaches the mesh through SOCKS5 / HTTP CONNECT and is known to
//! the node proxy by its source address (`POD_IP`).
//!
//! The control plane must see the same addresses, so [`LoopbackConfig::plan`] writes an
//! *effective* config directory: the user's objects with every workload expanded to bare
//! Pods (`spec.nodeName`, `status.podIP` = the loopback address) and Services carrying their
//! loopback ClusterIP. `weft control` reads that directory; it is rewritten on every edit.
//! Addresses are kept across edits (a pod keeps its address while it stays on its node).

use crate::layout::Layout;
use crate::plan::{MeshPlan, PlanError, PodPlan};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use weft_api::{ConfigSnapshot, LoadedObject, Object, Source};
use weft_control::translate::TranslateOptions;

/// What explicit mode means, as `weft up` says at start.
const EXPLICIT_MODE: &str = "explicit mode on loopback (workloads reach the mesh through the \
     node proxy's SOCKS5/HTTP CONNECT port via ALL_PROXY/HTTP_PROXY; traffic is not captured \
     transparently)";

/// What `weft up` prints when it runs in explicit mode: because it is not root, or because
/// `--explicit` asked for it (`forced`).
#[must_use]
pub fn start_message(forced: bool) -> String {
    if forced {
        format!("--explicit: running in {EXPLICIT_MODE}")
    } else {
        format!("not running as root: falling back to {EXPLICIT_MODE}")
    }
}

/// Port of the socket whose bind leases `127.N.0.0/16` (the same convention as weft's test
/// kit, so test meshes and `weft up` never share a network).
const LEASE_PORT: u16 = 19_999;
/// Second octets tried (127.0 and 127.1 are left to fixed addresses such as 127.0.0.1).
const FIRST_OCTET: u8 = 2;
const LAST_OCTET: u8 = 254;
/// Third octet of the first node's pods; node `i` uses `POD_OCTET_BASE + i`.
const POD_OCTET_BASE: u8 = 1;
/// Third octets of Service ClusterIPs (`127.N.240.1` .. `127.N.255.253`).
const VIP_OCTETS: std::ops::RangeInclusive<u8> = 240..=255;
/// File of the effective config directory.
const EFFECTIVE_FILE: &str = "mesh.yaml";

/// Why explicit mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    /// Every `127.N.0.0/16` is leased by another run.
    #[error("no free loopback network: 127.{FIRST_OCTET}-{LAST_OCTET}.0.0/16 are all in use")]
    NoFreeNetwork,
    /// More nodes than loopback pod networks.
    #[error("{nodes} nodes: explicit mode on loopback runs at most {max}")]
    TooManyNodes {
        /// Nodes in the config.
        nodes: usize,
        /// The limit.
        max: usize,
    },
    /// The effective config could not be rendered.
    #[error("cannot render the effective config: {0}")]
    Render(#[from] weft_api::yaml::WriteError),
    /// The effective config could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The effective config cannot run.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The addresses of a leased loopback network `127.N.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackNet {
    octet: u8,
}

impl LoopbackNet {
    /// The network `127.octet.0.0/16` (not leased: see [`Lease`]).
    #[must_use]
    pub fn new(octet: u8) -> Self {
        Self { octet }
    }

    /// `N` of `127.N.0.0/16`.
    #[must_use]
    pub fn octet(self) -> u8 {
        self.octet
    }

    /// Where `weft control` listens.
    #[must_use]
    pub fn control_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 0, 1)
    }

    /// Where the node proxy of the `index`th node (name order) listens.
    #[must_use]
    pub fn node_ip(self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 0, 2 + u8::try_from(index).unwrap_or(0))
    }

    fn max_nodes() -> usize {
        usize::from(VIP_OCTETS.start() - POD_OCTET_BASE)
    }

    fn pod_ip(self, node_index: usize, host: u8) -> Ipv4Addr {
        let third = POD_OCTET_BASE + u8::try_from(node_index).unwrap_or(0);
        Ipv4Addr::new(127, self.octet, third, host)
    }
}

/// A held `127.N.0.0/16`: no other `weft up` (or weft test) picks `N` while it lives.
#[derive(Debug)]
pub struct Lease {
    net: LoopbackNet,
    _sentinel: TcpListener,
}

impl Lease {
    /// Leases a free network, starting at a random one.
    ///
    /// # Errors
    /// Every network is leased.
    pub fn acquire() -> Result<Self, LoopbackError> {
        let span = u16::from(LAST_OCTET - FIRST_OCTET) + 1;
        let start = rand::random_range(0..span);
        for step in 0..span {
            let octet = FIRST_OCTET + u8::try_from((start + step) % span).unwrap_or(0);
            let sentinel = Ipv4Addr::new(127, octet, 255, 254);
            if let Ok(listener) = TcpListener::bind((sentinel, LEASE_PORT)) {
                return Ok(Self {
                    net: LoopbackNet::new(octet),
                    _sentinel: listener,
                });
            }
        }
        Err(LoopbackError::NoFreeNetwork)
    }

    /// The leased network.
    #[must_use]
    pub fn net(&self) -> LoopbackNet {
        self.net
    }
}

/// Loopback addresses of pods and Services, kept across edits, and the effective config.
#[derive(Debug)]
pub struct LoopbackConfig {
    lease: Lease,
    effective_dir: PathBuf,
    /// Node names by index: name order at start, nodes added later at the end (so a new
    /// node never moves the pod networks of running ones).
    node_order: Vec<String>,
    /// `namespace/name` -> (node index, address).
    pods: BTreeMap<String, (usize, Ipv4Addr)>,
    /// `namespace/name` -> ClusterIP.
    vips: BTreeMap<String, Ipv4Addr>,
}

impl LoopbackConfig {
    /// Leases a network; the effective config goes to `layout`'s effective directory.
    ///
    /// # Errors
    /// No network is free.
    pub fn new(layout: &Layout) -> Result<Self, LoopbackError> {
        Ok(Self {
            lease: Lease::acquire()?,
            effective_dir: layout.effective_config_dir(),
            node_order: Vec::new(),
            pods: BTreeMap::new(),
            vips: BTreeMap::new(),
        })
    }

    /// The leased network.
    #[must_use]
    pub fn net(&self) -> LoopbackNet {
        self.lease.net()
    }

    /// The directory `weft control` reads.
    #[must_use]
    pub fn effective_dir(&self) -> &Path {
        &self.effective_dir
    }

    /// Plans `snapshot` on loopback addresses and writes the effective config `weft control`
    /// reads; the plan is built from that same config, so both see the same addresses.
    ///
    /// # Errors
    /// Too many nodes, the config cannot be planned, or the file cannot be written.
    pub fn plan(
        &mut self,
        snapshot: &ConfigSnapshot,
        options: &TranslateOptions,
    ) -> Result<MeshPlan, LoopbackError> {
        let objects = self.effective_objects(snapshot)?;
        write_effective(&self.effective_dir, &objects)?;
        let source = Source {
            file: self.effective_dir.join(EFFECTIVE_FILE),
            line: 0,
        };
        let loaded = objects
            .into_iter()
            .map(|object| LoadedObject {
                object,
                source: source.clone(),
                layout: None,
            })
            .collect();
        Ok(MeshPlan::build(&ConfigSnapshot::new(loaded), options)?)
    }

    /// The user's objects with workloads as bare Pods on loopback addresses and Services on
    /// loopback ClusterIPs.
    fn effective_objects(
        &mut self,
        snapshot: &ConfigSnapshot,
    ) -> Result<Vec<Object>, LoopbackError> {
        let mut nodes: Vec<String> = snapshot
            .nodes()
            .map(|(n, _)| n.metadata.name.clone().unwrap_or_default())
            .collect();
        nodes.sort();
        for node in nodes {
            if !self.node_order.contains(&node) {
                self.node_order.push(node);
            }
        }
        let nodes = self.node_order.clone();
        if nodes.len() > LoopbackNet::max_nodes() {
            return Err(LoopbackError::TooManyNodes {
                nodes: nodes.len(),
                max: LoopbackNet::max_nodes(),
            });
        }
        let mut objects: Vec<Object> = snapshot
            .objects()
            .iter()
            .map(|loaded| loaded.object.clone())
            .filter(|object| !runs_pods(object))
            .collect();
        self.assign_vips(&mut objects);
        let mut pods = weft_api::expand_pods(snapshot);
        let wanted: Vec<(String, Option<usize>, Option<IpAddr>)> = pods
            .iter()
            .map(|p| {
                let node = p
                    .node_name()
                    .and_then(|n| nodes.iter().position(|known| known == n));
                (format!("{}/{}", p.namespace(), p.name()), node, p.ip())
            })
            .collect();
        let addresses = self.assign_pod_ips(&wanted);
        for pod in &mut pods {
            let key = format!("{}/{}", pod.namespace(), pod.name());
            let status = pod.pod.status.get_or_insert_with(Default::default);
            status.pod_ip = addresses.get(&key).map(ToString::to_string);
            status.pod_ips = None;
        }
        objects.extend(pods.into_iter().map(|p| Object::Pod(p.pod)));
        Ok(objects)
    }

    /// Gives every Service that has a ClusterIP a loopback one (kept while it exists).
    fn assign_vips(&mut self, objects: &mut [Object]) {
        let net = self.net();
        let mut kept = BTreeMap::new();
        let mut pending = Vec::new();
        for (position, object) in objects.iter().enumerate() {
            let Object::Service(service) = object else {
                continue;
            };
            let written = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
            if written.is_none_or(|ip| ip.parse::<IpAddr>().is_err()) {
                continue;
            }
            let key = object_key(object);
            match self.vips.get(&key) {
                Some(vip) => {
                    kept.insert(key, *vip);
                }
                None => pending.push((key, position)),
            }
        }
        let used: BTreeSet<Ipv4Addr> = kept.values().copied().collect();
        let mut free = VIP_OCTETS
            .flat_map(|third| (1..=254).map(move |host| Ipv4Addr::new(127, net.octet, third, host)))
            .filter(|ip| !used.contains(ip) && *ip != sentinel(net));
        for (key, _) in &pending {
            if let Some(vip) = free.next() {
                kept.insert(key.clone(), vip);
            }
        }
        for object in objects.iter_mut() {
            let key = object_key(object);
            if let Object::Service(service) = object
                && let (Some(spec), Some(vip)) = (service.spec.as_mut(), kept.get(&key))
            {
                spec.cluster_ip = Some(vip.to_string());
                spec.cluster_ips = Some(vec![vip.to_string()]);
            }
        }
        self.vips = kept;
    }

    /// Loopback addresses for `(key, node index, planned address)`: kept when the pod stays
    /// on its node, else the planned address' last octet on the node's loopback network when
    /// free, else the first free one.
    fn assign_pod_ips(
        &mut self,
        wanted: &[(String, Option<usize>, Option<IpAddr>)],
    ) -> BTreeMap<String, Ipv4Addr> {
        let net = self.net();
        let mut kept: BTreeMap<String, (usize, Ipv4Addr)> = BTreeMap::new();
        for (key, node, _) in wanted {
            if let (Some(node), Some((old_node, ip))) = (node, self.pods.get(key))
                && node == old_node
            {
                kept.insert(key.clone(), (*node, *ip));
            }
        }
        for (key, node, planned) in wanted {
            let Some(node) = *node else { continue };
            if kept.contains_key(key) {
                continue;
            }
            let used: BTreeSet<Ipv4Addr> = kept.values().map(|(_, ip)| *ip).collect();
            let preferred = match planned {
                Some(IpAddr::V4(ip)) => Some(ip.octets()[3]).filter(|h| (2..=254).contains(h)),
                _ => None,
            };
            let candidates = preferred.into_iter().chain(2..=254);
            if let Some(ip) = candidates
                .map(|host| net.pod_ip(node, host))
                .find(|ip| !used.contains(ip))
            {
                kept.insert(key.clone(), (node, ip));
            }
        }
        self.pods = kept;
        self.pods
            .iter()
            .map(|(k, (_, ip))| (k.clone(), *ip))
            .collect()
    }
}

fn sentinel(net: LoopbackNet) -> Ipv4Addr {
    Ipv4Addr::new(127, net.octet, 255, 254)
}

fn object_key(object: &Object) -> String {
    let meta = object.metadata();
    format!(
        "{}/{}",
        meta.namespace
            .as_deref()
            .unwrap_or(weft_api::object::DEFAULT_NAMESPACE),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Objects whose pods are written out expanded instead.
fn runs_pods(object: &Object) -> bool {
    matches!(
        object,
        Object::Pod(_) | Object::Deployment(_) | Object::StatefulSet(_) | Object::DaemonSet(_)
    )
}

/// Writes the objects as one multi-document YAML file, replaced atomically (the control
/// plane watching the directory never reads half a file).
fn write_effective(dir: &Path, objects: &[Object]) -> Result<(), LoopbackError> {
    let mut text = String::from(
        "# written by `weft up` in explicit mode: the config it was started with, workloads\n\
         # expanded to pods on loopback addresses. Edit the original directory, not this one.\n",
    );
    for object in objects {
        text.push_str("---\n");
        text.push_str(&weft_api::yaml::to_string(object)?);
    }
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| LoopbackError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    let partial = dir.join(format!(".{EFFECTIVE_FILE}.partial"));
    let file = dir.join(EFFECTIVE_FILE);
    std::fs::write(&partial, text).map_err(fail(&partial))?;
    std::fs::rename(&partial, &file).map_err(fail(&file))
}

/// The environment explicit mode adds to each container of `pod` (whose node proxy listens
/// on `node_ip`): the proxy variables and the DNS search path.
#[must_use]
pub fn proxy_env(pod: &PodPlan, node_ip: Ipv4Addr, domain_suffix: &str) -> Vec<(String, String)> {
    let port = crate::components::NODE_EXPLICIT_PORT;
    // socks5h: the node proxy resolves mesh service hostnames itself.
    let socks = format!("socks5h://{node_ip}:{port}");
    let http = format!("http://{node_ip}:{port}");
    let search = crate::mesh::dns_search(&pod.namespace, domain_suffix).join(" ");
    vec![
        ("ALL_PROXY".into(), socks),
        ("HTTP_PROXY".into(), http.clone()),
        ("HTTPS_PROXY".into(), http),
        ("LOCALDOMAIN".into(), search),
    ]
}

/// The identity variables every container of `pod` gets (as in [`crate::plan`]).
#[must_use]
pub fn pod_env(pod: &PodPlan) -> Vec<(String, String)> {
    vec![
        ("POD_NAME".into(), pod.name.clone()),
        ("POD_NAMESPACE".into(), pod.namespace.clone()),
        ("POD_IP".into(), pod.ip.to_string()),
        ("HOSTNAME".into(), pod.name.clone()),
    ]
}

/// The built-in echo workload binds only its pod's address (pods share the host's ports).
#[must_use]
pub fn bind_echo(mut argv: Vec<String>, ip: Ipv4Addr) -> Vec<String> {
    let is_echo = argv.get(1).map(String::as_str) == Some("x")
        && argv.get(2).map(String::as_str) == Some("echo");
    if is_echo
        && !argv
            .iter()
            .any(|a| a == "--bind" || a.starts_with("--bind="))
    {
        argv.extend(["--bind".to_owned(), ip.to_string()]);
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled_snapshot() -> ConfigSnapshot {
        let mut objects = Vec::new();
        for (name, text) in crate::bundled::FILES {
            objects.extend(weft_api::parse_manifests(text, Path::new(name)).objects);
        }
        ConfigSnapshot::new(objects)
    }

    fn config(dir: &Path) -> LoopbackConfig {
        LoopbackConfig::new(&Layout::new(dir, "t")).expect("a free loopback network")
    }

    #[test]
    fn pods_and_services_get_loopback_addresses_the_control_plane_sees_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        let net = config.net();
        let plan = config
            .plan(&bundled_snapshot(), &TranslateOptions::default())
            .unwrap();
        // 10 workload pods, the waypoint's and the shop gateway's
        assert_eq!(plan.pods.len(), 12, "{:?}", plan.skipped);
        for pod in plan.pods.values() {
            let index = plan.nodes.iter().position(|n| n.name == pod.node).unwrap();
            let [a, b, c, _] = pod.ip.octets();
            assert_eq!(
                (a, b, c),
                (127, net.octet(), 1 + u8::try_from(index).unwrap())
            );
            assert!(
                pod.containers[0]
                    .env
                    .contains(&("POD_IP".into(), pod.ip.to_string()))
            );
        }
        assert!(plan.pods["frontend/web-0"].enrolled);
        assert!(!plan.pods["legacy/legacy-client-0"].enrolled);
        for service in &plan.service_names {
            assert_eq!(service.vip.octets()[..2], [127, net.octet()], "{service:?}");
        }
        // The directory weft control reads parses back to the same plan.
        let reread = weft_api::load_paths(&[config.effective_dir().to_owned()]);
        let reread = MeshPlan::build(
            &ConfigSnapshot::new(reread.objects),
            &TranslateOptions::default(),
        )
        .unwrap();
        assert_eq!(reread, plan);
    }

    #[test]
    fn addresses_survive_edits_and_new_pods_take_free_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        let options = TranslateOptions::default();
        let before = config.plan(&bundled_snapshot(), &options).unwrap();
        let mut objects = bundled_snapshot().objects().to_vec();
        let extra = "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, namespace: legacy}\n\
                     spec: {nodeName: node-a, containers: [{name: c, image: x}]}\n";
        objects.extend(weft_api::parse_manifests(extra, Path::new("extra.yaml")).objects);
        let after = config
            .plan(&ConfigSnapshot::new(objects), &options)
            .unwrap();
        for (key, pod) in &before.pods {
            assert_eq!(after.pods[key].ip, pod.ip, "{key} moved");
        }
        let ips: BTreeSet<Ipv4Addr> = after.pods.values().map(|p| p.ip).collect();
        assert_eq!(ips.len(), after.pods.len(), "addresses are distinct");
        assert_eq!(before.service_names, after.service_names);
    }

    #[test]
    fn leases_are_exclusive_and_echo_binds_the_pod_address() {
        let a = Lease::acquire().unwrap();
        let b = Lease::acquire().unwrap();
        assert_ne!(a.net(), b.net());
        let ip = Ipv4Addr::new(127, 9, 1, 2);
        let argv = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            bind_echo(argv(&["weft", "x", "echo", "--port", "80"]), ip),
            argv(&["weft", "x", "echo", "--port", "80", "--bind", "127.9.1.2"])
        );
        assert_eq!(bind_echo(argv(&["sleep", "9"]), ip), argv(&["sleep", "9"]));
    }
}
