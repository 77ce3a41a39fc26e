//! Keeps the xDS publisher equal to the translation of the config store: a full translation
//! at start, then, for each burst of store events, an incremental re-translation whose
//! changed and removed resources are published (unchanged resources are never re-sent:
//! their version is the hash of their content).

use crate::translate::{Change, Output, RESOURCE_TYPES, Resource, TranslateOptions, Translator};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use weft_api::{ConfigSnapshot, ExpandedPod, ObjectSource};
use weft_identity::SpiffeId;
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
        store: &dyn ObjectSource,
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
    pub fn refresh(&mut self, store: &dyn ObjectSource) {
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

/// One type's edit: upserted resources and removed names.
type TypeEdit = (Vec<XdsResource>, Vec<String>);

/// Publishes the resources `change` names, from `output`, every type in one edit (so no
/// snapshot has a workload's new policy list without its new policy). Every registered
/// type is applied (even with nothing to change), so the first publish announces each of
/// them to streams.
fn publish(publisher: &ResourcePublisher, output: &Output, change: &Change) {
    let mut edits: BTreeMap<&str, TypeEdit> = RESOURCE_TYPES
        .iter()
        .map(|t| (t.type_url, TypeEdit::default()))
        .collect();
    for key in &change.updated {
        if let Some(resource) = output.get(key) {
            let edit = edits.entry(key.type_url).or_default();
            edit.0.push(xds_resource(key.type_url, resource));
        }
    }
    for key in &change.removed {
        edits
            .entry(key.type_url)
            .or_default()
            .1
            .push(key.name.clone());
    }
    publisher.apply_types(
        edits
            .into_iter()
            .map(|(type_url, (upserts, removals))| (type_url, upserts, removals)),
    );
}

/// The xDS form of a translated resource (its bytes were encoded once, by translation).
fn xds_resource(type_url: &str, resource: &Resource) -> XdsResource {
    let body = prost_types::Any {
        type_url: type_url.to_owned(),
        value: resource.encoded.clone(),
    };
    let published = XdsResource::with_version(
        resource.name.clone(),
        resource.version.clone(),
        resource.aliases.clone(),
        body,
    );
    match &resource.readers {
        Some(readers) => published.readable_by(readers.clone()),
        None => published,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{ResourceKey, translate};
    use weft_xds::{AllowAnonymous, ServerConfig, XdsServer};

    /// A type no translation unit knows: the output and publish paths are generic.
    const TEST_TYPE_URL: &str = "type.googleapis.com/weft.test.Extra";

    /// A resource of a new type goes into the output under (type URL, name) and out through
    /// `publish` with its bytes, version and aliases, and its removal too, while the
    /// registered types are announced beside it.
    #[tokio::test]
    async fn a_new_resource_type_flows_through_output_and_publish() {
        let mut registry = prometheus_client::registry::Registry::default();
        let (_server, publisher) =
            XdsServer::new(ServerConfig::default(), AllowAnonymous, &mut registry);
        let key = ResourceKey::new(TEST_TYPE_URL, "ns/extra");
        let message = prost_types::Duration {
            seconds: 7,
            nanos: 0,
        };
        let resource = Resource::encode(key.name.clone(), vec!["alias".to_owned()], &message);
        let mut output = Output::default();
        output.insert(&key, resource.clone());
        let mut change = Change::default();
        change.updated.insert(key.clone());

        publish(&publisher, &output, &change);
        let snapshot = publisher.current();
        let published = snapshot
            .resources(TEST_TYPE_URL)
            .and_then(|t| t.get("ns/extra"))
            .expect("published under its type URL");
        assert_eq!(published.version, resource.version);
        assert_eq!(published.aliases, ["alias"]);
        assert_eq!(published.body.type_url, TEST_TYPE_URL);
        assert_eq!(published.body.value, resource.encoded);
        for registered in RESOURCE_TYPES {
            assert!(snapshot.resources(registered.type_url).is_some());
        }

        output.remove(&key);
        let removal = Change {
            removed: [key].into(),
            ..Change::default()
        };
        publish(&publisher, &output, &removal);
        let snapshot = publisher.current();
        assert!(snapshot.resources(TEST_TYPE_URL).expect("known").is_empty());
        assert_eq!(output.resource_count(), 0);
    }
    use weft_proto::workload::{Address, address};

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
metadata: {name: blank, namespace: shop}
spec: {nodeName: node-b, serviceAccountName: '', serviceAccount: ops, containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.4}
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
        let addresses: Vec<Address> = output
            .decode_all(weft_proto::ADDRESS_TYPE_URL)
            .expect("addresses decode");
        for address in addresses {
            let Some(address::Type::Workload(workload)) = &address.r#type else {
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
            [
                "blank=ops",
                "legacy=reports",
                "modern=catalog",
                "plain=default"
            ]
        );
    }
}
