//! Pod expansion: the one place that decides which pods a configuration runs, their names,
//! nodes and IPs. The control plane (workload addresses) and `weft up` (network namespaces)
//! both call [`expand_pods`], so they always agree.
//!
//! Rules:
//! - A bare `Pod` is kept as written.
//! - A `Deployment` with `replicas: N` (default 1) runs pods `<name>-0` .. `<name>-(N-1)`;
//!   a `StatefulSet` runs `<name>-<ordinal>` the same way; a `DaemonSet` runs one pod per
//!   `Node`, named `<name>-<node>`. Each pod is the template (labels, annotations, spec) with
//!   that name, the owner's namespace and an owner reference to it.
//! - Limits, so that one file cannot make the control plane build millions of pods: a
//!   workload is expanded to at most [`MAX_REPLICAS`] pods, and workloads (Deployments,
//!   then StatefulSets, then DaemonSets, each in load order: file path, then position in
//!   the file) only while bare and workload pods stay within [`MAX_PODS`]; the workloads
//!   cut short run fewer pods or none ([`pod_shortfalls`] names them; `weft analyze`
//!   reports them). Bare pods, waypoint and gateway pods are never cut.
//! - Node: `spec.nodeName` if set, else the `kubernetes.io/hostname` node selector, else the
//!   nodes in name order starting at an offset derived from a stable hash of
//!   `namespace/owner`, so replicas spread over nodes and a new workload never moves others.
//! - IP: `status.podIP` if set; otherwise a free host address of the node's `spec.podCIDR`
//!   (the network and first host address are reserved for the node), picked by a stable hash
//!   of `namespace/name` with linear probing. Without nodes or CIDR a pod has no IP.
//! - A waypoint `Gateway` (class `istio-waypoint`) runs one pod, owned by the Gateway (see
//!   [`waypoint`] for its name, identity and labels, and the Service added beside it).
//! - A `Gateway` of a class weft runs as an ingress/egress gateway runs one pod, owned by the
//!   Gateway (see [`gateway`]: named and labelled as Istio's gateway deployment controller
//!   does, with a Service beside it).
//! - Readiness is not decided here: expanded pods carry no phase or conditions; the runtime
//!   that starts them reports readiness.

use crate::object::{DEFAULT_NAMESPACE, Kind, ObjectRef, Source};
use crate::snapshot::ConfigSnapshot;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, PodIP, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

mod deployment;
pub mod gateway;
pub mod waypoint;

pub use deployment::{Deployment as GatewayDeployment, GATEWAY_CLASS_LABEL, GATEWAY_NAME_LABEL};

/// Most pods one workload is expanded to (a larger `replicas` is an `over-limit` error,
/// so the control plane keeps the file's last good objects; `weft analyze` expands it to
/// this many).
pub const MAX_REPLICAS: i32 = 1_000;

/// Most bare and workload pods of one snapshot: workloads are expanded only within it.
pub const MAX_PODS: usize = 50_000;

/// Node selector label naming a node.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Service account of a pod (or workload entry) that names none, as in Kubernetes.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The service account a pod runs as, and so its identity: `spec.serviceAccountName`, else
/// the deprecated `spec.serviceAccount` (Kubernetes still honours it when the new field is
/// unset), else `default`. Everything that derives an identity from a pod calls this.
#[must_use]
pub fn pod_service_account(spec: Option<&PodSpec>) -> &str {
    fn named(field: Option<&String>) -> Option<&str> {
        field.map(String::as_str).filter(|name| !name.is_empty())
    }
    spec.and_then(|s| {
        named(s.service_account_name.as_ref()).or_else(|| named(s.service_account.as_ref()))
    })
    .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
}

/// A pod the configuration runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandedPod {
    /// The pod, with `metadata.name`/`namespace`, `spec.nodeName` and `status.podIP` filled in
    /// when they could be decided.
    pub pod: Pod,
    /// The workload it came from (`None` for a bare Pod).
    pub owner: Option<ObjectRef>,
    /// Where the pod (or its owner) is written.
    pub source: Source,
}

impl ExpandedPod {
    /// Namespace (always set by expansion).
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.pod
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// Name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// Pod labels (empty map if none).
    #[must_use]
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.pod.metadata.labels.clone().unwrap_or_default()
    }

    /// `status.podIP`, parsed.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        self.pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
    }

    /// `spec.nodeName`.
    #[must_use]
    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref()?.node_name.as_deref()
    }

    /// The service account it runs as (see [`pod_service_account`]).
    #[must_use]
    pub fn service_account(&self) -> &str {
        pod_service_account(self.pod.spec.as_ref())
    }
}

struct NodeInfo {
    name: String,
    pod_cidr: Option<IpNet>,
}

/// The kinds [`expand_pods`] reads: its result depends on these objects and nothing else.
pub const INPUT_KINDS: [Kind; 7] = [
    Kind::Pod,
    Kind::Deployment,
    Kind::StatefulSet,
    Kind::DaemonSet,
    Kind::Node,
    Kind::Gateway,
    Kind::GatewayClass,
];

/// What `gateway` deploys when weft runs it (a waypoint, or a gateway of a class weft
/// handles per `snapshot`'s GatewayClasses): the names, labels, annotations, command and
/// ports of its pod and Service. File mode expands them into a pod and a Service; in
/// Kubernetes mode the leader deploys them (`weft_kube::deploy`).
#[must_use]
pub fn gateway_deployment(
    snapshot: &ConfigSnapshot,
    gateway: &crate::gateway::Gateway,
) -> Option<GatewayDeployment> {
    waypoint::waypoint_deployment(gateway).or_else(|| gateway::deployment_of(snapshot, gateway))
}

/// Adds the Services that Gateways deploy beside their pods (waypoints' and gateways') to
/// `objects`, where no Service of that name is written (before ClusterIPs are allocated).
pub fn add_gateway_services(objects: &mut Vec<crate::object::LoadedObject>) {
    waypoint::add_waypoint_services(objects);
    gateway::add_gateway_services(objects);
}

/// Every pod of the snapshot, sorted by namespace and name. See the module doc for the rules.
#[must_use]
pub fn expand_pods(snapshot: &ConfigSnapshot) -> Vec<ExpandedPod> {
    let nodes = node_infos(snapshot);
    let mut pods: Vec<ExpandedPod> = snapshot
        .bare_pods()
        .map(|(pod, loaded)| ExpandedPod {
            pod: pod.clone(),
            owner: None,
            source: loaded.source.clone(),
        })
        .collect();
    for workload in workload_replicas(snapshot, &nodes) {
        pods.extend(from_template(
            workload.owner,
            workload.template,
            workload.names,
        ));
    }
    pods.extend(waypoint::waypoint_pods(snapshot));
    pods.extend(gateway::gateway_pods(snapshot));
    for pod in &mut pods {
        if pod.pod.metadata.namespace.is_none() {
            pod.pod.metadata.namespace = Some(DEFAULT_NAMESPACE.to_owned());
        }
    }
    pods.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    assign_nodes(&mut pods, &nodes);
    assign_ips(&mut pods, &nodes);
    pods
}

/// The pods of a snapshot observed in a cluster (Kubernetes mode): every `Pod` object as
/// the cluster placed (`spec.nodeName`) and addressed it (`status.podIPs`, whose first
/// entry is the pod's `status.podIP`), sorted by namespace and name. Nothing is expanded
/// or assigned: a pod without an address yet has none.
#[must_use]
pub fn observed_pods(snapshot: &ConfigSnapshot) -> Vec<ExpandedPod> {
    let mut pods: Vec<ExpandedPod> = snapshot
        .bare_pods()
        .map(|(pod, loaded)| {
            let mut pod = pod.clone();
            if let Some(status) = pod.status.as_mut().filter(|s| s.pod_ip.is_none()) {
                let first = status.pod_ips.as_ref().and_then(|ips| ips.first());
                status.pod_ip = first.map(|ip| ip.ip.clone());
            }
            ExpandedPod {
                pod,
                owner: None,
                source: loaded.source.clone(),
            }
        })
        .collect();
    pods.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    pods
}

fn node_infos(snapshot: &ConfigSnapshot) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> = snapshot
        .nodes()
        .map(|(node, _)| NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            pod_cidr: node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(|c| c.parse().ok()),
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// The pods one workload asks for and the ones it runs within the limits.
struct WorkloadReplicas<'a> {
    owner: &'a crate::object::LoadedObject,
    template: Option<&'a PodTemplateSpec>,
    /// How many pods its spec asks for.
    asked: usize,
    /// Name suffix (and fixed node, for DaemonSet pods) of each pod it runs.
    names: Vec<(String, Option<String>)>,
}

/// A workload that runs fewer pods than it asks for (see the module doc's limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodShortfall {
    /// The workload.
    pub owner: ObjectRef,
    /// Where it is defined.
    pub source: Source,
    /// Pods its spec asks for.
    pub asked: usize,
    /// Pods it runs.
    pub running: usize,
}

/// The workloads that run fewer pods than they ask for, in expansion order.
#[must_use]
pub fn pod_shortfalls(snapshot: &ConfigSnapshot) -> Vec<PodShortfall> {
    workload_replicas(snapshot, &node_infos(snapshot))
        .into_iter()
        .filter(|w| w.names.len() < w.asked)
        .map(|w| PodShortfall {
            owner: w.owner.object.object_ref(),
            source: w.owner.source_at(&["spec".into(), "replicas".into()]),
            asked: w.asked,
            running: w.names.len(),
        })
        .collect()
}

/// Every workload with the pods it runs: replica ordinals, or a fixed node per DaemonSet
/// pod; at most [`MAX_REPLICAS`] each and [`MAX_PODS`] with the bare pods.
fn workload_replicas<'a>(
    snapshot: &'a ConfigSnapshot,
    nodes: &[NodeInfo],
) -> Vec<WorkloadReplicas<'a>> {
    let mut budget = MAX_PODS.saturating_sub(snapshot.bare_pods().count());
    // how many of `asked` pods a workload runs, taken from the budget
    let mut grant = |asked: usize| {
        let running = asked.min(MAX_REPLICAS as usize).min(budget);
        budget -= running;
        running
    };
    let mut out = Vec::new();
    let replicated = (snapshot.deployments())
        .map(|(d, owner)| (owner, d.spec.as_ref().map(|s| (s.replicas, &s.template))))
        .chain(
            (snapshot.stateful_sets())
                .map(|(s, owner)| (owner, s.spec.as_ref().map(|s| (s.replicas, &s.template)))),
        );
    for (owner, spec) in replicated {
        let replicas = spec.and_then(|(replicas, _)| replicas).unwrap_or(1);
        let asked = usize::try_from(replicas).unwrap_or(0);
        let names = (0..grant(asked)).map(|i| (i.to_string(), None)).collect();
        let template = spec.map(|(_, template)| template);
        out.push(WorkloadReplicas {
            owner,
            template,
            asked,
            names,
        });
    }
    for (set, owner) in snapshot.daemon_sets() {
        let asked = nodes.len();
        let names = (nodes.iter().take(grant(asked)))
            .map(|n| (n.name.clone(), Some(n.name.clone())))
            .collect();
        let template = set.spec.as_ref().map(|s| &s.template);
        out.push(WorkloadReplicas {
            owner,
            template,
            asked,
            names,
        });
    }
    out
}

/// Builds one pod per `(suffix, node)` from a workload's template.
fn from_template(
    owner: &crate::object::LoadedObject,
    template: Option<&PodTemplateSpec>,
    replicas: Vec<(String, Option<String>)>,
) -> Vec<ExpandedPod> {
    let owner_ref = owner.object.object_ref();
    let template_meta = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    replicas
        .into_iter()
        .map(|(suffix, node)| {
            let metadata = ObjectMeta {
                name: Some(format!("{}-{suffix}", owner_ref.name)),
                namespace: owner_ref.namespace.clone(),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".to_owned(),
                    kind: owner_ref.kind.name().to_owned(),
                    name: owner_ref.name.clone(),
                    ..OwnerReference::default()
                }]),
                ..template_meta.clone()
            };
            let mut spec = template.and_then(|t| t.spec.clone()).unwrap_or_default();
            if node.is_some() {
                spec.node_name = node;
            }
            ExpandedPod {
                pod: Pod {
                    metadata,
                    spec: Some(spec),
                    status: None,
                },
                owner: Some(owner_ref.clone()),
                source: owner.source.clone(),
            }
        })
        .collect()
}

fn assign_nodes(pods: &mut [ExpandedPod], nodes: &[NodeInfo]) {
    if nodes.is_empty() {
        return;
    }
    let mut replica_index: HashMap<ObjectRef, usize> = HashMap::new();
    for pod in pods {
        let Some(spec) = pod.pod.spec.as_mut() else {
            continue;
        };
        if spec.node_name.is_some() {
            continue;
        }
        if let Some(host) = spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get(HOSTNAME_LABEL))
        {
            spec.node_name = Some(host.clone());
            continue;
        }
        let key = pod.owner.clone().unwrap_or_else(|| ObjectRef {
            kind: Kind::Pod,
            namespace: pod.pod.metadata.namespace.clone(),
            name: pod.pod.metadata.name.clone().unwrap_or_default(),
        });
        let offset = stable_hash(&format!(
            "{}/{}",
            key.namespace.as_deref().unwrap_or_default(),
            key.name
        ));
        let index = replica_index.entry(key).or_default();
        let node = &nodes[(offset as usize).wrapping_add(*index) % nodes.len()];
        *index += 1;
        spec.node_name = Some(node.name.clone());
    }
}

fn assign_ips(pods: &mut [ExpandedPod], nodes: &[NodeInfo]) {
    let mut taken: HashSet<IpAddr> = pods.iter().filter_map(ExpandedPod::ip).collect();
    let cidrs: HashMap<&str, IpNet> = (nodes.iter())
        .filter_map(|node| Some((node.name.as_str(), node.pod_cidr?)))
        .collect();
    // a CIDR found full once is not searched again (each search of a full one walks it all)
    let mut full: HashSet<IpNet> = HashSet::new();
    for pod in pods.iter_mut() {
        if pod.ip().is_some() {
            continue;
        }
        let Some(&cidr) = pod.node_name().and_then(|n| cidrs.get(n)) else {
            continue;
        };
        if full.contains(&cidr) {
            continue;
        }
        let seed = stable_hash(&format!("{}/{}", pod.namespace(), pod.name()));
        let Some(ip) = free_address(cidr, seed, &taken) else {
            full.insert(cidr);
            continue;
        };
        taken.insert(ip);
        let status = pod.pod.status.get_or_insert_with(PodStatus::default);
        status.pod_ip = Some(ip.to_string());
        status.pod_ips = Some(vec![PodIP { ip: ip.to_string() }]);
    }
}

/// A host address of `cidr` not in `taken`, skipping the network address and first host.
pub(crate) fn free_address(cidr: IpNet, seed: u64, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len()).min(32);
    let size: u64 = 1u64 << host_bits;
    if size < 4 {
        return None;
    }
    let usable = size - 3; // network, first host (node), broadcast
    (0..usable)
        .map(|probe| 2 + (seed.wrapping_add(probe)) % usable)
        .map(|offset| add_offset(cidr.network(), offset))
        .find(|ip| !taken.contains(ip))
}

fn add_offset(base: IpAddr, offset: u64) -> IpAddr {
    match base {
        IpAddr::V4(v4) => {
            IpAddr::V4((u32::from(v4).wrapping_add(u32::try_from(offset).unwrap_or(0))).into())
        }
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6).wrapping_add(u128::from(offset))).into()),
    }
}

/// FNV-1a: stable across builds and platforms (unlike `DefaultHasher`).
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
