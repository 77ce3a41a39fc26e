//! Builds a [`MeshState`] snapshot (all indexes) from validated resources.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::{AddressRecord, Endpoint, MeshService, MeshState, MeshWorkload, WorkloadRecord};
use weft_policy::{CompiledPolicy, PolicySet, Scope};

/// Policies grouped by how they are selected.
struct PolicyScopes<'a> {
    by_key: &'a BTreeMap<String, Arc<CompiledPolicy>>,
    global: Vec<Arc<CompiledPolicy>>,
    by_namespace: HashMap<&'a str, Vec<Arc<CompiledPolicy>>>,
}

impl<'a> PolicyScopes<'a> {
    fn new(by_key: &'a BTreeMap<String, Arc<CompiledPolicy>>) -> Self {
        let mut global = Vec::new();
        let mut by_namespace: HashMap<&str, Vec<_>> = HashMap::new();
        for policy in by_key.values() {
            match policy.scope() {
                Scope::Global => global.push(policy.clone()),
                Scope::Namespace => by_namespace
                    .entry(policy.namespace())
                    .or_default()
                    .push(policy.clone()),
                Scope::WorkloadSelector => {}
            }
        }
        Self {
            by_key,
            global,
            by_namespace,
        }
    }

    /// GLOBAL policies, NAMESPACE policies of the workload's namespace, and the selector
    /// policies the workload lists in `authorization_policies`.
    fn for_workload(&self, record: &WorkloadRecord) -> PolicySet {
        let namespace = self
            .by_namespace
            .get(record.proto.namespace.as_str())
            .into_iter()
            .flatten();
        let mut missing = Vec::new();
        let selected = record
            .proto
            .authorization_policies
            .iter()
            .filter_map(|key| {
                let found = self.by_key.get(key).cloned();
                if found.is_none() {
                    missing.push(key.clone());
                }
                found
            })
            .collect::<Vec<_>>();
        let all = self.global.iter().chain(namespace).cloned().chain(selected);
        PolicySet::new(all, missing)
    }
}

impl MeshState {
    /// Builds all indexes. Connection counters are carried over from `previous` for
    /// workloads that keep their uid.
    pub(crate) fn build<'r>(
        generation: u64,
        addresses: impl Iterator<Item = &'r AddressRecord>,
        policies: &BTreeMap<String, Arc<CompiledPolicy>>,
        previous: &MeshState,
    ) -> Self {
        let scopes = PolicyScopes::new(policies);
        let mut state = Self {
            generation,
            policies: policies.clone(),
            ..Self::default()
        };
        let mut endpoints: HashMap<&str, Vec<Endpoint>> = HashMap::new();
        let mut services = Vec::new();
        for record in addresses {
            match record {
                AddressRecord::Service(service) => services.push(service),
                AddressRecord::Workload(record) => {
                    let active = previous
                        .workload_by_uid(&record.proto.uid)
                        .map_or_else(|| Arc::new(AtomicUsize::new(0)), |w| w.counter().clone());
                    let workload = Arc::new(MeshWorkload::new(record.clone(), active));
                    let policies = Arc::new(scopes.for_workload(record));
                    state
                        .workload_policies
                        .insert(record.proto.uid.clone(), policies);
                    for (key, ports) in &record.service_ports {
                        endpoints.entry(key).or_default().push(Endpoint {
                            workload: workload.clone(),
                            ports: ports.clone(),
                        });
                    }
                    state.index_workload(workload);
                }
            }
        }
        for record in services {
            let mut members = endpoints.remove(record.key.as_str()).unwrap_or_default();
            members.sort_by(|a, b| a.workload.uid().cmp(b.workload.uid()));
            let service = Arc::new(MeshService::new(record.clone(), members));
            for (network, ip) in &record.vips {
                state
                    .services_by_vip
                    .entry(ip.to_canonical())
                    .or_default()
                    .push((network.clone(), service.clone()));
            }
            state.services_by_key.insert(record.key.clone(), service);
        }
        state
    }

    fn index_workload(&mut self, workload: Arc<MeshWorkload>) {
        for ip in workload.addresses() {
            self.workloads_by_ip
                .entry(ip.to_canonical())
                .or_default()
                .push(workload.clone());
        }
        let proto = workload.proto();
        self.workloads_by_name.insert(
            format!("{}/{}", proto.namespace, proto.name),
            workload.clone(),
        );
        self.workloads_by_uid.insert(proto.uid.clone(), workload);
    }
}
