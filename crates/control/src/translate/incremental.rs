//! [`Translator`]: the last translation plus the index that makes re-translation incremental.
//!
//! Every resource records what it was computed from ([`Dep`]). When objects change, the
//! resources to re-translate are: those that depended on a changed object, those the changed
//! object produces now, those a changed selector selects now, the waypoints a changed
//! service, route or policy attaches to now (and the workload-serving waypoints when
//! workloads change), and the pods whose expansion (name, node, IP, template) differs. Everything else keeps its translation and version.
//! Re-indexing the snapshot (pod expansion, lookup tables) is linear and cheap next to
//! translating and pushing; translation itself is limited to the affected keys.

use super::context::{Context, Dep, Unit};
use super::{Output, ResourceKey, TranslateOptions, authz, gateway, l7, peer_authn};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use weft_api::{ConfigSnapshot, ExpandedPod, Kind, Object, ObjectRef};

/// What one translation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Keys that were translated again (whether or not their content changed).
    pub retranslated: BTreeSet<ResourceKey>,
    /// Resources that are new or have a new version: these must be pushed.
    pub updated: BTreeSet<ResourceKey>,
    /// Resources that no longer exist: these must be removed from clients.
    pub removed: BTreeSet<ResourceKey>,
}

impl Change {
    /// Whether nothing needs to be pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Translation state kept between config changes.
#[derive(Debug, Default)]
pub struct Translator {
    options: TranslateOptions,
    output: Output,
    dependents: HashMap<Dep, BTreeSet<ResourceKey>>,
    deps_of: HashMap<ResourceKey, Vec<Dep>>,
    /// The pods of the last pass (shared with its snapshot) and their index by workload uid.
    pods: Arc<[ExpandedPod]>,
    pod_index: HashMap<String, usize>,
    selections: HashMap<ObjectRef, Option<BTreeMap<String, String>>>,
    mtls_keys: BTreeSet<String>,
    /// Pod workloads of the last pass that shared an IP (one of them gave it up).
    shared_ip_keys: BTreeSet<ResourceKey>,
}

/// Objects whose content differs between two snapshots (added, removed or edited).
#[must_use]
pub fn changed_objects(old: &ConfigSnapshot, new: &ConfigSnapshot) -> Vec<ObjectRef> {
    let refs: BTreeSet<ObjectRef> = old
        .objects()
        .iter()
        .chain(new.objects())
        .map(|loaded| loaded.object.object_ref())
        .collect();
    refs.into_iter()
        .filter(|r| object_in(old, r) != object_in(new, r))
        .collect()
}

fn object_in<'s>(snapshot: &'s ConfigSnapshot, object: &ObjectRef) -> Option<&'s Object> {
    snapshot
        .get(object.kind, object.namespace.as_deref(), &object.name)
        .map(|loaded| &loaded.object)
}

impl Translator {
    /// A translator with nothing translated yet.
    #[must_use]
    pub fn new(options: TranslateOptions) -> Self {
        Translator {
            options,
            ..Translator::default()
        }
    }

    /// The options translation uses.
    #[must_use]
    pub fn options(&self) -> &TranslateOptions {
        &self.options
    }

    /// The current translation.
    #[must_use]
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// The current translation, consuming the translator.
    #[must_use]
    pub fn into_output(self) -> Output {
        self.output
    }

    /// Translates `snapshot` from scratch; the change is relative to the previous output.
    pub fn full(&mut self, snapshot: &ConfigSnapshot) -> Change {
        let previous: BTreeSet<ResourceKey> = self.current_keys();
        self.dependents.clear();
        self.deps_of.clear();
        self.output.warnings.clear();
        let options = self.options.clone();
        let context = Context::new(snapshot, &options);
        let keys: BTreeSet<ResourceKey> = context.all_keys().into_iter().chain(previous).collect();
        let change = self.retranslate(&context, keys);
        self.remember(&context);
        change
    }

    /// Re-translates what depends on `changed` objects, given the snapshot after the change.
    pub fn apply_change(&mut self, snapshot: &ConfigSnapshot, changed: &[ObjectRef]) -> Change {
        let options = self.options.clone();
        let context = Context::new(snapshot, &options);
        let mut affected = BTreeSet::new();
        let mut mtls_changed = false;
        for object in changed {
            affected.extend(self.dependents_of(&Dep::Object(object.clone())));
            affected.extend(
                context
                    .produced_by
                    .get(object)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            affected.extend(l7::affected_waypoints(&context, object));
            affected.extend(gateway::affected_gateways(&context, object));
            match object.kind {
                Kind::AuthorizationPolicy => {
                    affected.extend(self.policy_selection_change(&context, object));
                }
                Kind::PeerAuthentication => {
                    mtls_changed = true;
                    affected.extend(self.dependents_of(&Dep::Selection(object.clone())));
                    affected.extend(peer_authn::workloads_in_reach(&context, object));
                }
                Kind::Service | Kind::ServiceEntry => {
                    affected.extend(selected_by_service(&context, object));
                    affected.extend(context.vip_rivals(object));
                }
                _ => {}
            }
        }
        if mtls_changed {
            let keys = self.mtls_keys.iter().chain(context.mtls_policies.keys());
            affected.extend(keys.map(|k| ResourceKey::authorization(k.clone())));
        }
        let changed_pods = self.changed_pods(&context);
        if !changed_pods.is_empty() || changed.iter().any(|o| moves_workloads(snapshot, o)) {
            affected.extend(l7::workload_waypoints(&context));
        }
        if !changed_pods.is_empty() {
            // which pod keeps a shared IP depends on the others sharing it
            affected.extend(self.shared_ip_keys.iter().cloned());
            affected.extend(context.shared_ip_keys());
            // a gateway's readers are the nodes of its pods
            affected.extend(gateway::all_gateways(&context));
        }
        affected.extend(changed_pods);
        let change = self.retranslate(&context, affected);
        self.remember(&context);
        change
    }

    /// [`Translator::apply_change`] with the changed objects found by comparing snapshots.
    pub fn update(&mut self, old: &ConfigSnapshot, new: &ConfigSnapshot) -> Change {
        self.apply_change(new, &changed_objects(old, new))
    }

    fn current_keys(&self) -> BTreeSet<ResourceKey> {
        let warned = self.output.warnings.keys().cloned();
        self.output.keys().chain(warned).collect()
    }

    fn dependents_of(&self, dep: &Dep) -> impl Iterator<Item = ResourceKey> + '_ {
        self.dependents.get(dep).into_iter().flatten().cloned()
    }

    /// Workloads to re-translate when a policy's selector (or whether it is selector-scoped)
    /// changed: the ones it selected before and the ones it selects now.
    fn policy_selection_change(
        &self,
        context: &Context<'_>,
        object: &ObjectRef,
    ) -> Vec<ResourceKey> {
        let namespace = object.namespace.as_deref().unwrap_or_default();
        let key = format!("{namespace}/{}", object.name);
        let now = context
            .policies
            .get(&key)
            .and_then(|p| authz::selection(p))
            .cloned();
        let before = self.selections.get(object).cloned().flatten();
        if now == before {
            return Vec::new();
        }
        let mut keys: Vec<ResourceKey> = self
            .dependents_of(&Dep::Selection(object.clone()))
            .collect();
        if let Some(labels) = now {
            let scope = (namespace != context.options.root_namespace).then_some(namespace);
            keys.extend(context.workloads_matching(scope, Some(&labels)));
        }
        keys
    }

    /// Pod workloads whose expansion differs from the last pass (added, removed, edited,
    /// moved to another node or IP).
    fn changed_pods(&self, context: &Context<'_>) -> Vec<ResourceKey> {
        if Arc::ptr_eq(&self.pods, &context.pods) {
            return Vec::new();
        }
        let cluster = &context.options.cluster_id;
        let mut keys = Vec::new();
        let mut seen = BTreeSet::new();
        for pod in context.pods.iter() {
            let uid = super::workload::pod_uid(cluster, pod.namespace(), pod.name());
            let same = self.pod_index.get(&uid).is_some_and(|&i| {
                let old = &self.pods[i];
                old.pod == pod.pod && old.owner == pod.owner
            });
            if !same {
                keys.push(ResourceKey::address(uid.clone()));
            }
            seen.insert(uid);
        }
        keys.extend(
            self.pod_index
                .keys()
                .filter(|uid| !seen.contains(*uid))
                .map(|uid| ResourceKey::address(uid.clone())),
        );
        keys
    }

    /// Keeps what the next incremental pass compares against.
    fn remember(&mut self, context: &Context<'_>) {
        if !Arc::ptr_eq(&self.pods, &context.pods) {
            let cluster = &context.options.cluster_id;
            self.pods = Arc::clone(&context.pods);
            self.pod_index = self
                .pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        super::workload::pod_uid(cluster, p.namespace(), p.name()),
                        i,
                    )
                })
                .collect();
        }
        self.selections = context
            .snapshot
            .authorization_policies()
            .map(|(policy, loaded)| {
                (
                    loaded.object.object_ref(),
                    authz::selection(policy).cloned(),
                )
            })
            .collect();
        self.mtls_keys = context.mtls_policies.keys().cloned().collect();
        self.shared_ip_keys = context.shared_ip_keys().collect();
    }

    fn retranslate(&mut self, context: &Context<'_>, keys: BTreeSet<ResourceKey>) -> Change {
        let mut change = Change::default();
        for key in keys {
            let before = self.output.version(&key).map(str::to_owned);
            let unit = context.translate(&key);
            self.store(&key, unit);
            match (before, self.output.version(&key)) {
                (Some(_), None) => {
                    change.removed.insert(key.clone());
                }
                (before, Some(after)) if before.as_deref() != Some(after) => {
                    change.updated.insert(key.clone());
                }
                _ => {}
            }
            change.retranslated.insert(key);
        }
        change
    }

    fn store(&mut self, key: &ResourceKey, unit: Unit) {
        for dep in self.deps_of.remove(key).into_iter().flatten() {
            if let Some(keys) = self.dependents.get_mut(&dep) {
                keys.remove(key);
                if keys.is_empty() {
                    self.dependents.remove(&dep);
                }
            }
        }
        let mut deps = unit.deps;
        deps.sort();
        deps.dedup();
        for dep in &deps {
            self.dependents
                .entry(dep.clone())
                .or_default()
                .insert(key.clone());
        }
        if !deps.is_empty() {
            self.deps_of.insert(key.clone(), deps);
        }
        if unit.warnings.is_empty() {
            self.output.warnings.remove(key);
        } else {
            self.output.warnings.insert(key.clone(), unit.warnings);
        }
        match unit.resource {
            Some(resource) => self.output.insert(key, resource),
            None => self.output.remove(key),
        }
    }
}

/// Workloads a Service's or ServiceEntry's selector picks in the new snapshot.
/// Whether a change of `object` can add or remove workloads other than pods (the waypoints
/// serving workloads then list them again): WorkloadEntries, ServiceEntries, EndpointSlices,
/// and Services while EndpointSlices exist (a selector added or removed moves its slices'
/// addresses in or out).
fn moves_workloads(snapshot: &ConfigSnapshot, object: &ObjectRef) -> bool {
    match object.kind {
        Kind::WorkloadEntry | Kind::ServiceEntry | Kind::EndpointSlice => true,
        Kind::Service => snapshot.endpoint_slices().next().is_some(),
        _ => false,
    }
}

fn selected_by_service(context: &Context<'_>, object: &ObjectRef) -> Vec<ResourceKey> {
    let namespace = object.namespace.as_deref();
    let selector = match context
        .snapshot
        .get(object.kind, namespace, &object.name)
        .map(|l| &l.object)
    {
        Some(Object::Service(svc)) => svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty()),
        Some(Object::ServiceEntry(entry)) => entry
            .spec
            .workload_selector
            .as_ref()
            .map(|s| s.labels.clone())
            .filter(|labels| !labels.is_empty()),
        _ => None,
    };
    selector
        .map(|labels| context.workloads_matching(namespace, Some(&labels)))
        .unwrap_or_default()
}
