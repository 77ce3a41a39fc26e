//! The trust bundle published as ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) in
//! every namespace, Istio's convention for workloads and proxies that read the mesh root
//! from the API: written with server-side apply (field manager `weft`) into each namespace
//! as it appears (including ones created later), written again when the bundle changes, and
//! restored when someone deletes or edits the ConfigMap.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::watch;

/// The ConfigMap's name.
pub const ROOT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key holding the PEM bundle.
pub const ROOT_CONFIGMAP_KEY: &str = "root-cert.pem";

/// Publishes `bundle` (PEM, one or more roots) in every namespace until the returned future
/// is dropped. Failed writes are logged and retried when the namespace or bundle next
/// changes, or the watch relists.
pub async fn publish_trust_bundle(client: kube::Client, mut bundle: watch::Receiver<String>) {
    let mut publisher = Publisher {
        client: client.clone(),
        written: HashMap::new(),
    };
    let namespaces = watcher::watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    let config_maps = watcher::watcher(
        Api::<ConfigMap>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CONFIGMAP}")),
    );
    let mut namespaces = std::pin::pin!(namespaces);
    let mut config_maps = std::pin::pin!(config_maps);
    loop {
        tokio::select! {
            event = namespaces.next() => match event {
                Some(Ok(Event::Apply(ns) | Event::InitApply(ns))) => {
                    let pem = bundle.borrow().clone();
                    publisher.namespace_seen(&ns, &pem).await;
                }
                Some(Ok(Event::Delete(ns))) => publisher.namespace_gone(&ns),
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "namespace watch failed; retrying"),
                None => return,
            },
            event = config_maps.next() => match event {
                Some(Ok(Event::Apply(map) | Event::InitApply(map))) => {
                    let pem = bundle.borrow().clone();
                    publisher.config_map_seen(&map, &pem).await;
                }
                Some(Ok(Event::Delete(map))) => {
                    let pem = bundle.borrow().clone();
                    publisher.config_map_deleted(&map, &pem).await;
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "root ConfigMap watch failed; retrying"),
                None => return,
            },
            changed = bundle.changed() => {
                if changed.is_err() {
                    return;
                }
                let pem = bundle.borrow().clone();
                publisher.republish(&pem).await;
            }
        }
    }
}

/// What was written where (namespace -> bundle written; empty when the write failed).
struct Publisher {
    client: kube::Client,
    written: HashMap<String, String>,
}

impl Publisher {
    async fn namespace_seen(&mut self, namespace: &Namespace, pem: &str) {
        let Some(name) = namespace.metadata.name.as_deref() else {
            return;
        };
        let terminating = namespace.metadata.deletion_timestamp.is_some();
        if terminating || self.written.get(name).is_some_and(|w| w == pem) {
            return;
        }
        self.write(name, pem).await;
    }

    fn namespace_gone(&mut self, namespace: &Namespace) {
        if let Some(name) = namespace.metadata.name.as_deref() {
            self.written.remove(name);
        }
    }

    /// Rewrites a ConfigMap whose content someone changed.
    async fn config_map_seen(&mut self, map: &ConfigMap, pem: &str) {
        let Some(namespace) = map.metadata.namespace.as_deref() else {
            return;
        };
        let current = map.data.as_ref().and_then(|d| d.get(ROOT_CONFIGMAP_KEY));
        if self.written.contains_key(namespace) && current.map(String::as_str) != Some(pem) {
            self.write(namespace, pem).await;
        }
    }

    /// Restores a deleted ConfigMap while its namespace exists.
    async fn config_map_deleted(&mut self, map: &ConfigMap, pem: &str) {
        let Some(namespace) = map.metadata.namespace.as_deref() else {
            return;
        };
        if self.written.contains_key(namespace) {
            self.write(namespace, pem).await;
        }
    }

    async fn republish(&mut self, pem: &str) {
        let namespaces: Vec<String> = self.written.keys().cloned().collect();
        for namespace in namespaces {
            self.write(&namespace, pem).await;
        }
    }

    async fn write(&mut self, namespace: &str, pem: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": ROOT_CONFIGMAP, "namespace": namespace},
            "data": {ROOT_CONFIGMAP_KEY: pem},
        });
        let params = PatchParams::apply(crate::status::FIELD_MANAGER).force();
        match api
            .patch(ROOT_CONFIGMAP, &params, &Patch::Apply(patch))
            .await
        {
            Ok(_) => {
                self.written.insert(namespace.to_owned(), pem.to_owned());
            }
            Err(error) => {
                tracing::warn!(%error, namespace, "trust bundle ConfigMap not written");
                self.written.insert(namespace.to_owned(), String::new());
            }
        }
    }
}
