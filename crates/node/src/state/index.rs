//! [`Index`]: the writer side of the mesh state. It applies validated resources one at a
//! time to a working [`MeshState`] and to indexes only the writer needs (service members,
//! policy scopes), touching only the entries a change affects. [`Index::publish`] then
//! refreshes each service and policy set the delta dirtied, once, and returns a snapshot
//! that shares every untouched shard with the previous one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::mem;
use std::sync::Arc;

use super::scopes::{Affected, PolicyScopes};
use super::{AddressRecord, Endpoint, MeshService, MeshState, MeshWorkload};
use super::{ServiceRecord, WorkloadRecord};
use weft_policy::CompiledPolicy;

/// The working state and the writer-only indexes.
#[derive(Debug, Default)]
pub(super) struct Index {
    state: MeshState,
    /// Endpoints per service key in workload uid order, kept for keys whose service has
    /// not arrived (yet) too.
    members: HashMap<String, BTreeMap<String, Endpoint>>,
    scopes: PolicyScopes,
    /// Services whose record or members changed in this delta.
    dirty_services: HashSet<String>,
    /// Workloads whose policy set may have changed in this delta.
    dirty_policies: HashSet<String>,
    /// A GLOBAL policy changed: every workload's set is recomputed.
    all_policies_dirty: bool,
}

impl Index {
    /// Adds or replaces the workload or service `record`.
    pub(super) fn put_address(&mut self, record: AddressRecord) {
        match record {
            AddressRecord::Workload(record) => self.put_workload(record),
            AddressRecord::Service(record) => self.put_service(record),
        }
    }

    /// Removes the workload or service named `name` (a workload uid or service key).
    pub(super) fn remove_address(&mut self, name: &str) {
        self.remove_workload(name);
        self.remove_service(name);
    }

    /// Adds or replaces the policy `name`.
    pub(super) fn put_policy(&mut self, name: String, policy: Arc<CompiledPolicy>) {
        if let Some(old) = self.state.policies.insert(name.clone(), policy.clone()) {
            self.scopes.remove_policy(&name, &old);
            self.mark_affected(&name, &old);
        }
        self.scopes.add_policy(&name, &policy);
        self.mark_affected(&name, &policy);
    }

    /// Removes the policy `name`.
    pub(super) fn remove_policy(&mut self, name: &str) {
        if let Some(old) = self.state.policies.remove(name) {
            self.scopes.remove_policy(name, &old);
            self.mark_affected(name, &old);
        }
    }

    /// Makes the state exactly `addresses` and `policies`: removes every other name, then
    /// puts each given resource (connection counters survive for workloads that stay).
    pub(super) fn replace(
        &mut self,
        addresses: &BTreeMap<String, AddressRecord>,
        policies: &BTreeMap<String, Arc<CompiledPolicy>>,
    ) {
        let stale: Vec<String> = (self.state.workloads_by_uid.iter().map(|(k, _)| k))
            .chain(self.state.services_by_key.iter().map(|(k, _)| k))
            .filter(|name| !addresses.contains_key(*name))
            .cloned()
            .collect();
        stale.iter().for_each(|name| self.remove_address(name));
        let stale: Vec<String> = (self.state.policies.iter().map(|(k, _)| k))
            .filter(|name| !policies.contains_key(*name))
            .cloned()
            .collect();
        stale.iter().for_each(|name| self.remove_policy(name));
        addresses.values().for_each(|r| self.put_address(r.clone()));
        for (name, policy) in policies {
            self.put_policy(name.clone(), policy.clone());
        }
    }

    /// Finishes the delta (rebuilds dirtied services and policy sets) and returns the
    /// snapshot to publish as `generation`.
    pub(super) fn publish(&mut self, generation: u64) -> MeshState {
        for key in mem::take(&mut self.dirty_services) {
            if let Some(service) = self.state.services_by_key.get(key.as_str()) {
                self.set_service(service.record().clone());
            }
        }
        let dirty = mem::take(&mut self.dirty_policies);
        if mem::take(&mut self.all_policies_dirty) {
            let all: Vec<_> = self.state.workloads_by_uid.values().cloned().collect();
            all.iter().for_each(|w| self.refresh_policies(w));
        } else {
            for uid in dirty {
                if let Some(workload) = self.state.workloads_by_uid.get(uid.as_str()).cloned() {
                    self.refresh_policies(&workload);
                }
            }
        }
        self.state.generation = generation;
        self.state.clone()
    }

    fn put_workload(&mut self, record: Arc<WorkloadRecord>) {
        let uid = record.proto.uid.clone();
        self.remove_service(&uid);
        let old = self.state.workloads_by_uid.get(uid.as_str()).cloned();
        let counter = match &old {
            Some(old) => {
                self.unindex_workload(old);
                old.counter().clone()
            }
            None => Arc::default(),
        };
        self.index_workload(Arc::new(MeshWorkload::new(record, counter)));
    }

    fn remove_workload(&mut self, uid: &str) {
        if let Some(old) = self.state.workloads_by_uid.remove(uid) {
            self.unindex_workload(&old);
            self.state.workload_policies.remove(uid);
            self.dirty_policies.remove(uid);
        }
    }

    fn index_workload(&mut self, workload: Arc<MeshWorkload>) {
        let record = workload.record().clone();
        let uid = &record.proto.uid;
        for ip in workload.addresses() {
            let list = self
                .state
                .workloads_by_ip
                .entry_or_default(ip.to_canonical());
            insert_by_uid(list, &workload);
        }
        let list = self
            .state
            .workloads_by_name
            .entry_or_default(name_key(&record));
        insert_by_uid(list, &workload);
        for (key, ports) in &record.service_ports {
            let endpoint = Endpoint {
                workload: workload.clone(),
                ports: ports.clone(),
            };
            let members = self.members.entry(key.clone()).or_default();
            members.insert(uid.clone(), endpoint);
            self.dirty_services.insert(key.clone());
        }
        self.scopes.add_workload(&record);
        self.dirty_policies.insert(uid.clone());
        self.state.workloads_by_uid.insert(uid.clone(), workload);
    }

    /// Removes `old` from every index but `workloads_by_uid` and its policy set.
    fn unindex_workload(&mut self, old: &MeshWorkload) {
        let uid = old.uid();
        for ip in old.addresses() {
            let ip = ip.to_canonical();
            self.state
                .workloads_by_ip
                .update(&ip, |l| remove_uid(l, uid));
        }
        let name = name_key(old.record());
        self.state
            .workloads_by_name
            .update(name.as_str(), |l| remove_uid(l, uid));
        for (key, _) in &old.record().service_ports {
            if let Some(members) = self.members.get_mut(key) {
                members.remove(uid);
                if members.is_empty() {
                    self.members.remove(key);
                }
            }
            self.dirty_services.insert(key.clone());
        }
        self.scopes.remove_workload(old.record());
    }

    fn put_service(&mut self, record: Arc<ServiceRecord>) {
        self.remove_workload(&record.key);
        self.set_service(record);
    }

    fn remove_service(&mut self, key: &str) {
        if let Some(old) = self.state.services_by_key.remove(key) {
            self.unindex_vips(&old);
            self.dirty_services.remove(key);
        }
    }

    /// (Re)builds the service of `record` with its current members.
    fn set_service(&mut self, record: Arc<ServiceRecord>) {
        let key = &record.key;
        let endpoints = self
            .members
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let service = Arc::new(MeshService::new(record.clone(), endpoints));
        let old = self
            .state
            .services_by_key
            .insert(key.clone(), service.clone());
        if let Some(old) = old {
            self.unindex_vips(&old);
        }
        for (network, ip) in &record.vips {
            let list = self
                .state
                .services_by_vip
                .entry_or_default(ip.to_canonical());
            let at = list.partition_point(|(_, s)| s.key() <= key.as_str());
            list.insert(at, (network.clone(), service.clone()));
        }
        self.dirty_services.remove(key);
    }

    fn unindex_vips(&mut self, old: &MeshService) {
        for (_, ip) in &old.record().vips {
            self.state
                .services_by_vip
                .update(&ip.to_canonical(), |list| {
                    list.retain(|(_, s)| s.key() != old.key());
                    !list.is_empty()
                });
        }
    }

    fn mark_affected(&mut self, name: &str, policy: &CompiledPolicy) {
        match self.scopes.affected(name, policy) {
            Affected::All => self.all_policies_dirty = true,
            Affected::Some(uids) => self.dirty_policies.extend(uids.into_iter().cloned()),
        }
    }

    fn refresh_policies(&mut self, workload: &MeshWorkload) {
        let set = self
            .scopes
            .policy_set(workload.record(), &self.state.policies);
        self.state
            .workload_policies
            .insert(workload.uid().to_owned(), Arc::new(set));
    }
}

/// `<namespace>/<name>`, the key of `workloads_by_name`.
fn name_key(record: &WorkloadRecord) -> String {
    format!("{}/{}", record.proto.namespace, record.proto.name)
}

/// Inserts (or replaces) `workload` in a list kept in uid order.
fn insert_by_uid(list: &mut Vec<Arc<MeshWorkload>>, workload: &Arc<MeshWorkload>) {
    match list.binary_search_by(|w| w.uid().cmp(workload.uid())) {
        Ok(at) => list[at] = workload.clone(),
        Err(at) => list.insert(at, workload.clone()),
    }
}

/// Removes `uid` from the list; false when the list is then empty.
fn remove_uid(list: &mut Vec<Arc<MeshWorkload>>, uid: &str) -> bool {
    list.retain(|w| w.uid() != uid);
    !list.is_empty()
}
