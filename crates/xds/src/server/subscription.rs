//! What one stream subscribed to for one type URL, what the client holds, and the diff
//! between that and the current resources. Pure logic, no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message as _;

use super::client_view::ClientView;
use crate::resource::{TypeResources, XdsResource};

/// The subscription name meaning "everything of this type".
pub(crate) const WILDCARD: &str = "*";

/// The changes one response carries.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) upserts: Vec<Arc<XdsResource>>,
    pub(crate) removed: Vec<String>,
    /// The size cap cut this response short: more of the same update follows.
    pub(crate) more: bool,
}

/// Subscription and client-side view of one type on one stream.
#[derive(Debug)]
pub(crate) struct TypeSubscription {
    wildcard: bool,
    names: HashSet<String>,
    /// What the client holds (sent by us, or declared on reconnect).
    client_has: ClientView,
    /// Explicitly subscribed names we already reported as nonexistent.
    reported_absent: HashSet<String>,
    /// The next response must be sent even when it is empty: the first one for this type,
    /// or the last part of an update whose earlier parts were marked `more`.
    owes_response: bool,
    /// Something may differ between the client and the resources.
    dirty: bool,
    /// Resources of the last complete diff while nothing else changed (skips re-diffing).
    last_diffed: Option<Arc<TypeResources>>,
    /// Where a full diff of these exact resources stopped at the size cap: how many
    /// candidates it had passed (so the next response continues there, not at the start).
    resume: Option<(Arc<TypeResources>, usize)>,
    /// The stream's authenticated principal: resources restricted to other readers are
    /// never sent (see [`XdsResource::readers`]); `None` reads only unrestricted ones.
    reader: Option<Arc<str>>,
    /// Diffs completed so far (the last part of each sent, or nothing to send).
    completed_diffs: u64,
}

impl TypeSubscription {
    /// State for the first request of a type on a stream.
    pub(crate) fn first_request(
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
        initial_resource_versions: HashMap<String, String>,
    ) -> Self {
        let mut state = Self {
            // Legacy wildcard: a first request naming nothing subscribes to everything.
            wildcard: subscribe.is_empty(),
            names: HashSet::new(),
            client_has: ClientView::declared(initial_resource_versions),
            reported_absent: HashSet::new(),
            owes_response: true,
            dirty: true,
            last_diffed: None,
            resume: None,
            reader: None,
            completed_diffs: 0,
        };
        state.change(subscribe, unsubscribe);
        state
    }

    /// The subscription of a stream authenticated as `principal`.
    #[must_use]
    pub(crate) fn read_as(mut self, principal: &str) -> Self {
        self.reader = Some(principal.into());
        self
    }

    /// `resource`, if this stream may receive it.
    fn readable<'r>(&self, resource: Option<&'r Arc<XdsResource>>) -> Option<&'r Arc<XdsResource>> {
        resource.filter(|r| r.is_readable_by(self.reader.as_deref()))
    }

    /// Applies subscribe/unsubscribe lists of a later request (subscribe first, then
    /// unsubscribe, so `*` in both means "nothing").
    pub(crate) fn change(&mut self, subscribe: Vec<String>, unsubscribe: Vec<String>) {
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return;
        }
        for name in subscribe {
            if name == WILDCARD {
                self.wildcard = true;
            } else {
                self.reported_absent.remove(&name);
                self.names.insert(name);
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
            } else {
                self.reported_absent.remove(&name);
                self.names.remove(&name);
            }
        }
        self.mark_dirty();
    }

    /// The resources may have changed.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
        self.last_diffed = None;
        self.resume = None;
    }

    /// Resources changed: re-diff unless this exact set was already diffed.
    pub(crate) fn resources_changed(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Diffs completed so far: the stream's held-back removals wait on it (see
    /// [`super::held`]).
    pub(crate) fn completed_diffs(&self) -> u64 {
        self.completed_diffs
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    pub(crate) fn subscribed_names(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn client_resource_count(&self) -> usize {
        self.client_has.len()
    }

    /// The next response to send, at most about `max_bytes` of resources, or None when the
    /// client is up to date. Records what it returns as held by the client.
    pub(crate) fn next_delta(
        &mut self,
        resources: &Arc<TypeResources>,
        max_bytes: usize,
    ) -> Option<Delta> {
        if !self.dirty {
            return None;
        }
        if self
            .last_diffed
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, resources))
        {
            self.dirty = false;
            return self.take_owed_response(Delta::default());
        }
        let mut delta = Delta::default();
        let complete = match self.changed_names(resources) {
            Some(changed) => self.collect_changed(resources, &changed, max_bytes, &mut delta),
            None => {
                let resume_at = self
                    .resume
                    .take()
                    .filter(|(diffed, _)| Arc::ptr_eq(diffed, resources))
                    .map(|(_, passed)| passed);
                let stopped_at =
                    self.collect_upserts(resources, resume_at, max_bytes, &mut delta.upserts);
                if resume_at.is_none() {
                    // a continued diff already sent these removals in its first response
                    self.collect_removals(resources, &mut delta.removed);
                }
                self.resume = stopped_at.map(|passed| (Arc::clone(resources), passed));
                stopped_at.is_none()
            }
        };
        self.collect_absent(resources, &mut delta.removed);
        for resource in &delta.upserts {
            self.client_has.record_sent(resource);
        }
        delta.more = !complete;
        if complete {
            self.dirty = false;
            self.completed_diffs += 1;
            self.last_diffed = Some(Arc::clone(resources));
        }
        if delta.upserts.is_empty() && delta.removed.is_empty() && !delta.more {
            return self.take_owed_response(delta);
        }
        // after a part marked `more`, the client waits for a last part, even an empty one
        self.owes_response = delta.more;
        Some(delta)
    }

    /// For a wildcard subscription that was complete at an earlier version of `resources`
    /// whose changes since are remembered: the names those changes touched (so an edit
    /// costs each stream the size of the edit, not of the whole type).
    fn changed_names<'a>(&self, resources: &'a TypeResources) -> Option<Vec<&'a str>> {
        if !self.wildcard {
            // explicit subscriptions already diff only their own (few) names
            return None;
        }
        let since = self.last_diffed.as_ref()?.generation();
        let mut names: Vec<&str> = resources.changed_since(since)?.collect();
        names.sort_unstable();
        names.dedup();
        Some(names)
    }

    /// The wildcard diff restricted to `changed`: upserts what the client lacks, removes what
    /// no longer exists; returns false when `max_bytes` cut the upserts short.
    fn collect_changed(
        &mut self,
        resources: &TypeResources,
        changed: &[&str],
        max_bytes: usize,
        delta: &mut Delta,
    ) -> bool {
        let mut budget = Budget::new(max_bytes);
        for name in changed {
            match self.readable(resources.get(name)) {
                Some(resource) => {
                    if self.client_has.is_current(resource) {
                        continue;
                    }
                    if !budget.take(resource) {
                        return false;
                    }
                    delta.upserts.push(Arc::clone(resource));
                }
                None => {
                    if self.client_has.remove(name) {
                        delta.removed.push((*name).to_owned());
                    }
                }
            }
        }
        true
    }

    fn take_owed_response(&mut self, delta: Delta) -> Option<Delta> {
        std::mem::take(&mut self.owes_response).then_some(delta)
    }

    fn is_visible(&self, resource: &XdsResource) -> bool {
        resource.is_readable_by(self.reader.as_deref())
            && (self.wildcard
                || self.names.contains(&resource.name)
                || resource
                    .aliases
                    .iter()
                    .any(|alias| self.names.contains(alias)))
    }

    /// Adds resources the client lacks or holds at another version, skipping the first
    /// `resume_at` candidates; when `max_bytes` cuts the list short, returns how many
    /// candidates were passed.
    fn collect_upserts(
        &self,
        resources: &TypeResources,
        resume_at: Option<usize>,
        max_bytes: usize,
        out: &mut Vec<Arc<XdsResource>>,
    ) -> Option<usize> {
        let skip = resume_at.unwrap_or(0);
        let mut budget = Budget::new(max_bytes);
        let mut seen = HashSet::new();
        let candidates: Box<dyn Iterator<Item = &Arc<XdsResource>>> = if self.wildcard {
            Box::new(
                resources
                    .iter()
                    .filter(|r| self.readable(Some(r)).is_some()),
            )
        } else {
            Box::new(
                self.names
                    .iter()
                    .filter_map(|name| self.readable(resources.resolve(name))),
            )
        };
        for (passed, resource) in candidates.enumerate().skip(skip) {
            let outdated = !self.client_has.is_current(resource);
            if !outdated || !seen.insert(resource.name.as_str()) {
                continue;
            }
            if !budget.take(resource) {
                return Some(passed);
            }
            out.push(Arc::clone(resource));
        }
        None
    }

    /// Names the client holds that no longer exist or are no longer subscribed.
    fn collect_removals(&mut self, resources: &TypeResources, out: &mut Vec<String>) {
        let gone: Vec<String> = self
            .client_has
            .names()
            .filter(|name| !resources.get(name).is_some_and(|r| self.is_visible(r)))
            .map(str::to_owned)
            .collect();
        for name in gone {
            self.client_has.remove(&name);
            out.push(name);
        }
    }

    /// Explicit names that resolve to nothing (or to a resource this stream may not read)
    /// are reported once in `removed_resources`, so an on-demand client learns the answer
    /// instead of waiting. A name this response already removes (the resource was deleted)
    /// counts as reported too.
    fn collect_absent(&mut self, resources: &TypeResources, out: &mut Vec<String>) {
        let reader = self.reader.clone();
        let absent = |name: &str| {
            resources
                .resolve(name)
                .is_none_or(|r| !r.is_readable_by(reader.as_deref()))
        };
        self.reported_absent.retain(|name| absent(name));
        if self.names.is_empty() {
            // a wildcard-only subscription: no explicit name to report (and no set to build
            // from this response's removals, which can be the whole type)
            return;
        }
        // A set, not `out.contains`: a request may name tens of thousands of absent names.
        // Borrowed names, the new ones pushed after.
        let removed: HashSet<&str> = out.iter().map(String::as_str).collect();
        let mut newly_absent = Vec::new();
        for name in &self.names {
            if absent(name)
                && !self.client_has.contains(name)
                && self.reported_absent.insert(name.clone())
                && !removed.contains(name.as_str())
            {
                if resources.resolve(name).is_some() {
                    tracing::warn!(
                        resource = %name,
                        principal = reader.as_deref().unwrap_or("-"),
                        "xDS subscription to a resource this caller may not read; answered as absent"
                    );
                }
                newly_absent.push(name.clone());
            }
        }
        out.extend(newly_absent);
    }
}

/// Caps a response's size; the first resource always fits so progress is guaranteed.
struct Budget {
    remaining: usize,
    taken_any: bool,
}

impl Budget {
    fn new(max_bytes: usize) -> Self {
        Self {
            remaining: max_bytes,
            taken_any: false,
        }
    }

    fn take(&mut self, resource: &XdsResource) -> bool {
        let size = resource.body.encoded_len() + resource.name.len() + resource.version.len();
        if self.taken_any && size > self.remaining {
            return false;
        }
        self.taken_any = true;
        self.remaining = self.remaining.saturating_sub(size);
        true
    }
}

#[cfg(test)]
#[path = "subscription_tests.rs"]
mod tests;
