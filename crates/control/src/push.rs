//! Keeps the xDS publisher equal to the translation of the config store: a full translation
//! at start, then, for each burst of store events, an incremental re-translation whose
//! changed and removed resources are published (unchanged resources are never re-sent:
//! their version is the hash of their content).

use crate::translate::{Change, Output, ResourceKey, TranslateOptions, Translator};
use arc_swap::ArcSwap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use weft_api::{ConfigSnapshot, ConfigStore, ExpandedPod};
use weft_identity::SpiffeId;
use weft_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, pack_any};
use weft_xds::{ResourcePublisher, XdsResource};

use crate::ca_service::NodeIdentities;

/// Workload identities per node, as placed by the current configuration. The CA asks it
/// whether a node proxy may obtain an identity.
#[derive(Debug, Default)]
pub struct ConfigNodeIdentities {
    by_node: ArcSwap<HashMap<String, HashSet<SpiffeId>>>,
}

impl ConfigNodeIdentities {
    /// Recomputes the placement from `snapshot`.
    pub fn update(&self, snapshot: &ConfigSnapshot, trust_domain: &str) {
        let pods = snapshot.pods();
        // many pods share a node, namespace and account: build each identity once
        let mut placements: HashMap<(&str, &str, &str), &ExpandedPod> = HashMap::new();
        for pod in pods.iter() {
            let Some(node) = pod.node_name() else {
                continue;
            };
            placements
                .entry((node, pod.namespace(), pod.service_account()))
                .or_insert(pod);
        }
        let mut by_node: HashMap<String, HashSet<SpiffeId>> = HashMap::new();
        for ((node, namespace, account), pod) in placements {
            match SpiffeId::new(trust_domain, namespace, account) {
                Ok(id) => {
                    by_node.entry(node.to_owned()).or_default().insert(id);
                }
                Err(err) => tracing::warn!(
                    pod = %format!("{namespace}/{}", pod.name()),
                    %err,
                    "pod has no valid identity; the CA will not issue one for it"
                ),
            }
        }
        self.by_node.store(Arc::new(by_node));
    }
}

impl NodeIdentities for ConfigNodeIdentities {
    fn identities_on_node(&self, node: &str) -> Vec<SpiffeId> {
        self.by_node
            .load()
            .get(node)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The translation side of the control plane: owns the translator and the last snapshot.
pub struct ConfigPusher {
    translator: Translator,
    snapshot: ConfigSnapshot,
    publisher: ResourcePublisher,
    nodes: Arc<ConfigNodeIdentities>,
    output: Arc<ArcSwap<Output>>,
}

impl ConfigPusher {
    /// Translates `store`'s current content and publishes all of it.
    pub fn start(
        store: &ConfigStore,
        options: TranslateOptions,
        publisher: ResourcePublisher,
        nodes: Arc<ConfigNodeIdentities>,
    ) -> Self {
        let snapshot = store.snapshot();
        let mut translator = Translator::new(options);
        let change = translator.full(&snapshot);
        let pusher = Self {
            translator,
            snapshot,
            publisher,
            nodes,
            output: Arc::new(ArcSwap::from_pointee(Output::default())),
        };
        pusher.update_node_identities();
        pusher.after_change(&change);
        pusher
    }

    /// The latest translation (for `/debug/configz`).
    pub fn output(&self) -> Arc<ArcSwap<Output>> {
        Arc::clone(&self.output)
    }

    /// Re-translates what changed between the last snapshot and `store`'s current one.
    pub fn refresh(&mut self, store: &ConfigStore) {
        let snapshot = store.snapshot().with_pods_of(&self.snapshot);
        let pods_changed = !Arc::ptr_eq(&snapshot.pods(), &self.snapshot.pods());
        let change = self.translator.update(&self.snapshot, &snapshot);
        self.snapshot = snapshot;
        if pods_changed {
            self.update_node_identities();
        }
        self.after_change(&change);
    }

    fn update_node_identities(&self) {
        let trust_domain = &self.translator.options().trust_domain;
        self.nodes.update(&self.snapshot, trust_domain);
    }

    fn after_change(&self, change: &Change) {
        let output = self.translator.output();
        let retranslated_warnings = change
            .retranslated
            .iter()
            .filter_map(|key| output.warnings.get(key))
            .flatten();
        for warning in retranslated_warnings {
            tracing::warn!(object = %warning.object, "{}", warning.message);
        }
        publish(&self.publisher, output, change);
        self.output.store(Arc::new(output.clone()));
        if !change.is_empty() {
            tracing::info!(
                updated = change.updated.len(),
                removed = change.removed.len(),
                "configuration change translated"
            );
        }
    }
}

/// Publishes the resources `change` names, from `output`.
fn publish(publisher: &ResourcePublisher, output: &Output, change: &Change) {
    let mut address_upserts = Vec::new();
    let mut authz_upserts = Vec::new();
    let mut address_removals = BTreeSet::new();
    let mut authz_removals = BTreeSet::new();
    for key in &change.updated {
        match key {
            ResourceKey::Address(name) => {
                if let Some(resource) = output.addresses.get(name) {
                    address_upserts.push(XdsResource::with_version(
                        name.clone(),
                        resource.version.clone(),
                        resource.aliases.clone(),
                        pack_any(ADDRESS_TYPE_URL, &resource.message),
                    ));
                }
            }
            ResourceKey::Authorization(name) => {
                if let Some(resource) = output.authorizations.get(name) {
                    authz_upserts.push(XdsResource::with_version(
                        name.clone(),
                        resource.version.clone(),
                        resource.aliases.clone(),
                        pack_any(AUTHORIZATION_TYPE_URL, &resource.message),
                    ));
                }
            }
        }
    }
    for key in &change.removed {
        match key {
            ResourceKey::Address(name) => address_removals.insert(name.clone()),
            ResourceKey::Authorization(name) => authz_removals.insert(name.clone()),
        };
    }
    publisher.apply(ADDRESS_TYPE_URL, address_upserts, address_removals);
    publisher.apply(AUTHORIZATION_TYPE_URL, authz_upserts, authz_removals);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::translate;
    use weft_proto::workload::address;

    /// The identity the translator gives a pod is the one the CA lets its node obtain,
    /// whichever service account field the pod uses.
    #[test]
    fn translator_and_ca_placement_agree_on_every_pod_identity() {
        let text = r"
apiVersion: v1
kind: Pod
metadata: {name: modern, namespace: shop}
spec: {nodeName: node-a, serviceAccountName: catalog, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: shop}
spec: {nodeName: node-a, serviceAccount: reports, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop}
spec: {nodeName: node-b, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.3}
";
        let loaded = weft_api::parse_manifests(text, std::path::Path::new("pods.yaml"));
        assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
        let snapshot = ConfigSnapshot::new(loaded.objects);
        let options = TranslateOptions::default();
        let placement = ConfigNodeIdentities::default();
        placement.update(&snapshot, &options.trust_domain);
        let output = translate(&snapshot, &options);
        let mut checked = Vec::new();
        for resource in output.addresses.values() {
            let Some(address::Type::Workload(workload)) = &resource.message.r#type else {
                continue;
            };
            let id = SpiffeId::new(
                &workload.trust_domain,
                &workload.namespace,
                &workload.service_account,
            )
            .expect("valid identity");
            assert!(
                placement.identities_on_node(&workload.node).contains(&id),
                "{id} of {} is not obtainable on {}",
                workload.name,
                workload.node
            );
            checked.push(format!("{}={}", workload.name, workload.service_account));
        }
        checked.sort();
        assert_eq!(
            checked,
            ["legacy=reports", "modern=catalog", "plain=default"]
        );
    }
}
