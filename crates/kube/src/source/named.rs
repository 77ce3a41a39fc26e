//! Watches by name of the objects configuration references ([`super::referenced`]): one
//! watch per object, started when a reference to it appears and stopped when the last one
//! goes, the object then forgotten. The references are computed again after every change
//! of a referring kind (Gateway, ListenerSet, BackendTLSPolicy, ReferenceGrant).
//!
//! The first sync waits for them too: its [`REFERENCES`] entry is released only once every
//! watched kind was listed and the objects referenced at that point are expected, so the
//! first snapshot holds the certificates its gateways name.

use super::follow::{Follow, Watched};
use super::referenced::{REFERRING, referenced};
use super::sync::FirstSync;
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weft_api::{ConfigEvent, ObjectRef, ObservedObjects};

/// The first sync's entry for "the references were computed from complete lists".
pub(super) const REFERENCES: &str = "referenced Secrets and ConfigMaps";

/// The running watches by name.
pub(super) struct NamedWatches {
    pub client: kube::Client,
    pub objects: Arc<ObservedObjects>,
    pub config: watcher::Config,
    pub sync: Arc<FirstSync>,
    /// Watched whatever references them.
    pub fixed: Vec<ObjectRef>,
    pub running: BTreeMap<ObjectRef, JoinHandle<()>>,
}

impl NamedWatches {
    /// Follows `changes` of the observed objects (subscribed before any kind was listed)
    /// until the task is aborted.
    pub(super) async fn run(
        mut self,
        mut changes: mpsc::UnboundedReceiver<ConfigEvent>,
        mut pending: watch::Receiver<BTreeSet<String>>,
    ) {
        let mut resolved = false;
        loop {
            if !resolved && only_references_pending(&pending.borrow_and_update()) {
                self.reconcile().await;
                self.sync.listed(REFERENCES);
                resolved = true;
            }
            tokio::select! {
                change = changes.recv() => {
                    let Some(first) = change else { return };
                    let mut relevant = refers(&first);
                    while let Ok(more) = changes.try_recv() {
                        relevant |= refers(&more);
                    }
                    if relevant {
                        self.reconcile().await;
                    }
                }
                _ = pending.changed(), if !resolved => {}
            }
        }
    }

    /// Starts a watch for each newly referenced object, stops those no longer referenced.
    async fn reconcile(&mut self) {
        let mut wanted = referenced(&self.objects.snapshot_of(REFERRING));
        wanted.extend(self.fixed.iter().cloned());
        let gone: Vec<ObjectRef> = (self.running.keys())
            .filter(|object| !wanted.contains(*object))
            .cloned()
            .collect();
        for object in gone {
            if let Some(task) = self.running.remove(&object) {
                task.abort();
                // once it has stopped, nothing it read can arrive after the removal
                let _ = task.await;
            }
            self.objects.remove(&object);
            self.sync.listed(&object.to_string());
            tracing::info!(%object, "no longer referenced: not watched any more, forgotten");
        }
        for object in wanted {
            if self.running.contains_key(&object) {
                continue;
            }
            tracing::info!(%object, "referenced: watching it by name");
            let watched = Watched::Object(object.clone());
            self.sync.expect(&watched.label());
            let follow = Follow {
                watched,
                objects: Arc::clone(&self.objects),
                config: self.config.clone(),
                sync: Arc::clone(&self.sync),
            };
            let task = tokio::spawn(follow.run(self.client.clone()));
            self.running.insert(object, task);
        }
    }
}

impl Drop for NamedWatches {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

/// Whether a change can change what is referenced.
fn refers(event: &ConfigEvent) -> bool {
    REFERRING.contains(&event.object_ref().kind)
}

/// Whether only [`REFERENCES`] (or nothing) is left of the first sync.
fn only_references_pending(pending: &BTreeSet<String>) -> bool {
    pending.iter().all(|what| what == REFERENCES)
}
