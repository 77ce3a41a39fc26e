//! A running local mesh: the namespaces (via [`LocalCluster`]) or, in explicit mode, a
//! loopback network ([`LoopbackNet`]), the pods' processes, the control plane and node
//! proxies, and applying a new [`MeshPlan`] to all of them.

use crate::UpError;
use crate::components::{self, NODE_READINESS_PORT, NodeFeatures};
use crate::exec::{self, ExecRecord};
use crate::layout::{Layout, SYSTEM_NAMESPACE};
use crate::loopback::{self, LoopbackNet};
use crate::node_link::{NodeLink, PodAnnouncement};
use crate::pid_records;
use crate::plan::{MeshPlan, PodPlan, WEFT_PROGRAM};
use crate::probe::{Probe, wait_all_ready};
use crate::process::{Process, ProcessSpec, stop_all};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use weft_netns::{ClusterSpec, LocalCluster, NETNS_ETC_DIR, NetNs};

mod gateways;
mod restart;
mod waypoints;

pub use restart::RestartTarget;

/// How long stopped processes get before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Search path of a pod in `namespace` (as kubelet writes it).
pub(crate) fn dns_search(namespace: &str, suffix: &str) -> Vec<String> {
    vec![
        format!("{namespace}.svc.{suffix}"),
        format!("svc.{suffix}"),
        suffix.to_owned(),
    ]
}

/// Settings a running mesh needs from the command line.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// The weft binary (runs `weft control`, `weft node`, and containers whose command is `weft`).
    pub weft: PathBuf,
    /// Instance files.
    pub layout: Layout,
    /// Directory `weft control` reads.
    pub config_dir: PathBuf,
    /// DNS suffix (`cluster.local`).
    pub domain_suffix: String,
    /// How long to wait for the control plane and node proxies.
    pub ready_timeout: Duration,
    /// Share of requests waypoints and gateways trace, keeping the last spans for the
    /// dashboard (`None`: their defaults, nothing kept).
    pub trace_sampling: Option<f64>,
}

/// Where the mesh runs.
#[derive(Debug)]
enum Network {
    /// Nodes and pods as network namespaces (needs root).
    Namespaces(Box<LocalCluster>),
    /// Explicit mode: plain processes on a loopback network.
    Loopback(LoopbackNet),
}

/// Where one of the mesh's own processes runs and listens.
#[derive(Debug, Clone)]
struct Site {
    ip: Ipv4Addr,
    netns: Option<NetNs>,
}

/// The running mesh.
#[derive(Debug)]
pub struct Mesh {
    settings: MeshSettings,
    network: Network,
    plan: MeshPlan,
    pods: BTreeMap<String, Vec<Process>>,
    control: Option<Process>,
    nodes: BTreeMap<String, Process>,
    links: BTreeMap<String, NodeLink>,
    features: NodeFeatures,
    /// `weft waypoint run --help`: which flags waypoint pods are given.
    waypoint_help: String,
    /// `weft gateway --help`: which flags gateway pods are given (empty: no such command).
    gateway_help: String,
    /// Waypoint and gateway pods (`namespace/name`) that reported ready since they started.
    ready_waypoints: BTreeSet<String>,
    /// Gateway pods whose address the machine's root namespace routes to this mesh.
    host_routed: BTreeSet<String>,
    /// Processes replaced by `weft restart`, draining: reaped when they exit, not reported.
    retiring: Vec<Process>,
}

impl Mesh {
    /// Creates the underlay and node namespaces of `plan` (no pods or processes yet).
    ///
    /// # Errors
    /// The namespaces cannot be created (what was made is removed again).
    pub fn create(settings: MeshSettings, plan: &MeshPlan) -> Result<Self, UpError> {
        let mut spec = ClusterSpec::new(settings.layout.prefix());
        for node in &plan.nodes {
            spec = spec.node_with_cidr(&node.name, node.pod_cidr);
        }
        let cluster = LocalCluster::create(&spec, settings.layout.root())?;
        let features = NodeFeatures::probe(&settings.weft);
        Ok(Self::new(
            settings,
            plan,
            Network::Namespaces(Box::new(cluster)),
            features,
        ))
    }

    /// Explicit mode: the mesh on the loopback network `net` (nothing is created yet).
    #[must_use]
    pub fn create_loopback(settings: MeshSettings, plan: &MeshPlan, net: LoopbackNet) -> Self {
        Self::new(
            settings,
            plan,
            Network::Loopback(net),
            NodeFeatures::default(),
        )
    }

    fn new(
        settings: MeshSettings,
        plan: &MeshPlan,
        network: Network,
        features: NodeFeatures,
    ) -> Self {
        Self {
            network,
            plan: MeshPlan {
                nodes: plan.nodes.clone(),
                ..MeshPlan::default()
            },
            pods: BTreeMap::new(),
            control: None,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            features,
            waypoint_help: components::waypoint_help(&settings.weft),
            gateway_help: components::gateway_help(&settings.weft),
            ready_waypoints: BTreeSet::new(),
            host_routed: BTreeSet::new(),
            retiring: Vec::new(),
            settings,
        }
    }

    /// The plan currently running.
    #[must_use]
    pub fn plan(&self) -> &MeshPlan {
        &self.plan
    }

    /// The cluster's namespaces (`None` in explicit mode).
    #[must_use]
    pub fn cluster(&self) -> Option<&LocalCluster> {
        match &self.network {
            Network::Namespaces(cluster) => Some(cluster),
            Network::Loopback(_) => None,
        }
    }

    /// Whether the mesh runs in explicit mode on loopback addresses.
    #[must_use]
    pub fn is_explicit(&self) -> bool {
        matches!(self.network, Network::Loopback(_))
    }

    /// Instance files.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.settings.layout
    }

    /// The weft binary.
    #[must_use]
    pub fn weft_binary(&self) -> &Path {
        &self.settings.weft
    }

    /// Whether the node proxies capture pods in-pod (they take a pod socket).
    #[must_use]
    pub fn captures_pods(&self) -> bool {
        self.features.pod_socket
    }

    /// A command running `program` as pod `key` (`namespace/name`) would: inside its
    /// namespace, or in explicit mode with its proxy variables; with the pod's identity
    /// variables (`POD_IP`...) and none of ours.
    #[must_use]
    pub fn pod_command(&self, key: &str, program: &Path) -> Option<std::process::Command> {
        let pod = self.plan.pods.get(key)?;
        Some(self.exec_record(pod)?.command(program))
    }

    /// How to run a command as `pod` (what `weft exec` reads): its namespace, or in
    /// explicit mode its proxy variables, and its identity variables. `None` when its
    /// namespace does not exist.
    fn exec_record(&self, pod: &PodPlan) -> Option<ExecRecord> {
        let mut env = loopback::pod_env(pod);
        let netns = match &self.network {
            Network::Namespaces(cluster) => {
                Some(cluster.pod(&pod.cluster_name())?.netns.name().to_owned())
            }
            Network::Loopback(_) => {
                env.extend(self.proxy_env(pod));
                None
            }
        };
        Some(ExecRecord { netns, env })
    }

    /// The control plane's address and namespace.
    /// The control plane's admin address, and the network namespace to reach it from
    /// (`None`: this process's own, in explicit mode).
    #[must_use]
    pub fn control_admin(&self) -> (SocketAddr, Option<PathBuf>) {
        let control = self.control_site();
        let addr = SocketAddr::new(IpAddr::V4(control.ip), components::CONTROL_ADMIN_PORT);
        (addr, control.netns.as_ref().map(NetNs::path))
    }

    fn control_site(&self) -> Site {
        match &self.network {
            Network::Namespaces(cluster) => Site {
                ip: cluster.underlay().ip,
                netns: Some(cluster.underlay().netns.clone()),
            },
            Network::Loopback(net) => Site {
                ip: net.control_ip(),
                netns: None,
            },
        }
    }

    /// Each node's name, proxy address and namespace.
    fn node_sites(&self) -> Vec<(String, Site)> {
        match &self.network {
            Network::Namespaces(cluster) => cluster
                .state()
                .nodes
                .iter()
                .map(|n| {
                    let site = Site {
                        ip: n.underlay_ip,
                        netns: Some(n.netns.clone()),
                    };
                    (n.name.clone(), site)
                })
                .collect(),
            Network::Loopback(net) => (self.plan.nodes.iter().enumerate())
                .map(|(i, n)| {
                    let site = Site {
                        ip: net.node_ip(i),
                        netns: None,
                    };
                    (n.name.clone(), site)
                })
                .collect(),
        }
    }

    /// Explicit mode: the proxy variables of `pod`'s processes.
    fn proxy_env(&self, pod: &PodPlan) -> Vec<(String, String)> {
        let node_ip = self
            .node_sites()
            .into_iter()
            .find(|(name, _)| *name == pod.node)
            .map_or(Ipv4Addr::LOCALHOST, |(_, site)| site.ip);
        loopback::proxy_env(pod, node_ip, &self.settings.domain_suffix)
    }

    /// Starts `weft control` in the underlay namespace and one `weft node` per node (in
    /// explicit mode: on their loopback addresses), and waits until all are ready (or
    /// `cancel` is set).
    ///
    /// # Errors
    /// A token file or process cannot be made, or a component is not ready in time.
    pub fn start_components(&mut self, cancel: &Arc<AtomicBool>) -> Result<(), UpError> {
        let layout = self.settings.layout.clone();
        let control = self.control_site();
        // Readiness is asked from the underlay (namespaces) or from here (loopback).
        let probe_netns = control.netns.as_ref().map(NetNs::path);
        components::write_tokens(&layout, self.plan.nodes.iter().map(|n| n.name.as_str()))?;
        if self.features.pod_socket {
            create_dir(layout.node_socket("x").parent())?;
        }
        create_dir(Some(&layout.handoff_dir()))?;
        let argv = components::control_argv(
            &self.settings.weft,
            &layout,
            &self.settings.config_dir,
            control.ip,
        );
        let log = layout.container_log(SYSTEM_NAMESPACE, "control", "control");
        self.control =
            Some(self.spawn(control.netns.as_ref(), "weft control", &argv, &[], &log)?);
        let control_ready = Probe {
            what: "weft control".into(),
            netns: probe_netns.clone(),
            addr: SocketAddr::new(IpAddr::V4(control.ip), components::CONTROL_ADMIN_PORT),
            path: "/ready".into(),
        };
        self.wait_ready(&[control_ready], cancel)?;

        let mut probes = Vec::new();
        for (name, site) in self.node_sites() {
            let argv = components::node_argv(
                &self.settings.weft,
                &layout,
                &name,
                site.ip,
                control.ip,
                self.features,
            );
            let log = layout.container_log(SYSTEM_NAMESPACE, &format!("node-{name}"), "node");
            let label = format!("weft node {name}");
            let process = self.spawn(site.netns.as_ref(), &label, &argv, &[], &log)?;
            self.nodes.insert(name.clone(), process);
            self.links
                .insert(name.clone(), NodeLink::new(&layout.node_socket(&name)));
            probes.push(Probe {
                what: label,
                netns: probe_netns.clone(),
                addr: SocketAddr::new(IpAddr::V4(site.ip), NODE_READINESS_PORT),
                path: "/healthz/ready".into(),
            });
        }
        self.wait_ready(&probes, cancel)?;
        self.sync_nodes();
        Ok(())
    }

    fn wait_ready(&mut self, probes: &[Probe], cancel: &Arc<AtomicBool>) -> Result<(), UpError> {
        let timeout = self.settings.ready_timeout;
        let (control, nodes) = (&mut self.control, &mut self.nodes);
        wait_all_ready(probes, timeout, || {
            if cancel.load(Ordering::Relaxed) {
                return Err("interrupted".to_owned());
            }
            for process in control.iter_mut().chain(nodes.values_mut()) {
                if let Some(status) = process.exit_status() {
                    return Err(format!(
                        "{} exited ({status}); its last log lines:\n{}",
                        process.label(),
                        process.log_tail(15)
                    ));
                }
            }
            Ok(())
        })
        .map(|_| ())
        .map_err(|reason| UpError::NotReady {
            reason,
            logs: self.settings.layout.logs_dir(),
        })
    }

    /// Makes the running mesh match `new`: removes pods that are gone or changed, creates
    /// new ones, updates service rules, name files and the node proxies' pod lists.
    /// Failures of single pods are reported and skipped; the rest is applied.
    pub fn apply(&mut self, new: MeshPlan) -> Vec<String> {
        let mut report = Vec::new();
        let old = std::mem::take(&mut self.plan.pods);
        for (key, pod) in &old {
            let keep = new.pods.get(key).is_some_and(|n| !pod.needs_restart(n));
            if !keep {
                self.remove_pod(pod);
                if !new.pods.contains_key(key) {
                    report.push(format!("removed pod {key}"));
                }
            }
        }
        let unknown_nodes: Vec<&str> = new
            .nodes
            .iter()
            .filter(|n| self.plan.nodes.iter().all(|running| running.name != n.name))
            .map(|n| n.name.as_str())
            .collect();
        if !unknown_nodes.is_empty() {
            report.push(format!(
                "nodes {unknown_nodes:?} were added to the config: restart `weft up` to run them"
            ));
        }
        let mut running = BTreeMap::new();
        for (key, pod) in &new.pods {
            match old.get(key) {
                Some(before) if !before.needs_restart(pod) => {
                    if before.enrolled != pod.enrolled {
                        let what = if pod.enrolled {
                            "enrolled"
                        } else {
                            "unenrolled"
                        };
                        report.push(format!("{what} pod {key}"));
                    }
                    running.insert(key.clone(), pod.clone());
                }
                before => match self.add_pod(pod, &new) {
                    Ok(()) => {
                        let what = if before.is_some() {
                            "restarted"
                        } else {
                            "added"
                        };
                        report.push(format!("{what} pod {key} ({} on {})", pod.ip, pod.node));
                        running.insert(key.clone(), pod.clone());
                    }
                    Err(e) => report.push(format!("pod {key} not started: {e}")),
                },
            }
        }
        self.plan = MeshPlan {
            pods: running,
            nodes: self.plan.nodes.clone(),
            ..new
        };
        report.extend(self.sync_services());
        self.sync_nodes();
        report
    }

    fn add_pod(&mut self, pod: &PodPlan, plan: &MeshPlan) -> Result<(), UpError> {
        self.check_gateway(pod)?;
        let (netns, extra_env) = match &mut self.network {
            Network::Namespaces(cluster) => {
                let netns = create_pod_netns(cluster, pod, plan, &self.settings.domain_suffix)?;
                (Some(netns), Vec::new())
            }
            Network::Loopback(_) => (None, self.proxy_env(pod)),
        };
        let mut processes = Vec::new();
        for container in &pod.containers {
            let argv = self.container_argv(pod, container);
            let mut env = container.env.clone();
            env.extend(extra_env.iter().cloned());
            let log =
                self.settings
                    .layout
                    .container_log(&pod.namespace, &pod.name, &container.name);
            let label = format!("{}/{}", pod.key(), container.name);
            match self.spawn(netns.as_ref(), &label, &argv, &env, &log) {
                Ok(process) => processes.push(process),
                Err(e) => {
                    self.stop(&mut processes);
                    self.remove_pod_netns(pod);
                    return Err(e);
                }
            }
        }
        self.pods.insert(pod.key(), processes);
        self.expose_gateway(pod);
        if let Some(record) = self.exec_record(pod) {
            exec::record(&self.settings.layout, &pod.namespace, &pod.name, &record);
        }
        Ok(())
    }

    /// The command line of `container` of `pod`: its own, plus where the control plane is
    /// for a waypoint or gateway, plus (explicit mode) the pod's address for `weft x echo`.
    fn container_argv(&self, pod: &PodPlan, container: &crate::plan::ContainerPlan) -> Vec<String> {
        let mut argv = self.resolve_program(&container.argv);
        if pod.waypoint.is_some() {
            argv.extend(self.waypoint_args(pod));
        }
        if pod.gateway.is_some() {
            argv.extend(self.gateway_args(pod));
        }
        if self.is_explicit() {
            argv = loopback::bind_echo(argv, pod.ip);
        }
        argv
    }

    fn remove_pod(&mut self, pod: &PodPlan) {
        exec::forget(&self.settings.layout, &pod.namespace, &pod.name);
        self.ready_waypoints.remove(&pod.key());
        self.unexpose_gateway(pod);
        if let Some(mut processes) = self.pods.remove(&pod.key()) {
            self.stop(&mut processes);
        }
        self.remove_pod_netns(pod);
    }

    fn remove_pod_netns(&mut self, pod: &PodPlan) {
        if let Network::Namespaces(cluster) = &mut self.network
            && let Err(e) = cluster.remove_pod(&pod.cluster_name())
        {
            tracing::warn!(pod = %pod.key(), error = %e, "could not remove the pod's namespace");
        }
    }

    /// Starts a process (recording its pid in explicit mode, for `weft down`).
    fn spawn(
        &self,
        netns: Option<&NetNs>,
        label: &str,
        argv: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Process, UpError> {
        let spec = ProcessSpec {
            label: label.to_owned(),
            argv,
            env,
            log,
        };
        let process = Process::spawn(netns, &spec)?;
        if self.is_explicit() {
            pid_records::record(&self.settings.layout, process.pid());
        }
        Ok(process)
    }

    /// Stops processes (and forgets their pids).
    fn stop<'a>(&self, processes: impl IntoIterator<Item = &'a mut Process>) {
        let mut processes: Vec<&mut Process> = processes.into_iter().collect();
        stop_all(processes.iter_mut().map(|p| &mut **p), STOP_GRACE);
        for process in processes {
            pid_records::forget(&self.settings.layout, process.pid());
        }
    }

    /// `weft` as a program means this binary (so manifests work without weft on PATH).
    fn resolve_program(&self, argv: &[String]) -> Vec<String> {
        let mut argv = argv.to_vec();
        if argv.first().map(String::as_str) == Some(WEFT_PROGRAM) {
            argv[0] = self.settings.weft.display().to_string();
        }
        argv
    }

    /// Service DNAT in every node and the pods' hosts files; returns problems.
    fn sync_services(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Network::Namespaces(cluster) = &self.network else {
            // Explicit mode: the node proxies route ClusterIPs; there are no hosts files.
            return problems;
        };
        for node in &cluster.state().nodes {
            if let Err(e) = weft_netns::sync_service_rules(&node.netns.path(), &self.plan.services)
            {
                problems.push(format!("service rules in node {}: {e}", node.name));
            }
        }
        for pod in self.plan.pods.values() {
            if let Some(running) = cluster.pod(&pod.cluster_name()) {
                let hosts = self.plan.hosts_file(&pod.namespace, &pod.name, pod.ip);
                if let Err(e) = write_hosts(&running.netns, &hosts) {
                    problems.push(format!("hosts file of {}: {e}", pod.key()));
                }
            }
        }
        problems
    }

    /// Tells each node proxy its pods (when they take a pod socket). All of them: the node
    /// proxy captures those its mesh state lists as enrolled, so enrollment edits reach it
    /// through the control plane.
    fn sync_nodes(&mut self) {
        let Network::Namespaces(cluster) = &self.network else {
            return;
        };
        if !self.features.pod_socket {
            return;
        }
        for (node, link) in &mut self.links {
            let pods: Vec<PodAnnouncement> = self
                .plan
                .pods_on(node)
                .filter_map(|p| {
                    let running = cluster.pod(&p.cluster_name())?;
                    Some(PodAnnouncement {
                        uid: p.uid.clone(),
                        name: p.name.clone(),
                        namespace: p.namespace.clone(),
                        netns: running.netns.path(),
                        ips: vec![p.ip],
                    })
                })
                .collect();
            if let Err(e) = link.sync(pods) {
                tracing::warn!(node, error = %e, "could not update the node proxy's pods");
            }
        }
    }

    /// Processes that exited since the last call, with their status (processes replaced
    /// by `weft restart` are reaped silently: their exit is the end of their drain).
    pub fn exited(&mut self) -> Vec<String> {
        self.reap_retired();
        let mut out = Vec::new();
        let all = self
            .control
            .iter_mut()
            .chain(self.nodes.values_mut())
            .chain(self.pods.values_mut().flatten());
        for process in all {
            let before = process.has_reported_exit();
            if let Some(status) = process.exit_status()
                && !before
            {
                process.mark_exit_reported();
                out.push(format!("{} exited ({status})", process.label()));
            }
        }
        out
    }

    /// Stops every process and removes every namespace, link, rule and file of the instance.
    ///
    /// # Errors
    /// Some namespace or file could not be removed (everything else was still tried).
    pub fn shutdown(mut self) -> Result<(), UpError> {
        let mut system: Vec<Process> = std::mem::take(&mut self.nodes).into_values().collect();
        system.extend(self.control.take());
        system.append(&mut self.retiring);
        self.stop(&mut system);
        let mut pods: Vec<Process> = std::mem::take(&mut self.pods)
            .into_values()
            .flatten()
            .collect();
        self.stop(&mut pods);
        let layout = self.settings.layout.clone();
        let result = match self.network {
            Network::Namespaces(cluster) => cluster.teardown().map_err(UpError::from),
            Network::Loopback(_) => Ok(()),
        };
        remove_instance_dir(&layout).and(result)
    }
}

/// The pod's namespace on its node, with its `resolv.conf` (the node's DNS) and hosts file.
fn create_pod_netns(
    cluster: &mut LocalCluster,
    pod: &PodPlan,
    plan: &MeshPlan,
    domain_suffix: &str,
) -> Result<NetNs, UpError> {
    let ns = cluster.add_pod_with_ip(&pod.cluster_name(), &pod.node, Some(pod.ip))?;
    let netns = ns.netns.clone();
    let gateway = cluster.node(&pod.node).map(|n| n.gateway);
    let search = dns_search(&pod.namespace, domain_suffix);
    let search: Vec<&str> = search.iter().map(String::as_str).collect();
    let nameservers: Vec<IpAddr> = gateway.into_iter().map(IpAddr::V4).collect();
    netns.set_resolv_conf(&nameservers, &search)?;
    write_hosts(&netns, &plan.hosts_file(&pod.namespace, &pod.name, pod.ip))?;
    Ok(netns)
}

fn create_dir(dir: Option<&Path>) -> Result<(), UpError> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir).map_err(|source| UpError::File {
        op: "create",
        path: dir.to_owned(),
        source,
    })
}

/// Writes `/etc/netns/NAME/hosts` (seen as `/etc/hosts` by the pod's processes). Written in
/// place, so processes already running (bind mount of this file) see the new content.
fn write_hosts(netns: &NetNs, text: &str) -> Result<(), UpError> {
    let path = Path::new(NETNS_ETC_DIR).join(netns.name()).join("hosts");
    std::fs::write(&path, text).map_err(|source| UpError::File {
        op: "write",
        path,
        source,
    })
}

/// Removes the instance directory (logs, tokens, control state, sockets).
pub(crate) fn remove_instance_dir(layout: &Layout) -> Result<(), UpError> {
    match std::fs::remove_dir_all(layout.root()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(UpError::File {
            op: "remove",
            path: layout.root().to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}
