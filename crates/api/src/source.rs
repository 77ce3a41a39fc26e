//! Where the control plane's objects come from: one [`ObjectSource`] trait, so the same
//! translation and push follow either a config directory ([`ConfigStore`]) or objects
//! observed elsewhere ([`ObservedObjects`], fed by the Kubernetes API watchers).
//!
//! [`ObservedObjects`] keeps the last good version of each object: an object whose new
//! version has errors (unknown field, invalid value) keeps serving as it was (or not at
//! all if it never was good) and its findings are reported by [`ObjectSource::errors`]
//! until a good version or its deletion arrives, as a file with errors does in the store.
//! Its snapshots take pods as observed (addresses and nodes as the cluster assigned them),
//! never expanded from workloads.

use crate::finding::{Finding, Severity};
use crate::load::LoadResult;
use crate::object::{Kind, LoadedObject, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use crate::store::{ConfigEvent, ConfigStore};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

/// A source of typed objects the control plane translates.
pub trait ObjectSource: Send + Sync {
    /// The current objects, indexed.
    fn snapshot(&self) -> ConfigSnapshot;
    /// Receives every change from now on.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<ConfigEvent>;
    /// Error findings of inputs whose latest version could not be used (their last good
    /// version stays in force).
    fn errors(&self) -> Vec<Finding>;
}

impl ObjectSource for ConfigStore {
    fn snapshot(&self) -> ConfigSnapshot {
        ConfigStore::snapshot(self)
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<ConfigEvent> {
        ConfigStore::subscribe(self)
    }

    fn errors(&self) -> Vec<Finding> {
        self.file_errors()
    }
}

#[derive(Default)]
struct Observed {
    objects: BTreeMap<ObjectRef, Arc<LoadedObject>>,
    errors: BTreeMap<ObjectRef, Vec<Finding>>,
    subscribers: Vec<mpsc::UnboundedSender<ConfigEvent>>,
}

impl Observed {
    /// Records the parse of the latest version of `object_ref`; the event if the object
    /// in force changed.
    fn update(&mut self, object_ref: &ObjectRef, result: LoadResult) -> Option<ConfigEvent> {
        let errors: Vec<Finding> = result
            .findings
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        let parsed = result
            .objects
            .into_iter()
            .find(|o| o.object.object_ref() == *object_ref);
        let good = match parsed {
            Some(object) if errors.is_empty() => object,
            _ => {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                tracing::warn!(object = %object_ref, %first, "object has errors; keeping its last good version");
                self.errors.insert(object_ref.clone(), errors);
                return None;
            }
        };
        self.errors.remove(object_ref);
        let new = Arc::new(good);
        match self.objects.insert(object_ref.clone(), Arc::clone(&new)) {
            None => Some(ConfigEvent::Added(new)),
            Some(old) if old.object != new.object => Some(ConfigEvent::Updated { old, new }),
            Some(_) => None,
        }
    }

    fn remove(&mut self, object_ref: &ObjectRef) -> Option<ConfigEvent> {
        self.errors.remove(object_ref);
        self.objects.remove(object_ref).map(ConfigEvent::Deleted)
    }

    fn send(&mut self, events: &[ConfigEvent]) {
        if events.is_empty() {
            return;
        }
        self.subscribers
            .retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }
}

/// Objects observed from outside (the Kubernetes API), each parsed on its own.
#[derive(Default)]
pub struct ObservedObjects {
    state: Mutex<Observed>,
}

impl ObservedObjects {
    /// An empty set.
    #[must_use]
    pub fn new() -> Arc<ObservedObjects> {
        Arc::new(ObservedObjects::default())
    }

    fn lock(&self) -> MutexGuard<'_, Observed> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies the latest version of `object_ref`, as parsed (see
    /// [`crate::load::parse_manifests`]); sends and returns the event, if any.
    pub fn apply(&self, object_ref: &ObjectRef, result: LoadResult) -> Option<ConfigEvent> {
        let mut state = self.lock();
        let event = state.update(object_ref, result);
        state.send(event.as_slice());
        event
    }

    /// Forgets `object_ref` (deleted); sends and returns the event, if it was in force.
    pub fn remove(&self, object_ref: &ObjectRef) -> Option<ConfigEvent> {
        let mut state = self.lock();
        let event = state.remove(object_ref);
        state.send(event.as_slice());
        event
    }

    /// Replaces every object of `kind` with `objects` (a fresh list of the kind): objects
    /// not in it are removed. Sends the events together and returns them.
    pub fn replace_kind(
        &self,
        kind: Kind,
        objects: Vec<(ObjectRef, LoadResult)>,
    ) -> Vec<ConfigEvent> {
        let mut state = self.lock();
        let listed: std::collections::BTreeSet<&ObjectRef> =
            objects.iter().map(|(r, _)| r).collect();
        let gone: Vec<ObjectRef> = state
            .objects
            .keys()
            .chain(state.errors.keys())
            .filter(|r| r.kind == kind && !listed.contains(r))
            .cloned()
            .collect();
        let mut events: Vec<ConfigEvent> = gone.iter().filter_map(|r| state.remove(r)).collect();
        for (object_ref, result) in objects {
            events.extend(state.update(&object_ref, result));
        }
        state.send(&events);
        events
    }

    /// A snapshot of only the objects of `kinds` (cheaper than a full
    /// [`ObjectSource::snapshot`] for a reader that needs a few kinds).
    #[must_use]
    pub fn snapshot_of(&self, kinds: &[Kind]) -> ConfigSnapshot {
        let objects = self
            .lock()
            .objects
            .iter()
            .filter(|(object_ref, _)| kinds.contains(&object_ref.kind))
            .map(|(_, o)| LoadedObject::clone(o))
            .collect();
        ConfigSnapshot::observed(objects)
    }

    /// Whether an object is in force.
    #[must_use]
    pub fn contains(&self, object_ref: &ObjectRef) -> bool {
        self.lock().objects.contains_key(object_ref)
    }
}

impl ObjectSource for ObservedObjects {
    fn snapshot(&self) -> ConfigSnapshot {
        let objects = self
            .lock()
            .objects
            .values()
            .map(|o| LoadedObject::clone(o))
            .collect();
        ConfigSnapshot::observed(objects)
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<ConfigEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().subscribers.push(sender);
        receiver
    }

    fn errors(&self) -> Vec<Finding> {
        self.lock().errors.values().flatten().cloned().collect()
    }
}
