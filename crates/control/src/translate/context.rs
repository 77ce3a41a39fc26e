//! [`Context`]: one snapshot indexed for translation (which object produces which resource,
//! what selects what, which waypoint serves what), and [`Unit`], the result of translating
//! one resource key.

use super::l7::{WaypointIndex, waypoint_gateways, waypoint_key};
use super::peer_authn::{MtlsIndex, mtls_policies};
use super::resource::RESOURCE_TYPES;
use super::{
    Resource, ResourceKey, TranslateOptions, Warning, authz, endpoint_slice, pod_status, service,
    workload,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;
use weft_api::istio::{AuthorizationPolicy, ServiceEntry, WorkloadEntry};
use weft_api::selector::labels_match;
use weft_api::{ConfigSnapshot, ExpandedPod, Kind, ObjectRef};
use weft_proto::security::Authorization;

/// What a resource depends on. `Selection` is the part of a policy that decides which
/// workloads list it (its selector), so editing a policy's rules does not touch workloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Dep {
    Object(ObjectRef),
    Selection(ObjectRef),
}

/// The result of translating one resource key: the resource (none if nothing produces the
/// key any more), warnings, and the objects it was computed from.
#[derive(Default)]
pub(crate) struct Unit {
    pub resource: Option<Resource>,
    pub warnings: Vec<Warning>,
    pub deps: Vec<Dep>,
}

/// Where a workload comes from.
pub(crate) enum WorkloadSource<'a> {
    Pod(usize),
    Entry(&'a WorkloadEntry),
    EntryEndpoint {
        entry: &'a ServiceEntry,
        index: usize,
    },
    /// The implicit endpoint of a DNS-resolved ServiceEntry without endpoints: `host` itself,
    /// resolved by the proxy.
    EntryHost {
        entry: &'a ServiceEntry,
        host: &'a str,
    },
    /// One address of `slice.endpoints[endpoint]`, an endpoint of the selector-less `service`.
    SliceEndpoint {
        slice: &'a EndpointSlice,
        service: &'a Service,
        endpoint: usize,
        address: IpAddr,
    },
}

/// A workload's identity facts needed for selection, plus its source.
pub(crate) struct WorkloadInfo<'a> {
    pub namespace: String,
    /// What policies and PeerAuthentications select it by (a ServiceEntry endpoint: its
    /// entry's labels, as in istiod).
    pub labels: BTreeMap<String, String>,
    pub source: WorkloadSource<'a>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl WorkloadInfo<'_> {
    /// What its waypoint is chosen by (`istio.io/use-waypoint`, with its namespace's): its
    /// labels, a ServiceEntry endpoint's own labels; `None` for what istiod gives no
    /// waypoint (a DNS entry's implicit endpoint, an EndpointSlice address).
    pub fn waypoint_labels(&self) -> Option<&BTreeMap<String, String>> {
        match &self.source {
            WorkloadSource::Pod(_) | WorkloadSource::Entry(_) => Some(&self.labels),
            WorkloadSource::EntryEndpoint { entry, index } => {
                let endpoint = entry
                    .spec
                    .endpoints
                    .as_deref()
                    .unwrap_or_default()
                    .get(*index);
                Some(
                    endpoint
                        .and_then(|e| e.labels.as_ref())
                        .unwrap_or(&NO_LABELS),
                )
            }
            WorkloadSource::EntryHost { .. } | WorkloadSource::SliceEndpoint { .. } => None,
        }
    }
}

/// Where a service comes from.
pub(crate) enum ServiceSource<'a> {
    Kube(&'a Service),
    Entry {
        entry: &'a ServiceEntry,
        host: &'a str,
    },
}

/// A translated, selector-scoped AuthorizationPolicy: who it selects.
pub(crate) struct SelectorPolicy {
    pub object: ObjectRef,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One snapshot, indexed.
pub(crate) struct Context<'a> {
    pub snapshot: &'a ConfigSnapshot,
    pub options: &'a TranslateOptions,
    pub pods: std::sync::Arc<[ExpandedPod]>,
    pub workloads: BTreeMap<String, WorkloadInfo<'a>>,
    pub services: BTreeMap<String, Vec<ServiceSource<'a>>>,
    /// Resource keys produced directly by a WorkloadEntry, ServiceEntry, Service or policy.
    pub produced_by: HashMap<ObjectRef, Vec<ResourceKey>>,
    pub kube_services_by_ns: HashMap<String, Vec<&'a Service>>,
    pub entries_by_ns: HashMap<String, Vec<&'a ServiceEntry>>,
    pub selector_policies_by_ns: HashMap<String, Vec<SelectorPolicy>>,
    pub policies: BTreeMap<String, &'a AuthorizationPolicy>,
    pub mtls: MtlsIndex<'a>,
    pub mtls_policies: BTreeMap<String, Authorization>,
    /// Pod workload uid -> the selector-less Services (and their slices) listing that pod.
    pub slice_members: HashMap<String, Vec<(&'a Service, &'a EndpointSlice)>>,
    /// IPs that more than one pod workload reports, with those workloads' uids.
    pub shared_pod_ips: HashMap<IpAddr, Vec<String>>,
    /// VIPs that more than one Service or ServiceEntry claims, the keeper first.
    pub vip_claims: HashMap<IpAddr, Vec<ObjectRef>>,
    /// Which services and workloads each waypoint serves (computed on first use).
    waypoints: OnceLock<WaypointIndex>,
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| weft_api::object::DEFAULT_NAMESPACE.to_owned())
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn object_ref(
    kind: Kind,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some(namespace_of(meta)),
        name: name_of(meta),
    }
}

impl<'a> Context<'a> {
    /// Indexes `snapshot`.
    pub fn new(snapshot: &'a ConfigSnapshot, options: &'a TranslateOptions) -> Self {
        let mtls = MtlsIndex::new(snapshot, options);
        let mtls_policies = mtls_policies(&mtls, options);
        let mut context = Context {
            snapshot,
            options,
            pods: snapshot.pods(),
            workloads: BTreeMap::new(),
            services: BTreeMap::new(),
            produced_by: HashMap::new(),
            kube_services_by_ns: HashMap::new(),
            entries_by_ns: HashMap::new(),
            selector_policies_by_ns: HashMap::new(),
            policies: BTreeMap::new(),
            mtls,
            mtls_policies,
            slice_members: HashMap::new(),
            shared_pod_ips: HashMap::new(),
            vip_claims: weft_api::analyze::vip_claims(snapshot),
            waypoints: OnceLock::new(),
        };
        context.index_pods();
        context.index_workload_entries();
        context.index_services();
        context.index_service_entries();
        context.index_endpoint_slices();
        context.index_policies();
        context.index_waypoints();
        context.index_gateways();
        context
    }

    /// Which services and workloads each waypoint serves.
    pub fn waypoint_index(&self) -> &WaypointIndex {
        self.waypoints.get_or_init(|| WaypointIndex::new(self))
    }

    fn index_waypoints(&mut self) {
        let gateways: Vec<_> = waypoint_gateways(self.snapshot).collect();
        for (object, name) in gateways {
            self.produced(object, waypoint_key(name));
        }
    }

    fn index_gateways(&mut self) {
        let names = super::gateway::gateway_names(self);
        for name in names {
            let Some((namespace, gateway)) = name.split_once('/') else {
                continue;
            };
            let object = ObjectRef {
                kind: Kind::Gateway,
                namespace: Some(namespace.to_owned()),
                name: gateway.to_owned(),
            };
            self.produced(object, super::gateway::gateway_key(name));
        }
    }

    fn produced(&mut self, object: ObjectRef, key: ResourceKey) {
        self.produced_by.entry(object).or_default().push(key);
    }

    /// Pod workloads; a finished pod (Succeeded, Failed) is none, though it may keep its IP.
    fn index_pods(&mut self) {
        for (index, pod) in self.pods.iter().enumerate() {
            if pod_status::pod_finished(&pod.pod) {
                continue;
            }
            let uid = workload::pod_uid(&self.options.cluster_id, pod.namespace(), pod.name());
            let info = WorkloadInfo {
                namespace: pod.namespace().to_owned(),
                labels: pod.labels(),
                source: WorkloadSource::Pod(index),
            };
            self.workloads.insert(uid, info);
        }
        let pods = self
            .workloads
            .iter()
            .filter_map(|(uid, info)| match info.source {
                WorkloadSource::Pod(index) => Some((uid.clone(), &self.pods[index])),
                _ => None,
            });
        self.shared_pod_ips = pod_status::shared_pod_ips(pods);
    }

    /// The pod workloads that share an IP with another pod.
    pub fn shared_ip_keys(&self) -> impl Iterator<Item = ResourceKey> + '_ {
        let uids = self.shared_pod_ips.values().flatten();
        uids.map(|uid| ResourceKey::address(uid.clone()))
    }

    /// The resources of every object that claims a VIP together with `object`.
    pub fn vip_rivals(&self, object: &ObjectRef) -> Vec<ResourceKey> {
        let claims = self.vip_claims.values().filter(|c| c.contains(object));
        let rivals = claims.flatten().filter_map(|o| self.produced_by.get(o));
        rivals.flatten().cloned().collect()
    }

    fn index_workload_entries(&mut self) {
        let snapshot = self.snapshot;
        for (entry, _) in snapshot.workload_entries() {
            let namespace = namespace_of(&entry.metadata);
            let uid = workload::entry_uid(
                &self.options.cluster_id,
                &namespace,
                &name_of(&entry.metadata),
            );
            let labels = entry.workload_labels();
            self.produced(
                object_ref(Kind::WorkloadEntry, &entry.metadata),
                ResourceKey::address(uid.clone()),
            );
            self.workloads.insert(
                uid,
                WorkloadInfo {
                    namespace,
                    labels,
                    source: WorkloadSource::Entry(entry),
                },
            );
        }
    }

    fn index_services(&mut self) {
        let snapshot = self.snapshot;
        for (svc, _) in snapshot.services() {
            let namespace = namespace_of(&svc.metadata);
            let key = service::service_key(&namespace, &service::kube_hostname(svc, self.options));
            self.produced(
                object_ref(Kind::Service, &svc.metadata),
                ResourceKey::address(key.clone()),
            );
            self.services
                .entry(key)
                .or_default()
                .push(ServiceSource::Kube(svc));
            self.kube_services_by_ns
                .entry(namespace)
                .or_default()
                .push(svc);
        }
    }

    fn index_service_entries(&mut self) {
        let snapshot = self.snapshot;
        for (entry, _) in snapshot.service_entries() {
            let namespace = namespace_of(&entry.metadata);
            let object = object_ref(Kind::ServiceEntry, &entry.metadata);
            for host in &entry.spec.hosts {
                let key = service::service_key(&namespace, host);
                self.produced(object.clone(), ResourceKey::address(key.clone()));
                self.services
                    .entry(key)
                    .or_default()
                    .push(ServiceSource::Entry { entry, host });
            }
            for (index, endpoint) in entry.spec.endpoints.iter().flatten().enumerate() {
                let uid = workload::entry_endpoint_uid(
                    self.options,
                    &namespace,
                    &object.name,
                    endpoint,
                    index,
                );
                self.produced(object.clone(), ResourceKey::address(uid.clone()));
                // policies select an inline endpoint by its entry's labels, as in istiod (its
                // own labels choose only its waypoint)
                let info = WorkloadInfo {
                    namespace: namespace.clone(),
                    labels: entry.metadata.labels.clone().unwrap_or_default(),
                    source: WorkloadSource::EntryEndpoint { entry, index },
                };
                self.workloads.insert(uid, info);
            }
            for host in workload::implicit_endpoint_hosts(entry) {
                let uid = workload::entry_host_uid(self.options, &namespace, &object.name, host);
                self.produced(object.clone(), ResourceKey::address(uid.clone()));
                let info = WorkloadInfo {
                    namespace: namespace.clone(),
                    labels: entry.metadata.labels.clone().unwrap_or_default(),
                    source: WorkloadSource::EntryHost { entry, host },
                };
                self.workloads.insert(uid, info);
            }
            self.entries_by_ns.entry(namespace).or_default().push(entry);
        }
    }

    /// Workloads of selector-less Services' EndpointSlices, and the Service memberships of
    /// the known pods those slices list (after pods and Services).
    fn index_endpoint_slices(&mut self) {
        let index = endpoint_slice::index_slices(self);
        for slice_workload in index.workloads {
            for producer in slice_workload.producers {
                self.produced(producer, ResourceKey::address(slice_workload.uid.clone()));
            }
            self.workloads
                .insert(slice_workload.uid, slice_workload.info);
        }
        for member in index.members {
            for producer in member.producers {
                self.produced(producer, ResourceKey::address(member.pod_uid.clone()));
            }
            let memberships = self.slice_members.entry(member.pod_uid).or_default();
            memberships.push((member.service, member.slice));
        }
    }

    fn index_policies(&mut self) {
        let snapshot = self.snapshot;
        for (policy, _) in snapshot.authorization_policies() {
            let object = object_ref(Kind::AuthorizationPolicy, &policy.metadata);
            let name = authz::policy_key(policy);
            self.produced(object.clone(), ResourceKey::authorization(name.clone()));
            self.policies.insert(name.clone(), policy);
            if let Some(labels) = authz::selection(policy) {
                let namespace = object.namespace.clone().unwrap_or_default();
                let entry = SelectorPolicy {
                    object,
                    name,
                    labels: labels.clone(),
                };
                self.selector_policies_by_ns
                    .entry(namespace)
                    .or_default()
                    .push(entry);
            }
        }
    }

    /// Workload uids in `namespace` (every namespace when `None`) whose labels carry
    /// `selector` (`None` selects all of them).
    pub fn workloads_matching(
        &self,
        namespace: Option<&str>,
        selector: Option<&BTreeMap<String, String>>,
    ) -> Vec<ResourceKey> {
        self.workloads
            .iter()
            .filter(|(_, info)| namespace.is_none_or(|ns| info.namespace == ns))
            .filter(|(_, info)| selector.is_none_or(|s| labels_match(s, &info.labels)))
            .map(|(uid, _)| ResourceKey::address(uid.clone()))
            .collect()
    }

    /// Every resource key this snapshot produces (or raises warnings under).
    pub fn all_keys(&self) -> Vec<ResourceKey> {
        RESOURCE_TYPES
            .iter()
            .flat_map(|t| {
                let names = (t.names)(self);
                names
                    .into_iter()
                    .map(|name| ResourceKey::new(t.type_url, name))
            })
            .collect()
    }

    /// Translates one resource key (nothing for a type no translation unit produces).
    pub fn translate(&self, key: &ResourceKey) -> Unit {
        match RESOURCE_TYPES.iter().find(|t| t.type_url == key.type_url) {
            Some(resource_type) => (resource_type.translate)(self, &key.name),
            None => Unit::default(),
        }
    }
}

/// Names of the Address resources: workload uids and service keys.
pub(crate) fn address_names(context: &Context<'_>) -> Vec<String> {
    let workloads = context.workloads.keys();
    workloads.chain(context.services.keys()).cloned().collect()
}

/// Names of the Authorization resources: policies and compiled mTLS policies.
pub(crate) fn authorization_names(context: &Context<'_>) -> Vec<String> {
    let policies = context.policies.keys();
    policies
        .chain(context.mtls_policies.keys())
        .cloned()
        .collect()
}

/// The Address unit: a workload or a service.
pub(crate) fn translate_address(context: &Context<'_>, name: &str) -> Unit {
    if let Some(info) = context.workloads.get(name) {
        workload::translate_workload(context, name, info)
    } else if let Some(sources) = context.services.get(name) {
        service::translate_service(context, name, sources)
    } else {
        Unit::default()
    }
}

/// The Authorization unit: a compiled mTLS policy or an AuthorizationPolicy; the compiled
/// one wins a name both claim (validation refuses such AuthorizationPolicy names: STRICT
/// enforcement must never be replaced by a user's policy).
pub(crate) fn translate_authorization(context: &Context<'_>, name: &str) -> Unit {
    if let Some(policy) = context.mtls_policies.get(name) {
        super::peer_authn::mtls_unit(context, name, policy)
    } else if let Some(policy) = context.policies.get(name) {
        authz::translate_policy_unit(context, name, policy)
    } else {
        Unit::default()
    }
}
