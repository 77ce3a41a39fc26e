//! The test API server's state: every object (any group, version and kind, namespaced or
//! cluster-scoped) as JSON, one global `resourceVersion` counter, and the history of changes
//! that watches replay, bounded by a compaction window like etcd's.
//!
//! Every write goes through [`Store::put`] or [`Store::remove`]: they stamp the object with
//! the next resourceVersion, record the event and wake the watches. Routes that add writes
//! over HTTP (create, update, apply, delete) build on them.

use crate::kinds::ResourceType;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::{mpsc, watch};

/// Where an object lives: its resource type (group + plural; versions share objects, as
/// in the real API), namespace (`None` for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource name, e.g. `pods`.
    pub plural: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

/// What kind of change an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was replaced.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// The watch event's `type` field.
    #[must_use]
    pub fn wire_name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches replay it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub resource_version: u64,
    /// Which object.
    pub key: ObjectKey,
    /// Created, replaced or removed.
    pub kind: EventType,
    /// The object before the change (`None` when it was created).
    pub old: Option<Value>,
    /// The object after the change (for a deletion: its last state, stamped with the
    /// deletion's resourceVersion).
    pub object: Value,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("object is missing {0}")]
    Incomplete(&'static str),
    /// No object at that key.
    #[error("{0:?} not found")]
    NotFound(ObjectKey),
}

/// Changes older than this many events are compacted by default.
pub const DEFAULT_HISTORY_WINDOW: usize = 1000;

struct State {
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    history: VecDeque<Event>,
    /// Watches from a resourceVersion below this one can no longer be served (410 Gone).
    compacted_before: u64,
    window: usize,
    types: BTreeMap<(String, String), ResourceType>,
    /// Open watches: each receives every change from the moment it started.
    watchers: Vec<mpsc::UnboundedSender<Event>>,
}

/// Where a new watch starts: what it sends first, and the changes after that.
pub struct WatchStart {
    /// The resourceVersion the first part is current at.
    pub resource_version: u64,
    /// Every change after that, of every kind, in order.
    pub changes: mpsc::UnboundedReceiver<Event>,
}

/// The objects, the resourceVersion counter and the event history.
pub struct Store {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Lists and watches served, in order (see [`Store::reads`]).
    reads: Mutex<Vec<Read>>,
}

/// A list or watch request the server answered, for tests to check how a client follows
/// the API (resumed from a version, or listed again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// API group of the collection.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Whether it was a watch (else a list).
    pub watch: bool,
    /// The `resourceVersion` asked for, if any.
    pub resource_version: Option<String>,
}

impl Store {
    /// An empty store keeping the latest `window` events for watches.
    #[must_use]
    pub fn new(window: usize) -> Store {
        Store {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                resource_version: 1,
                history: VecDeque::new(),
                compacted_before: 1,
                window: window.max(1),
                types: BTreeMap::new(),
                watchers: Vec::new(),
            }),
            changed: watch::channel(1).0,
            reads: Mutex::new(Vec::new()),
        }
    }

    /// Notes a list or watch request served.
    pub fn note_read(&self, read: Read) {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(read);
    }

    /// The lists and watches served so far, in order.
    #[must_use]
    pub fn reads(&self) -> Vec<Read> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current resourceVersion (that of the latest change).
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Told the new resourceVersion after every change.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Creates or replaces the object (which names its `apiVersion`, `kind`,
    /// `metadata.name` and, for namespaced kinds, `metadata.namespace`), stamps it with
    /// the next resourceVersion (and a uid and creationTimestamp when new) and returns it.
    ///
    /// # Errors
    /// [`StoreError::Incomplete`] when a required field is missing.
    pub fn put(&self, object: Value) -> Result<Value, StoreError> {
        let key = ResourceType::of_object(&object)?.key_of(&object)?;
        self.put_with(&key, |_| Ok(object))
    }

    /// Replaces the object at `key` with what `make` builds from the one stored there
    /// (`None`: there is none), reading and writing under one lock, so writes that must
    /// not create twice or must see a given resourceVersion cannot race. Stamped as
    /// [`Store::put`] does.
    ///
    /// # Errors
    /// What `make` returns, or [`StoreError::Incomplete`] when the object it builds lacks
    /// a required field or names another key.
    pub fn put_with<E: From<StoreError>>(
        &self,
        key: &ObjectKey,
        make: impl FnOnce(Option<&Value>) -> Result<Value, E>,
    ) -> Result<Value, E> {
        let mut state = self.lock();
        let mut object = make(state.objects.get(key))?;
        let resource_type = ResourceType::of_object(&object)?;
        if resource_type.key_of(&object)? != *key {
            return Err(StoreError::Incomplete("a name and namespace matching the request").into());
        }
        let key = key.clone();
        state.resource_version += 1;
        let version = state.resource_version;
        let old = state.objects.get(&key).cloned();
        let metadata = &mut object["metadata"];
        metadata["resourceVersion"] = Value::String(version.to_string());
        let (uid, created) = match &old {
            Some(old) => (
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => (
                Value::String(format!("uid-{version}")),
                Value::String("2026-01-01T00:00:00Z".to_owned()),
            ),
        };
        metadata["uid"] = uid;
        metadata["creationTimestamp"] = created;
        state
            .types
            .insert(resource_type.index(), resource_type.clone());
        state.objects.insert(key.clone(), object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        record(&mut state, key, kind, old, object.clone());
        drop(state);
        self.changed.send_replace(version);
        Ok(object)
    }

    /// Removes the object at `key`, returning its last state.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is none.
    pub fn remove(&self, key: &ObjectKey) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let Some(mut object) = state.objects.remove(key) else {
            return Err(StoreError::NotFound(key.clone()));
        };
        state.resource_version += 1;
        let version = state.resource_version;
        let old = object.clone();
        object["metadata"]["resourceVersion"] = Value::String(version.to_string());
        record(
            &mut state,
            key.clone(),
            EventType::Deleted,
            Some(old),
            object.clone(),
        );
        drop(state);
        self.changed.send_replace(version);
        Ok(object)
    }

    /// The object at `key`.
    #[must_use]
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects of one resource type (in one namespace, or all), with the
    /// resourceVersion they are current at.
    #[must_use]
    pub fn list(&self, group: &str, plural: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let state = self.lock();
        (
            objects_of(&state, group, plural, namespace),
            state.resource_version,
        )
    }

    /// The kind of a resource type, once an object of it was stored.
    #[must_use]
    pub fn resource_type(&self, group: &str, plural: &str) -> Option<ResourceType> {
        let state = self.lock();
        state
            .types
            .get(&(group.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// Starts a watch from `since`: the events of one resource type after it, and every
    /// later change, taken under one lock so none is missed or repeated. `None` when
    /// events after `since` were compacted (410 Gone).
    #[must_use]
    pub fn watch_from(
        &self,
        since: u64,
        group: &str,
        plural: &str,
    ) -> Option<(Vec<Event>, WatchStart)> {
        let mut state = self.lock();
        if since < state.compacted_before {
            return None;
        }
        let events = state
            .history
            .iter()
            .filter(|e| e.resource_version > since)
            .filter(|e| e.key.group == group && e.key.plural == plural)
            .cloned()
            .collect();
        Some((events, subscribe(&mut state)))
    }

    /// Starts a watch from now: the current objects of one resource type (in one
    /// namespace, or all) and every later change, taken under one lock.
    #[must_use]
    pub fn watch_current(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> (Vec<Value>, WatchStart) {
        let mut state = self.lock();
        let objects = objects_of(&state, group, plural, namespace);
        (objects, subscribe(&mut state))
    }

    /// Forgets every event so far: a watch from any earlier resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted_before = state.resource_version;
    }
}

fn objects_of(state: &State, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
    state
        .objects
        .iter()
        .filter(|(key, _)| key.group == group && key.plural == plural)
        .filter(|(key, _)| namespace.is_none() || key.namespace.as_deref() == namespace)
        .map(|(_, object)| object.clone())
        .collect()
}

fn subscribe(state: &mut State) -> WatchStart {
    let (sender, changes) = mpsc::unbounded_channel();
    state.watchers.push(sender);
    WatchStart {
        resource_version: state.resource_version,
        changes,
    }
}

fn record(state: &mut State, key: ObjectKey, kind: EventType, old: Option<Value>, object: Value) {
    let event = Event {
        resource_version: state.resource_version,
        key,
        kind,
        old,
        object,
    };
    state.watchers.retain(|w| w.send(event.clone()).is_ok());
    state.history.push_back(event);
    while state.history.len() > state.window {
        if let Some(dropped) = state.history.pop_front() {
            state.compacted_before = dropped.resource_version;
        }
    }
}
