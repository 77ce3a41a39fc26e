//! What a configuration runs on this machine: nodes, pods (address, node, enrollment,
//! identity, processes) and Service DNAT rules. Pure: built from a [`ConfigSnapshot`] with the
//! same functions the control plane uses ([`weft_api::expand_pods`] for names, nodes and
//! addresses; [`weft_control::translate::translate`] for enrollment, identities and service
//! endpoints), so `weft up` and `weft control` always agree.

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use weft_api::{ConfigSnapshot, ExpandedPod};
use weft_control::translate::{TranslateOptions, pod_uid, translate};
use weft_netns::{Protocol, ServiceRule};
use weft_proto::workload::{Address, TunnelProtocol, Workload, WorkloadStatus, address};

/// Program name in a container `command` that means "this weft binary".
pub const WEFT_PROGRAM: &str = "weft";

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No Node objects: pods would have no addresses.
    #[error(
        "the configuration has no Node: `weft up` runs each Node as a network namespace and \
         takes pod addresses from its spec.podCIDR; add e.g.\n  apiVersion: v1\n  kind: Node\n  \
         metadata: {{name: node-a}}\n  spec: {{podCIDR: 10.244.1.0/24}}"
    )]
    NoNodes,
    /// A Node without an IPv4 podCIDR.
    #[error("Node {node}: spec.podCIDR must be an IPv4 CIDR such as 10.244.1.0/24 (got {found:?})")]
    NodeCidr {
        /// The node.
        node: String,
        /// What was written.
        found: Option<String>,
    },
}

/// A node: one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Node name.
    pub name: String,
    /// Its pods' addresses.
    pub pod_cidr: Ipv4Net,
}

/// One process of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    /// Container name (log file name).
    pub name: String,
    /// Program and arguments; a first element [`WEFT_PROGRAM`] means this weft binary.
    pub argv: Vec<String>,
    /// Environment (the container's plus `POD_NAME`, `POD_NAMESPACE`, `POD_IP`, `HOSTNAME`).
    pub env: Vec<(String, String)>,
}

/// A pod: one network namespace on its node, with its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it runs on.
    pub node: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Workload uid (as the control plane names it).
    pub uid: String,
    /// Whether the node proxy captures its traffic (ambient).
    pub enrolled: bool,
    /// SPIFFE identity, for enrolled pods and waypoints.
    pub identity: Option<String>,
    /// Its processes.
    pub containers: Vec<ContainerPlan>,
    /// The waypoint Gateway (`namespace/name`) this pod runs, for a waypoint's pod: its
    /// container is `weft waypoint run`, to which `weft up` adds where the control plane is.
    pub waypoint: Option<String>,
    /// The Gateway this pod runs, for an ingress/egress gateway's pod: its container is
    /// `weft gateway`, to which `weft up` adds where the control plane is and the address
    /// to listen on.
    pub gateway: Option<GatewayPlan>,
}

/// What a gateway's pod serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPlan {
    /// The Gateway, `namespace/name`.
    pub name: String,
    /// Its listeners' `(protocol, port)`, each port once, in listener order.
    pub listeners: Vec<(String, u16)>,
}

impl GatewayPlan {
    /// Where each listener is reached at `ip`: `http://IP:80/`, `https://IP:443/`, and
    /// `tls://IP:PORT` or `tcp://IP:PORT` for the others.
    #[must_use]
    pub fn urls(&self, ip: Ipv4Addr) -> Vec<String> {
        (self.listeners.iter())
            .map(
                |(protocol, port)| match protocol.to_ascii_lowercase().as_str() {
                    scheme @ ("http" | "https") => format!("{scheme}://{ip}:{port}/"),
                    scheme => format!("{scheme}://{ip}:{port}"),
                },
            )
            .collect()
    }
}

impl PodPlan {
    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Name of the pod inside the local cluster (`namespace.name`, unique and netns-safe).
    #[must_use]
    pub fn cluster_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// Whether the pod must be recreated to go from `self` to `new` (anything but its
    /// enrollment changed).
    #[must_use]
    pub fn needs_restart(&self, new: &PodPlan) -> bool {
        self.node != new.node || self.ip != new.ip || self.containers != new.containers
    }
}

/// A hostname of a Service and its ClusterIP (for the pods' hosts files).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceName {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Full hostname (`name.namespace.svc.<suffix>`).
    pub hostname: String,
    /// ClusterIP.
    pub vip: Ipv4Addr,
}

/// Everything a configuration runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeshPlan {
    /// Nodes, by name order.
    pub nodes: Vec<NodePlan>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, PodPlan>,
    /// Service DNAT rules (the same in every node).
    pub services: Vec<ServiceRule>,
    /// Service hostnames and ClusterIPs.
    pub service_names: Vec<ServiceName>,
    /// Pods that cannot run, and why.
    pub skipped: Vec<String>,
}

impl MeshPlan {
    /// Plans `snapshot` (translated with `options`, as `weft control` does).
    ///
    /// # Errors
    /// No nodes, or a node without an IPv4 pod CIDR.
    pub fn build(snapshot: &ConfigSnapshot, options: &TranslateOptions) -> Result<Self, PlanError> {
        let nodes = plan_nodes(snapshot)?;
        let output = translate(snapshot, options);
        // the translator encoded these Addresses itself: they always decode
        let addresses: Vec<Address> = output
            .decode_all(weft_proto::ADDRESS_TYPE_URL)
            .expect("translated Addresses decode");
        let workloads: BTreeMap<&str, &Workload> = addresses
            .iter()
            .filter_map(|a| match &a.r#type {
                Some(address::Type::Workload(w)) => Some((w.uid.as_str(), w)),
                _ => None,
            })
            .collect();
        let mut plan = MeshPlan {
            nodes,
            ..MeshPlan::default()
        };
        for pod in weft_api::expand_pods(snapshot) {
            match plan_pod(snapshot, &pod, &workloads, options) {
                Ok(planned) => {
                    plan.pods.insert(planned.key(), planned);
                }
                Err(reason) => {
                    let key = format!("{}/{}", pod.namespace(), pod.name());
                    plan.skipped.push(format!("{key}: {reason}"));
                }
            }
        }
        let services = addresses.iter().filter_map(|a| match &a.r#type {
            Some(address::Type::Service(s)) => Some(s),
            _ => None,
        });
        for service in services {
            let Some(vip) = service.addresses.iter().find_map(|a| ipv4(&a.address)) else {
                continue;
            };
            plan.service_names.push(ServiceName {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                hostname: service.hostname.clone(),
                vip,
            });
            let key = format!("{}/{}", service.namespace, service.hostname);
            for port in &service.ports {
                plan.services.push(ServiceRule {
                    vip,
                    port: u16::try_from(port.service_port).unwrap_or_default(),
                    protocol: Protocol::Tcp,
                    endpoints: endpoints(&workloads, &key, port.service_port),
                });
            }
        }
        plan.service_names.sort();
        Ok(plan)
    }

    /// Pods on `node`.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PodPlan> + 'a {
        self.pods.values().filter(move |p| p.node == node)
    }

    /// The `/etc/hosts` text for pods in `namespace`: every Service by its full hostname and
    /// `name.namespace`, and the Services of the pod's own namespace by short name too.
    #[must_use]
    pub fn hosts_file(&self, namespace: &str, pod_name: &str, pod_ip: Ipv4Addr) -> String {
        let mut text = format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{pod_ip}\t{pod_name}\n");
        for service in &self.service_names {
            let short = format!("{}.{}", service.name, service.namespace);
            let mut names: BTreeSet<&str> = [service.hostname.as_str(), short.as_str()].into();
            if service.namespace == namespace {
                names.insert(&service.name);
            }
            let names: Vec<&str> = names.into_iter().collect();
            text.push_str(&format!("{}\t{}\n", service.vip, names.join(" ")));
        }
        text
    }
}

fn plan_nodes(snapshot: &ConfigSnapshot) -> Result<Vec<NodePlan>, PlanError> {
    let mut nodes = Vec::new();
    for (node, _) in snapshot.nodes() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let written = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        let cidr = match written.as_deref().map(str::parse::<IpNet>) {
            Some(Ok(IpNet::V4(cidr))) => cidr.trunc(),
            _ => {
                return Err(PlanError::NodeCidr {
                    node: name,
                    found: written,
                });
            }
        };
        nodes.push(NodePlan {
            name,
            pod_cidr: cidr,
        });
    }
    if nodes.is_empty() {
        return Err(PlanError::NoNodes);
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

fn plan_pod(
    snapshot: &ConfigSnapshot,
    pod: &ExpandedPod,
    workloads: &BTreeMap<&str, &Workload>,
    options: &TranslateOptions,
) -> Result<PodPlan, String> {
    let node = pod
        .node_name()
        .ok_or("no node (is spec.nodeName a Node of the config?)")?;
    let ip = match pod.ip() {
        Some(IpAddr::V4(ip)) => ip,
        Some(IpAddr::V6(ip)) => return Err(format!("IPv6 pod address {ip} is not supported")),
        None => return Err(format!("no free address in node {node}'s pod CIDR")),
    };
    let uid = pod_uid(&options.cluster_id, pod.namespace(), pod.name());
    let workload = workloads.get(uid.as_str());
    let enrolled = workload.is_some_and(|w| w.tunnel_protocol == TunnelProtocol::Hbone as i32);
    let waypoint = weft_api::expand::waypoint::waypoint_of(pod);
    let gateway =
        weft_api::expand::gateway::gateway_of(pod).map(|name| plan_gateway(snapshot, name));
    let identity = workload
        .filter(|_| enrolled || waypoint.is_some() || gateway.is_some())
        .map(|w| {
            format!(
                "spiffe://{}/ns/{}/sa/{}",
                w.trust_domain, w.namespace, w.service_account
            )
        });
    let spec = pod.pod.spec.as_ref();
    let containers = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| plan_container(c, pod, ip))
        .collect();
    Ok(PodPlan {
        namespace: pod.namespace().to_owned(),
        name: pod.name().to_owned(),
        node: node.to_owned(),
        ip,
        uid,
        enrolled,
        identity,
        containers,
        waypoint,
        gateway,
    })
}

/// The listeners of Gateway `name` (`namespace/name`) in `snapshot`.
fn plan_gateway(snapshot: &ConfigSnapshot, name: String) -> GatewayPlan {
    let (namespace, gateway) = name.split_once('/').unwrap_or_default();
    let object = snapshot.get(weft_api::Kind::Gateway, Some(namespace), gateway);
    let listeners = match object.map(|o| &o.object) {
        Some(weft_api::Object::Gateway(gateway)) => {
            weft_api::expand::gateway::listener_ports(gateway)
        }
        _ => Vec::new(),
    };
    GatewayPlan { name, listeners }
}

/// The container's own `command` + `args`; a container with no `command` (an image we cannot
/// run) runs the built-in echo workload on its `containerPort`s.
fn plan_container(container: &Container, pod: &ExpandedPod, ip: Ipv4Addr) -> ContainerPlan {
    let command = container.command.clone().unwrap_or_default();
    let argv = if command.is_empty() {
        let mut argv: Vec<String> = [WEFT_PROGRAM, "x", "echo"].map(str::to_owned).into();
        for port in container.ports.iter().flatten() {
            argv.extend(["--port".to_owned(), port.container_port.to_string()]);
        }
        argv
    } else {
        let mut argv = command;
        argv.extend(container.args.clone().unwrap_or_default());
        argv
    };
    let mut env: Vec<(String, String)> = vec![
        ("POD_NAME".into(), pod.name().into()),
        ("POD_NAMESPACE".into(), pod.namespace().into()),
        ("POD_IP".into(), ip.to_string()),
        ("HOSTNAME".into(), pod.name().into()),
    ];
    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(var, pod, ip) {
            env.retain(|(name, _)| *name != var.name);
            env.push((var.name.clone(), value));
        }
    }
    ContainerPlan {
        name: container.name.clone(),
        argv,
        env,
    }
}

/// A literal value, or the pod fields a downward-API `fieldRef` can name.
fn env_value(var: &EnvVar, pod: &ExpandedPod, ip: Ipv4Addr) -> Option<String> {
    if let Some(value) = &var.value {
        return Some(value.clone());
    }
    let field = var.value_from.as_ref()?.field_ref.as_ref()?;
    match field.field_path.as_str() {
        "metadata.name" => Some(pod.name().to_owned()),
        "metadata.namespace" => Some(pod.namespace().to_owned()),
        "status.podIP" => Some(ip.to_string()),
        "spec.nodeName" => pod.node_name().map(str::to_owned),
        "spec.serviceAccountName" => Some(pod.service_account().to_owned()),
        _ => None,
    }
}

/// Healthy IPv4 workloads serving `service_key` on `service_port`, with their target port.
fn endpoints(
    workloads: &BTreeMap<&str, &Workload>,
    service_key: &str,
    service_port: u32,
) -> Vec<SocketAddrV4> {
    let mut endpoints: Vec<SocketAddrV4> = workloads
        .values()
        .filter(|w| w.status != WorkloadStatus::Unhealthy as i32)
        .filter_map(|w| {
            let ports = w.services.get(service_key)?;
            let port = ports
                .ports
                .iter()
                .find(|p| p.service_port == service_port)?;
            let target = if port.target_port == 0 {
                service_port
            } else {
                port.target_port
            };
            let ip = w.addresses.iter().find_map(|a| ipv4(a))?;
            Some(SocketAddrV4::new(ip, u16::try_from(target).ok()?))
        })
        .collect();
    endpoints.sort();
    endpoints
}

fn ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(bytes).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn bundled_plan() -> MeshPlan {
        let mut objects = Vec::new();
        for (name, text) in crate::bundled::FILES {
            objects.extend(weft_api::parse_manifests(text, std::path::Path::new(name)).objects);
        }
        let snapshot = ConfigSnapshot::new(objects);
        MeshPlan::build(&snapshot, &TranslateOptions::default()).expect("bundled config plans")
    }

    #[test]
    fn bundled_mesh_runs_every_pod_with_enrollment_and_identity() {
        let plan = bundled_plan();
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node-a", "node-b"]);
        let keys: Vec<&str> = plan.pods.keys().map(String::as_str).collect();
        let waypoint = format!(
            "shop/{}",
            weft_api::expand::waypoint::waypoint_pod_name("shop", "waypoint")
        );
        let gateway = format!(
            "shop/{}",
            weft_api::expand::gateway::gateway_pod_name("shop", "shop-gateway", "weft")
        );
        let mut expected = vec![
            &gateway,
            "frontend/reports-0",
            "frontend/web-0",
            "frontend/web-1",
            "legacy/httpbin-0",
            "legacy/legacy-client-0",
            "shop/catalog-v1-0",
            "shop/catalog-v1-1",
            "shop/catalog-v2-0",
            "shop/reviews-v1-0",
            "shop/reviews-v2-0",
            &waypoint,
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        // The waypoint's pod: its own identity, not captured, runs `weft waypoint run`.
        let pod = &plan.pods[&waypoint];
        assert_eq!(pod.waypoint.as_deref(), Some("shop/waypoint"));
        assert!(!pod.enrolled);
        assert_eq!(
            pod.identity.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/waypoint")
        );
        assert_eq!(
            pod.containers[0].argv,
            ["weft", "waypoint", "run", "--gateway", "shop/waypoint"]
        );
        let service = plan.service_names.iter().find(|s| s.name == "waypoint");
        let rule = plan
            .services
            .iter()
            .find(|r| service.is_some_and(|s| s.vip == r.vip) && r.port == 15008);
        assert_eq!(
            rule.map(|r| r.endpoints.clone()),
            Some(vec![SocketAddrV4::new(pod.ip, 15008)]),
            "the waypoint's Service reaches its pod on 15008"
        );
        // The shop gateway's pod: not captured, its own identity, its listener.
        let pod = &plan.pods[&gateway];
        assert!(pod.waypoint.is_none() && !pod.enrolled);
        let planned = pod.gateway.as_ref().expect("a gateway pod");
        assert_eq!(planned.name, "shop/shop-gateway");
        assert_eq!(planned.listeners, [("HTTP".to_owned(), 80)]);
        assert_eq!(
            planned.urls(pod.ip),
            [format!("http://{}:80/", pod.ip)],
            "where the shell reaches it"
        );
        assert_eq!(
            pod.identity.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/shop-gateway-weft")
        );
        assert_eq!(
            pod.containers[0].argv,
            [
                "weft",
                "gateway",
                "--gateway",
                "shop/shop-gateway",
                "--service-account",
                "shop-gateway-weft"
            ]
        );
        let web = &plan.pods["frontend/web-0"];
        assert!(web.enrolled);
        assert_eq!(
            web.identity.as_deref(),
            Some("spiffe://cluster.local/ns/frontend/sa/web")
        );
        let node = plan.nodes.iter().find(|n| n.name == web.node).unwrap();
        assert!(node.pod_cidr.contains(&web.ip));
        let legacy = &plan.pods["legacy/legacy-client-0"];
        assert!(!legacy.enrolled);
        assert_eq!(legacy.identity, None);
        // Image only, no ports: the echo workload on its default port.
        assert_eq!(legacy.containers[0].argv, ["weft", "x", "echo"]);
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    }

    #[test]
    fn services_dnat_to_their_pods_target_ports_and_have_host_names() {
        let plan = bundled_plan();
        let catalog = plan
            .service_names
            .iter()
            .find(|s| s.name == "catalog")
            .expect("catalog service");
        let rule = plan
            .services
            .iter()
            .find(|r| r.vip == catalog.vip && r.port == 80)
            .expect("catalog:80 rule");
        let mut expected: Vec<SocketAddrV4> = plan
            .pods
            .values()
            .filter(|p| p.name.starts_with("catalog-"))
            .map(|p| SocketAddrV4::new(p.ip, 8080))
            .collect();
        expected.sort();
        assert_eq!(rule.endpoints, expected);

        let hosts = plan.hosts_file("frontend", "web-0", Ipv4Addr::new(10, 244, 1, 9));
        let line = format!(
            "{}\tcatalog.shop catalog.shop.svc.cluster.local\n",
            catalog.vip
        );
        assert!(hosts.contains(&line), "{hosts}");
        let web = plan.service_names.iter().find(|s| s.name == "web").unwrap();
        assert!(
            hosts.contains(&format!("{}\tweb web.frontend ", web.vip)),
            "{hosts}"
        );
    }

    #[test]
    fn image_only_container_runs_echo_on_its_ports_and_env_is_filled() {
        let yaml = "\
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.9.0.0/24}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: app
    image: example/app:1
    ports: [{containerPort: 9080}, {containerPort: 9090}]
    env:
    - {name: GREETING, value: hi}
    - name: MY_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
";
        let loaded = weft_api::parse_manifests(yaml, std::path::Path::new("t.yaml"));
        let snapshot = ConfigSnapshot::new(loaded.objects);
        let plan = MeshPlan::build(&snapshot, &TranslateOptions::default()).unwrap();
        let pod = &plan.pods["ns/p"];
        let app = &pod.containers[0];
        assert_eq!(
            app.argv,
            ["weft", "x", "echo", "--port", "9080", "--port", "9090"]
        );
        let env: BTreeMap<_, _> = app.env.iter().cloned().collect();
        assert_eq!(env["GREETING"], "hi");
        assert_eq!(env["MY_IP"], pod.ip.to_string());
        assert_eq!(env["POD_NAMESPACE"], "ns");
    }

    #[test]
    fn missing_nodes_or_cidrs_are_explained() {
        let snapshot = ConfigSnapshot::new(Vec::new());
        assert_eq!(
            MeshPlan::build(&snapshot, &TranslateOptions::default()),
            Err(PlanError::NoNodes)
        );
        let yaml = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
        let loaded = weft_api::parse_manifests(yaml, std::path::Path::new("t.yaml"));
        let err = MeshPlan::build(
            &ConfigSnapshot::new(loaded.objects),
            &TranslateOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Node n1: spec.podCIDR"), "{err}");
    }
}
