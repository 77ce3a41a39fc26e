//! Which policies apply to which workloads, kept by the writer so that a policy delta
//! recompiles the policy sets of the workloads it can affect and no others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::WorkloadRecord;
use super::sharded::ShardedMap;
use weft_policy::{CompiledPolicy, PolicySet, Scope};

/// Policies grouped by how they select workloads, and workloads by what selects them.
#[derive(Debug, Default)]
pub(super) struct PolicyScopes {
    global: BTreeMap<String, Arc<CompiledPolicy>>,
    by_namespace: HashMap<String, BTreeMap<String, Arc<CompiledPolicy>>>,
    /// Workload uids per namespace.
    uids_by_namespace: HashMap<String, BTreeSet<String>>,
    /// Workload uids per policy name they list in `authorization_policies`.
    uids_by_listed: HashMap<String, BTreeSet<String>>,
}

/// Who a policy can apply to.
pub(super) enum Affected<'a> {
    /// Every workload.
    All,
    /// These uids.
    Some(Vec<&'a String>),
}

impl PolicyScopes {
    /// Records `policy` under `name` (call [`Self::remove_policy`] with the old version
    /// first when replacing).
    pub(super) fn add_policy(&mut self, name: &str, policy: &Arc<CompiledPolicy>) {
        match policy.scope() {
            Scope::Global => {
                self.global.insert(name.to_owned(), policy.clone());
            }
            Scope::Namespace => {
                self.by_namespace
                    .entry(policy.namespace().to_owned())
                    .or_default()
                    .insert(name.to_owned(), policy.clone());
            }
            Scope::WorkloadSelector => {}
        }
    }

    /// Forgets `policy` (the version stored under `name`).
    pub(super) fn remove_policy(&mut self, name: &str, policy: &CompiledPolicy) {
        match policy.scope() {
            Scope::Global => {
                self.global.remove(name);
            }
            Scope::Namespace => {
                if let Some(list) = self.by_namespace.get_mut(policy.namespace()) {
                    list.remove(name);
                    if list.is_empty() {
                        self.by_namespace.remove(policy.namespace());
                    }
                }
            }
            Scope::WorkloadSelector => {}
        }
    }

    /// The workloads whose policy set `policy` (stored under `name`) is part of.
    pub(super) fn affected(&self, name: &str, policy: &CompiledPolicy) -> Affected<'_> {
        let listing = self.uids_by_listed.get(name).into_iter().flatten();
        match policy.scope() {
            Scope::Global => Affected::All,
            Scope::Namespace => Affected::Some(
                self.uids_by_namespace
                    .get(policy.namespace())
                    .into_iter()
                    .flatten()
                    .chain(listing)
                    .collect(),
            ),
            Scope::WorkloadSelector => Affected::Some(listing.collect()),
        }
    }

    /// Records the workload's namespace and listed policies.
    pub(super) fn add_workload(&mut self, record: &WorkloadRecord) {
        let uid = &record.proto.uid;
        self.uids_by_namespace
            .entry(record.proto.namespace.clone())
            .or_default()
            .insert(uid.clone());
        for name in &record.proto.authorization_policies {
            self.uids_by_listed
                .entry(name.clone())
                .or_default()
                .insert(uid.clone());
        }
    }

    /// Forgets what [`Self::add_workload`] recorded for `record`.
    pub(super) fn remove_workload(&mut self, record: &WorkloadRecord) {
        let uid = &record.proto.uid;
        remove_from_set(
            &mut self.uids_by_namespace,
            &record.proto.namespace,
            uid.as_str(),
        );
        for name in &record.proto.authorization_policies {
            remove_from_set(&mut self.uids_by_listed, name, uid.as_str());
        }
    }

    /// GLOBAL policies, NAMESPACE policies of the workload's namespace, and the selector
    /// policies the workload lists in `authorization_policies` (missing ones named).
    pub(super) fn policy_set(
        &self,
        record: &WorkloadRecord,
        by_name: &ShardedMap<String, Arc<CompiledPolicy>>,
    ) -> PolicySet {
        let namespace = self
            .by_namespace
            .get(record.proto.namespace.as_str())
            .into_iter()
            .flat_map(BTreeMap::values);
        let mut missing = Vec::new();
        let selected = record
            .proto
            .authorization_policies
            .iter()
            .filter_map(|name| {
                let found = by_name.get(name.as_str()).cloned();
                if found.is_none() {
                    missing.push(name.clone());
                }
                found
            })
            .collect::<Vec<_>>();
        let all = self
            .global
            .values()
            .chain(namespace)
            .cloned()
            .chain(selected);
        PolicySet::new(all, missing)
    }
}

fn remove_from_set(map: &mut HashMap<String, BTreeSet<String>>, key: &str, uid: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(uid);
        if set.is_empty() {
            map.remove(key);
        }
    }
}
