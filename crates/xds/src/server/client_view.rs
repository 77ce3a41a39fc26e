//! What one client holds of one type: the resources we sent it (shared with the snapshot,
//! one pointer each) and the versions it declared itself when it reconnected.
//!
//! A proxy holds every resource of a wildcard type, so this is the largest per-stream
//! structure; keeping the sent resources as `Arc`s instead of copied name and version
//! strings makes it about ten times smaller.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::resource::XdsResource;

/// Names and versions one client holds.
#[derive(Debug, Default)]
pub(crate) struct ClientView {
    /// Resources sent on this stream, by name.
    sent: HashSet<Sent>,
    /// `initial_resource_versions` of a reconnecting client for names not sent since.
    declared: HashMap<String, String>,
}

impl ClientView {
    /// A client that declared `initial_resource_versions` on its first request.
    pub(crate) fn declared(versions: HashMap<String, String>) -> Self {
        Self {
            sent: HashSet::new(),
            declared: versions,
        }
    }

    /// The version the client holds of `name`.
    pub(crate) fn version(&self, name: &str) -> Option<&str> {
        match self.sent.get(name) {
            Some(sent) => Some(&sent.0.version),
            None => self.declared.get(name).map(String::as_str),
        }
    }

    /// Whether the client holds `resource` at its current version.
    pub(crate) fn is_current(&self, resource: &Arc<XdsResource>) -> bool {
        match self.sent.get(resource.name.as_str()) {
            Some(sent) => Arc::ptr_eq(&sent.0, resource) || sent.0.version == resource.version,
            None => self.declared.get(&resource.name) == Some(&resource.version),
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.version(name).is_some()
    }

    /// Records that `resource` was sent.
    pub(crate) fn record_sent(&mut self, resource: &Arc<XdsResource>) {
        self.declared.remove(&resource.name);
        self.sent.replace(Sent(Arc::clone(resource)));
    }

    /// Forgets `name`; returns whether the client held it.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let sent = self.sent.remove(name);
        self.declared.remove(name).is_some() || sent
    }

    /// Every name the client holds.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let sent = self.sent.iter().map(|s| s.0.name.as_str());
        sent.chain(self.declared.keys().map(String::as_str))
    }

    pub(crate) fn len(&self) -> usize {
        self.sent.len() + self.declared.len()
    }
}

/// A sent resource, hashed and compared by name (so the set is looked up by `&str`).
#[derive(Debug)]
struct Sent(Arc<XdsResource>);

impl PartialEq for Sent {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Sent {}

impl Hash for Sent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.as_str().hash(state);
    }
}

impl Borrow<str> for Sent {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}
