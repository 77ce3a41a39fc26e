//! Pods (bare or expanded from Deployments, StatefulSets, DaemonSets), WorkloadEntries,
//! ServiceEntry endpoints and selector-less Services' EndpointSlice addresses
//! -> `istio.workload.Workload`. Each source is reduced to [`Facts`];
//! what follows (enrollment, canonical names, services map, waypoint, policies) is shared.

use super::context::{Context, Dep, Unit, WorkloadInfo, WorkloadSource};
use super::pod_status::{kept_addresses, pod_addresses, pod_ready};
use super::service::{app_protocol, ip_bytes, kube_hostname, service_key};
use super::version::address_resource;
use super::waypoint::{WaypointUser, resolve_waypoint};
use super::{TranslateOptions, Warning, endpoint_slice, peer_authn};
use k8s_openapi::api::core::v1::{Container, Service};
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::LazyLock;
use weft_api::expand::DEFAULT_SERVICE_ACCOUNT;
use weft_api::istio::{Resolution, ServiceEntry, WorkloadEntry, WorkloadEntrySpec};
use weft_api::selector::labels_match;
use weft_api::{ExpandedPod, Kind, Object, ObjectRef};
use weft_proto::workload::{
    Address, Locality, NetworkMode, Port, PortList, TunnelProtocol, Workload, WorkloadStatus,
    WorkloadType, address,
};

/// Label that enrolls a namespace or pod in the ambient mesh (`ambient`) or opts a pod out
/// (`none`).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// Label with which a WorkloadEntry or ServiceEntry (for all its endpoints) says it
/// terminates HBONE itself (value `http`); only then, or with [`REDIRECTION_ANNOTATION`],
/// is it reached over HBONE.
pub const TUNNEL_LABEL: &str = "networking.istio.io/tunnel";
/// `enabled`: the workload's traffic is redirected into a node proxy (on a WorkloadEntry's
/// or ServiceEntry's annotations, as Istio reads them).
pub const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";

/// `<cluster>//Pod/<namespace>/<name>`.
#[must_use]
pub fn pod_uid(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}//Pod/{namespace}/{name}")
}

/// `<cluster>/networking.istio.io/WorkloadEntry/<namespace>/<name>`.
#[must_use]
pub fn entry_uid(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/networking.istio.io/WorkloadEntry/{namespace}/{name}")
}

/// `<cluster>/networking.istio.io/ServiceEntry/<namespace>/<entry>/<address or index>`.
pub(crate) fn entry_endpoint_uid(
    options: &TranslateOptions,
    namespace: &str,
    entry: &str,
    endpoint: &WorkloadEntrySpec,
    index: usize,
) -> String {
    let suffix = endpoint
        .address
        .clone()
        .unwrap_or_else(|| index.to_string());
    format!(
        "{}/networking.istio.io/ServiceEntry/{namespace}/{entry}/{suffix}",
        options.cluster_id
    )
}

/// How a workload names its ports (for named `targetPort`s).
enum NamedPorts<'a> {
    Containers(&'a [Container]),
    Entry(Option<&'a BTreeMap<String, u32>>),
    /// An EndpointSlice's ports, matched by the Service port's name (not its `targetPort`).
    Slice(&'a [EndpointPort]),
}

impl NamedPorts<'_> {
    fn lookup(&self, name: &str) -> Option<u32> {
        match self {
            NamedPorts::Containers(containers) => containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u32::try_from(p.container_port).ok()),
            NamedPorts::Entry(ports) => ports.and_then(|p| p.get(name).copied()),
            NamedPorts::Slice(ports) => endpoint_slice::port_named(ports, name),
        }
    }
}

/// What a workload source says about the workload.
struct Facts<'a> {
    object: ObjectRef,
    name: String,
    namespace: &'a str,
    /// What policies and PeerAuthentications select it by ([`WorkloadInfo::labels`]).
    labels: &'a BTreeMap<String, String>,
    addresses: Vec<IpAddr>,
    hostname: String,
    node: String,
    service_account: String,
    workload_name: String,
    workload_type: WorkloadType,
    healthy: bool,
    host_network: bool,
    /// Outside the mesh (a MESH_EXTERNAL ServiceEntry's endpoint, an EndpointSlice
    /// address): never reached over HBONE.
    mesh_external: bool,
    /// For WorkloadEntries and ServiceEntry endpoints: whether they opted into HBONE
    /// themselves (the namespace's dataplane mode does not enroll them, as in Istio).
    entry_tunnel: Option<bool>,
    network: String,
    ports: NamedPorts<'a>,
    locality: Option<Locality>,
    own_entry: Option<&'a ServiceEntry>,
    /// For a ServiceEntry's implicit endpoint: the one host of the entry it stands for.
    own_host: Option<&'a str>,
    /// The selector-less Service whose EndpointSlice lists this workload.
    own_service: Option<&'a Service>,
    /// Load-balancing weight (a WorkloadEntry's or endpoint's `weight`), sent as capacity.
    capacity: Option<u32>,
}

/// Translates the workload `uid`.
pub(crate) fn translate_workload(
    context: &Context<'_>,
    uid: &str,
    info: &WorkloadInfo<'_>,
) -> Unit {
    let mut warnings = Vec::new();
    let facts = match &info.source {
        WorkloadSource::Pod(index) => {
            let pod = &context.pods[*index];
            let mut facts = pod_facts(context, pod, &info.labels);
            let addresses = std::mem::take(&mut facts.addresses);
            facts.addresses = kept_addresses(context, uid, &facts.object, addresses, &mut warnings);
            facts
        }
        WorkloadSource::Entry(entry) => entry_facts(context.options, entry, &info.labels),
        WorkloadSource::EntryEndpoint { entry, index } => {
            endpoint_facts(context.options, entry, *index, &info.labels)
        }
        WorkloadSource::EntryHost { entry, host } => {
            host_facts(context.options, entry, host, &info.labels)
        }
        WorkloadSource::SliceEndpoint {
            slice,
            service,
            address,
            ..
        } => slice_facts(context.options, slice, service, *address, &info.labels),
    };
    let mut unit = build(context, uid, &facts, info.waypoint_labels());
    unit.warnings.extend(warnings);
    if let WorkloadSource::SliceEndpoint {
        slice, endpoint, ..
    } = &info.source
    {
        // the workload disappears once the pod its endpoint names becomes known
        let endpoints = slice.endpoints.as_deref().unwrap_or_default();
        let target = endpoints.get(*endpoint).and_then(|e| e.target_ref.as_ref());
        if let Some(pod) = target.filter(|t| t.kind.as_deref() == Some("Pod")) {
            unit.deps.push(Dep::Object(ObjectRef {
                kind: Kind::Pod,
                namespace: Some(pod.namespace.clone().unwrap_or(facts.namespace.to_owned())),
                name: pod.name.clone().unwrap_or_default(),
            }));
        }
    }
    unit
}

fn pod_facts<'a>(
    context: &Context<'_>,
    pod: &'a ExpandedPod,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    let spec = pod.pod.spec.as_ref();
    let (workload_name, workload_type) = workload_identity(pod);
    let workload_name = named_workload(labels).unwrap_or(workload_name);
    let object = pod.owner.clone().unwrap_or_else(|| ObjectRef {
        kind: Kind::Pod,
        namespace: Some(pod.namespace().to_owned()),
        name: pod.name().to_owned(),
    });
    let node = pod.node_name().unwrap_or_default().to_owned();
    Facts {
        object,
        name: pod.name().to_owned(),
        namespace: pod.namespace(),
        labels,
        addresses: pod_addresses(&pod.pod),
        hostname: String::new(),
        locality: node_locality(context, &node),
        node,
        service_account: pod.service_account().to_owned(),
        workload_name,
        workload_type,
        healthy: pod_ready(&pod.pod),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        mesh_external: false,
        entry_tunnel: None,
        network: context.options.network.clone(),
        ports: NamedPorts::Containers(spec.map(|s| s.containers.as_slice()).unwrap_or_default()),
        own_entry: None,
        own_host: None,
        own_service: None,
        capacity: None,
    }
}

/// Label with which a pod or WorkloadEntry names the workload telemetry reports for it.
pub const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

/// The CronJob a Job belongs to when its name is `<cronjob>-<scheduled time>` (8 to 10
/// digits, as the CronJob controller names its Jobs).
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, time) = job.rsplit_once('-')?;
    let digits = time.len();
    ((8..=10).contains(&digits) && time.bytes().all(|b| b.is_ascii_digit()) && !cron_job.is_empty())
        .then_some(cron_job)
}

/// Name and type of the workload a pod belongs to.
fn workload_identity(pod: &ExpandedPod) -> (String, WorkloadType) {
    if let Some(owner) = &pod.owner {
        return (owner.name.clone(), WorkloadType::Deployment);
    }
    let controller = pod
        .pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller.map(|o| (o.kind.as_str(), o.name.as_str())) {
        None => (pod.name().to_owned(), WorkloadType::Pod),
        Some(("Job", name)) => match cron_job_of(name) {
            Some(cron_job) => (cron_job.to_owned(), WorkloadType::Cronjob),
            None => (name.to_owned(), WorkloadType::Job),
        },
        Some(("CronJob", name)) => (name.to_owned(), WorkloadType::Cronjob),
        Some(("ReplicaSet", name)) => {
            // a Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`
            let hash = pod.labels().get("pod-template-hash").cloned();
            let deployment = hash.and_then(|hash| name.strip_suffix(&format!("-{hash}")));
            (
                deployment.unwrap_or(name).to_owned(),
                WorkloadType::Deployment,
            )
        }
        Some((_, name)) => (name.to_owned(), WorkloadType::Deployment),
    }
}

/// Locality from the node's `topology.kubernetes.io/{region,zone}` and
/// `topology.istio.io/subzone` labels.
fn node_locality(context: &Context<'_>, node: &str) -> Option<Locality> {
    let loaded = context.snapshot.get(Kind::Node, None, node)?;
    let Object::Node(node) = &loaded.object else {
        return None;
    };
    let labels = node.metadata.labels.as_ref()?;
    let get = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let locality = Locality {
        region: get("topology.kubernetes.io/region"),
        zone: get("topology.kubernetes.io/zone"),
        subzone: get("topology.istio.io/subzone"),
    };
    (locality != Locality::default()).then_some(locality)
}

fn parse_locality(value: Option<&str>) -> Option<Locality> {
    let mut parts = value?.splitn(3, '/').map(str::to_owned);
    Some(Locality {
        region: parts.next().unwrap_or_default(),
        zone: parts.next().unwrap_or_default(),
        subzone: parts.next().unwrap_or_default(),
    })
}

fn spec_facts<'a>(
    options: &TranslateOptions,
    object: ObjectRef,
    spec: &'a WorkloadEntrySpec,
    labels: &'a BTreeMap<String, String>,
    namespace: &'a str,
) -> Facts<'a> {
    let address = spec.address.as_deref().unwrap_or_default();
    let ip = address.parse::<IpAddr>().ok();
    let hostname = if ip.is_none() && !address.starts_with("unix://") {
        address.to_owned()
    } else {
        String::new()
    };
    Facts {
        name: object.name.clone(),
        workload_name: object.name.clone(),
        object,
        namespace,
        labels,
        addresses: ip.into_iter().collect(),
        hostname,
        node: String::new(),
        service_account: spec
            .service_account
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned()),
        workload_type: WorkloadType::Pod,
        healthy: true,
        host_network: false,
        mesh_external: false,
        entry_tunnel: Some(false),
        network: spec
            .network
            .clone()
            .unwrap_or_else(|| options.network.clone()),
        ports: NamedPorts::Entry(spec.ports.as_ref()),
        locality: parse_locality(spec.locality.as_deref()),
        own_entry: None,
        own_host: None,
        own_service: None,
        // 0 cannot be told from unset on the wire: leave it out (never "no capacity")
        capacity: spec.weight.filter(|weight| *weight > 0),
    }
}

/// The `kind` object `metadata` names, and its namespace (`default` when unset).
fn object_of(kind: Kind, metadata: &ObjectMeta) -> (ObjectRef, &str) {
    let namespace = (metadata.namespace.as_deref()).unwrap_or(weft_api::object::DEFAULT_NAMESPACE);
    let object = ObjectRef {
        kind,
        namespace: Some(namespace.to_owned()),
        name: metadata.name.clone().unwrap_or_default(),
    };
    (object, namespace)
}

fn entry_facts<'a>(
    options: &TranslateOptions,
    entry: &'a WorkloadEntry,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    let (object, namespace) = object_of(Kind::WorkloadEntry, &entry.metadata);
    let mut facts = spec_facts(options, object, &entry.spec, labels, namespace);
    let annotations = entry.metadata.annotations.as_ref();
    let redirected = annotations.and_then(|a| a.get(REDIRECTION_ANNOTATION));
    facts.entry_tunnel = Some(tunnels(labels, redirected, false));
    if let Some(name) = named_workload(labels) {
        facts.workload_name = name;
    }
    facts
}

/// The workload name a pod or WorkloadEntry asks telemetry to report
/// ([`WORKLOAD_NAME_LABEL`]), if any.
fn named_workload(labels: &BTreeMap<String, String>) -> Option<String> {
    labels
        .get(WORKLOAD_NAME_LABEL)
        .filter(|name| !name.is_empty())
        .cloned()
}

/// Whether an entry workload with `labels` is reached over HBONE: label
/// `networking.istio.io/tunnel: http`, or redirection `enabled` when not MESH_EXTERNAL.
fn tunnels(
    labels: &BTreeMap<String, String>,
    redirected: Option<&String>,
    mesh_external: bool,
) -> bool {
    let native = labels.get(TUNNEL_LABEL).is_some_and(|v| v == "http");
    native || (!mesh_external && redirected.is_some_and(|v| v == "enabled"))
}

fn endpoint_facts<'a>(
    options: &TranslateOptions,
    entry: &'a ServiceEntry,
    index: usize,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    let endpoint = &entry.spec.endpoints.as_deref().unwrap_or_default()[index];
    entry_member_facts(options, entry, endpoint, labels)
}

/// What an inline or implicit endpoint of `entry` takes from the entry itself (istiod
/// does the same): the labels policies select it by and that name its canonical service,
/// the tunnel (the entry's labels and redirection annotation), inside or outside the mesh.
fn entry_member_facts<'a>(
    options: &TranslateOptions,
    entry: &'a ServiceEntry,
    endpoint: &'a WorkloadEntrySpec,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    let (object, namespace) = object_of(Kind::ServiceEntry, &entry.metadata);
    let mut facts = spec_facts(options, object, endpoint, labels, namespace);
    facts.own_entry = Some(entry);
    // Location's zero value is MESH_EXTERNAL: unset means outside the mesh
    let internal = entry.spec.location == Some(weft_api::istio::Location::MeshInternal);
    facts.mesh_external = !internal;
    let annotations = entry.metadata.annotations.as_ref();
    let redirected = annotations.and_then(|a| a.get(REDIRECTION_ANNOTATION));
    facts.entry_tunnel = Some(tunnels(labels, redirected, facts.mesh_external));
    facts
}

/// The hosts of `entry` that stand for its endpoints, as in istiod: a `resolution: DNS` or
/// `DNS_ROUND_ROBIN` entry with neither endpoints nor a workload selector reaches each
/// host by its name (wildcard hosts cannot be resolved and are skipped).
pub(crate) fn implicit_endpoint_hosts(entry: &ServiceEntry) -> impl Iterator<Item = &str> {
    let spec = &entry.spec;
    let by_dns = matches!(
        spec.resolution,
        Some(Resolution::Dns | Resolution::DnsRoundRobin)
    );
    let implicit = by_dns
        && spec.endpoints.as_ref().is_none_or(Vec::is_empty)
        && spec.workload_selector.is_none();
    let hosts = spec.hosts.iter().filter(move |_| implicit);
    hosts.map(String::as_str).filter(|host| !host.contains('*'))
}

/// `<cluster>/networking.istio.io/ServiceEntry/<ns>/<entry>/<host>`: the implicit endpoint
/// of `host` (the uid an inline endpoint with that address would have).
pub(crate) fn entry_host_uid(
    options: &TranslateOptions,
    namespace: &str,
    entry: &str,
    host: &str,
) -> String {
    format!(
        "{}/networking.istio.io/ServiceEntry/{namespace}/{entry}/{host}",
        options.cluster_id
    )
}

/// The implicit endpoint of `host`: a workload with that hostname (no address; the proxy
/// resolves it), the entry's labels, member of that host's service only.
fn host_facts<'a>(
    options: &TranslateOptions,
    entry: &'a ServiceEntry,
    host: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    static UNSPECIFIED: LazyLock<WorkloadEntrySpec> = LazyLock::new(WorkloadEntrySpec::default);
    let mut facts = entry_member_facts(options, entry, &UNSPECIFIED, labels);
    facts.hostname = host.to_owned();
    facts.own_host = Some(host);
    facts
}

fn slice_facts<'a>(
    options: &TranslateOptions,
    slice: &'a EndpointSlice,
    service: &'a Service,
    address: IpAddr,
    labels: &'a BTreeMap<String, String>,
) -> Facts<'a> {
    let (object, namespace) = object_of(Kind::EndpointSlice, &slice.metadata);
    Facts {
        name: object.name.clone(),
        object,
        namespace,
        labels,
        addresses: vec![address],
        hostname: String::new(),
        node: String::new(),
        service_account: String::new(),
        workload_name: service.metadata.name.clone().unwrap_or_default(),
        workload_type: WorkloadType::Pod,
        healthy: true,
        host_network: false,
        mesh_external: true,
        entry_tunnel: None,
        network: options.network.clone(),
        ports: NamedPorts::Slice(slice.ports.as_deref().unwrap_or_default()),
        locality: None,
        own_entry: None,
        own_host: None,
        own_service: Some(service),
        capacity: None,
    }
}

/// Canonical service and revision (`docs/telemetry.md`).
fn canonical(labels: &BTreeMap<String, String>, workload_name: &str) -> (String, String) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).cloned();
    let name = first(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| workload_name.to_owned());
    let revision = first(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".to_owned());
    (name, revision)
}

fn enrolled(context: &Context<'_>, facts: &Facts<'_>) -> bool {
    if let Some(tunnel) = facts.entry_tunnel {
        return tunnel;
    }
    if facts.host_network || facts.mesh_external {
        return false;
    }
    match facts.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) {
        Some("ambient") => true,
        Some("none") => false,
        _ => context
            .snapshot
            .namespace_labels(facts.namespace)
            .get(DATAPLANE_MODE_LABEL)
            .is_some_and(|v| v == "ambient"),
    }
}

fn build(
    context: &Context<'_>,
    uid: &str,
    facts: &Facts<'_>,
    waypoint_labels: Option<&BTreeMap<String, String>>,
) -> Unit {
    let mut unit = Unit::default();
    unit.deps.push(Dep::Object(facts.object.clone()));
    unit.deps.push(Dep::Object(ObjectRef {
        kind: Kind::Namespace,
        namespace: None,
        name: facts.namespace.to_owned(),
    }));
    if !facts.node.is_empty() {
        unit.deps.push(Dep::Object(ObjectRef {
            kind: Kind::Node,
            namespace: None,
            name: facts.node.clone(),
        }));
    }
    let (canonical_name, canonical_revision) = canonical(facts.labels, &facts.workload_name);
    let tunnel = if enrolled(context, facts) {
        TunnelProtocol::Hbone
    } else {
        TunnelProtocol::None
    };
    let mut services = services_map(context, facts, &mut unit);
    services.extend(endpoint_slice::member_services(context, uid, &mut unit));
    let waypoint = waypoint_labels.and_then(|labels| {
        let user = WaypointUser::Workload;
        resolve_waypoint(
            context,
            facts.namespace,
            labels,
            user,
            &facts.object,
            &mut unit,
        )
    });
    let authorization_policies = policies_for(context, facts, &mut unit);
    let workload = Workload {
        uid: uid.to_owned(),
        name: facts.name.clone(),
        namespace: facts.namespace.to_owned(),
        addresses: facts.addresses.iter().map(|ip| ip_bytes(*ip)).collect(),
        hostname: facts.hostname.clone(),
        network: facts.network.clone(),
        tunnel_protocol: tunnel.into(),
        trust_domain: context.options.trust_domain.clone(),
        service_account: facts.service_account.clone(),
        waypoint,
        node: facts.node.clone(),
        canonical_name,
        canonical_revision,
        workload_type: facts.workload_type.into(),
        workload_name: facts.workload_name.clone(),
        services,
        authorization_policies,
        status: if facts.healthy {
            WorkloadStatus::Healthy
        } else {
            WorkloadStatus::Unhealthy
        }
        .into(),
        cluster_id: context.options.cluster_id.clone(),
        locality: facts.locality.clone(),
        network_mode: if facts.host_network {
            NetworkMode::HostNetwork
        } else {
            NetworkMode::Standard
        }
        .into(),
        capacity: facts.capacity,
        ..Workload::default()
    };
    let aliases = facts
        .addresses
        .iter()
        .map(|ip| format!("{}/{ip}", facts.network))
        .collect();
    let message = Address {
        r#type: Some(address::Type::Workload(workload)),
    };
    unit.resource = Some(address_resource(uid.to_owned(), aliases, message));
    unit
}

/// `<ns>/<hostname>` -> ports, for every Service and ServiceEntry that selects the workload.
fn services_map(
    context: &Context<'_>,
    facts: &Facts<'_>,
    unit: &mut Unit,
) -> HashMap<String, PortList> {
    let mut map = HashMap::new();
    for svc in context
        .kube_services_by_ns
        .get(facts.namespace)
        .into_iter()
        .flatten()
    {
        if !service_selects(svc, facts) {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        unit.deps.push(Dep::Object(ObjectRef {
            kind: Kind::Service,
            namespace: Some(facts.namespace.to_owned()),
            name,
        }));
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let hostname = kube_hostname(svc, context.options);
        let resolved = ports
            .iter()
            .filter_map(|port| kube_port(port, facts, &hostname, unit))
            .collect();
        map.insert(
            service_key(facts.namespace, &hostname),
            PortList { ports: resolved },
        );
    }
    let selecting = context
        .entries_by_ns
        .get(facts.namespace)
        .into_iter()
        .flatten()
        .filter(|entry| match facts.own_entry {
            // an inline endpoint belongs to its own entry only
            Some(own) => std::ptr::eq(own, **entry),
            None => entry
                .spec
                .workload_selector
                .as_ref()
                .is_some_and(|s| !s.labels.is_empty() && labels_match(&s.labels, facts.labels)),
        });
    for entry in selecting {
        let name = entry.metadata.name.clone().unwrap_or_default();
        unit.deps.push(Dep::Object(ObjectRef {
            kind: Kind::ServiceEntry,
            namespace: Some(facts.namespace.to_owned()),
            name,
        }));
        let ports: Vec<Port> = entry
            .spec
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                service_port: p.number,
                target_port: p
                    .name
                    .as_deref()
                    .filter(|_| matches!(facts.ports, NamedPorts::Entry(_)))
                    .and_then(|n| facts.ports.lookup(n))
                    .or(p.target_port)
                    .unwrap_or(p.number),
                app_protocol: 0,
            })
            .collect();
        let hosts = entry.spec.hosts.iter().filter(|h| !h.contains('*'));
        for host in hosts.filter(|h| facts.own_host.is_none_or(|own| own == h.as_str())) {
            map.insert(
                service_key(facts.namespace, host),
                PortList {
                    ports: ports.clone(),
                },
            );
        }
    }
    map
}

/// Whether the Service's selector matches the workload, or the workload is an endpoint of
/// the Service's own EndpointSlice. A ServiceEntry's inline endpoint belongs to that entry
/// alone (as in istiod): no Service selects it, whatever its labels.
fn service_selects(svc: &Service, facts: &Facts<'_>) -> bool {
    if facts.own_entry.is_some() {
        return false;
    }
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty());
    match selector {
        Some(selector) => labels_match(selector, facts.labels),
        None => facts.own_service.is_some_and(|own| std::ptr::eq(own, svc)),
    }
}

/// One Service port on this workload; `None` (with a warning) when a named target port is
/// not declared by the workload.
fn kube_port(
    port: &k8s_openapi::api::core::v1::ServicePort,
    facts: &Facts<'_>,
    hostname: &str,
    unit: &mut Unit,
) -> Option<Port> {
    let service_port = u32::try_from(port.port).ok()?;
    if let NamedPorts::Slice(slice_ports) = facts.ports {
        let lists = [slice_ports];
        return endpoint_slice::slice_port(port, &lists, &facts.object, hostname, unit);
    }
    let target_port = match &port.target_port {
        None => service_port,
        Some(IntOrString::Int(number)) => u32::try_from(*number).ok()?,
        Some(IntOrString::String(name)) => {
            match name.parse().ok().or_else(|| facts.ports.lookup(name)) {
                Some(number) => number,
                None => {
                    let message = format!(
                        "service {hostname} port {service_port} targets port name {name:?}, which workload {} does not \
                     declare; that port is left out for this workload",
                        facts.name
                    );
                    unit.warnings.push(Warning {
                        object: facts.object.clone(),
                        message,
                    });
                    return None;
                }
            }
        }
    };
    Some(wire_port(port, service_port, target_port))
}

/// The wire port for Service `port` (`service_port`) reaching `target_port`, its protocol
/// from `appProtocol` or the port's name.
pub(crate) fn wire_port(
    port: &k8s_openapi::api::core::v1::ServicePort,
    service_port: u32,
    target_port: u32,
) -> Port {
    let protocol = app_protocol(port.app_protocol.as_deref(), port.name.as_deref());
    Port {
        service_port,
        target_port,
        app_protocol: protocol.into(),
    }
}

/// Selector-scoped policies (own namespace and root namespace) that select the workload, and
/// the compiled mTLS policy for its effective PeerAuthentication mode.
fn policies_for(context: &Context<'_>, facts: &Facts<'_>, unit: &mut Unit) -> Vec<String> {
    let root = context.options.root_namespace.as_str();
    let namespaces = if facts.namespace == root {
        vec![root]
    } else {
        vec![facts.namespace, root]
    };
    let mut names = Vec::new();
    for namespace in namespaces {
        for policy in context
            .selector_policies_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
        {
            if labels_match(&policy.labels, facts.labels) {
                unit.deps.push(Dep::Selection(policy.object.clone()));
                names.push(policy.name.clone());
            }
        }
    }
    let (mtls, deps) = peer_authn::workload_mtls(context, facts.namespace, facts.labels);
    unit.deps.extend(deps);
    names.extend(mtls);
    names.sort();
    names.dedup();
    names
}
