//! Versioned resources and the immutable snapshots the server serves them from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use aws_lc_rs::digest;

/// One named resource of some type URL, as the server sends it and the client receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsResource {
    /// Resource name (e.g. a workload uid or `<namespace>/<hostname>`).
    pub name: String,
    /// Opaque version; equal versions mean equal content, so unchanged resources are never
    /// re-sent. [`XdsResource::new`] derives it from the encoded bytes.
    pub version: String,
    /// Other names a client may subscribe by (e.g. `<network>/<ip>`).
    pub aliases: Vec<String>,
    /// The encoded resource.
    pub body: prost_types::Any,
    /// Who may receive it: `None` for every stream; otherwise only streams whose
    /// authenticated principal ([`crate::PeerIdentity::principal`]) is listed (a resource
    /// carrying secrets, such as a gateway's private keys). Any other stream never sees it:
    /// an explicit subscription to it is answered as if it did not exist.
    pub readers: Option<Arc<[String]>>,
}

impl XdsResource {
    /// A resource whose version is a content hash of `body` and `aliases`.
    pub fn new(name: impl Into<String>, aliases: Vec<String>, body: prost_types::Any) -> Self {
        let version = content_version(&aliases, &body);
        Self {
            name: name.into(),
            version,
            aliases,
            body,
            readers: None,
        }
    }

    /// A resource with a version chosen by the producer (it must change whenever the content
    /// does).
    pub fn with_version(
        name: impl Into<String>,
        version: impl Into<String>,
        aliases: Vec<String>,
        body: prost_types::Any,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            aliases,
            body,
            readers: None,
        }
    }

    /// The resource, restricted to streams whose principal is one of `principals` (the
    /// version must already reflect them, so that a change of readers is pushed).
    #[must_use]
    pub fn readable_by(mut self, principals: Vec<String>) -> Self {
        self.readers = Some(principals.into());
        self
    }

    /// Whether a stream authenticated as `principal` may receive this resource.
    #[must_use]
    pub fn is_readable_by(&self, principal: Option<&str>) -> bool {
        match &self.readers {
            None => true,
            Some(readers) => principal.is_some_and(|p| readers.iter().any(|r| r == p)),
        }
    }
}

/// A stable content hash (first 64 bits of SHA-256, hex) over the type URL, the encoded value
/// and the aliases. Stable across processes, so a restarted control plane computes the same
/// versions and a reconnecting client is not sent what it already has.
#[must_use]
pub fn content_version(aliases: &[String], body: &prost_types::Any) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [body.type_url.as_bytes(), &body.value] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    for alias in aliases {
        ctx.update(&(alias.len() as u64).to_le_bytes());
        ctx.update(alias.as_bytes());
    }
    let hash = ctx.finish();
    hash.as_ref()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut out, byte| {
            use std::fmt::Write as _;
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// How many of a type's latest changes are remembered by name, so a stream that was up to
/// date a few changes ago diffs only the names those changes touched, not every resource.
const CHANGE_LOG_LEN: usize = 32;

/// All resources of one type URL at one point in time.
#[derive(Debug, Clone, Default)]
pub struct TypeResources {
    generation: u64,
    resources: HashMap<String, Arc<XdsResource>>,
    alias_to_name: HashMap<String, String>,
    /// The latest changes, oldest first; each one's `from` is the previous one's `to`.
    change_log: VecDeque<Change>,
}

/// One change of a type: from which generation to which, and the names it touched.
#[derive(Debug, Clone)]
struct Change {
    from: u64,
    to: u64,
    names: Arc<[String]>,
}

impl TypeResources {
    /// Snapshot generation in which this type last changed (sent as `system_version_info`).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of resources.
    #[must_use]
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when the type has no resources.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The resource with this exact name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<XdsResource>> {
        self.resources.get(name)
    }

    /// The resource a subscription name refers to: its own name first, then an alias.
    #[must_use]
    pub fn resolve(&self, name_or_alias: &str) -> Option<&Arc<XdsResource>> {
        self.resources.get(name_or_alias).or_else(|| {
            self.alias_to_name
                .get(name_or_alias)
                .and_then(|name| self.resources.get(name))
        })
    }

    /// All resources, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<XdsResource>> {
        self.resources.values()
    }

    /// The names upserted or removed since this type was at generation `since` (possibly
    /// with repeats), or `None` when those changes are no longer all remembered.
    #[must_use]
    pub fn changed_since(&self, since: u64) -> Option<impl Iterator<Item = &str>> {
        let covered = since == self.generation
            || (since < self.generation
                && self.change_log.front().is_some_and(|c| c.from <= since));
        covered.then(|| {
            self.change_log
                .iter()
                .filter(move |change| change.to > since)
                .flat_map(|change| change.names.iter().map(String::as_str))
        })
    }

    /// Moves the type to `generation`, remembering which names the change touched.
    fn record_change(&mut self, generation: u64, names: Vec<String>) {
        if self.change_log.len() == CHANGE_LOG_LEN {
            self.change_log.pop_front();
        }
        self.change_log.push_back(Change {
            from: self.generation,
            to: generation,
            names: names.into(),
        });
        self.generation = generation;
    }

    /// Inserts or replaces (the caller has checked that the version is new).
    fn upsert(&mut self, resource: XdsResource) {
        self.remove(&resource.name);
        for alias in &resource.aliases {
            self.alias_to_name
                .insert(alias.clone(), resource.name.clone());
        }
        self.resources
            .insert(resource.name.clone(), Arc::new(resource));
    }

    /// Removes a resource, if present, and the aliases that point to it.
    fn remove(&mut self, name: &str) {
        let Some(old) = self.resources.remove(name) else {
            return;
        };
        for alias in &old.aliases {
            if self.alias_to_name.get(alias).is_some_and(|n| n == name) {
                self.alias_to_name.remove(alias);
            }
        }
    }
}

/// Every type's resources at one point in time. Cheap to clone (types are shared).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    generation: u64,
    types: BTreeMap<String, Arc<TypeResources>>,
}

impl Snapshot {
    /// Increases by one on every change that altered at least one resource.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The resources of one type URL (None if nothing of that type was ever published).
    #[must_use]
    pub fn resources(&self, type_url: &str) -> Option<&Arc<TypeResources>> {
        self.types.get(type_url)
    }

    /// Type URLs known to this snapshot.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Applies upserts and removals to one type; returns whether anything changed.
    pub(crate) fn apply(
        &mut self,
        type_url: &str,
        upserts: impl IntoIterator<Item = XdsResource>,
        removals: impl IntoIterator<Item = String>,
    ) -> bool {
        let next_generation = self.generation + 1;
        let entry = self.types.entry(type_url.to_owned()).or_default();
        // streams hold the current resources: copy them only for a real change
        let upserts: Vec<XdsResource> = upserts
            .into_iter()
            .filter(|r| {
                entry
                    .get(&r.name)
                    .is_none_or(|old| old.version != r.version)
            })
            .collect();
        let removals: Vec<String> = removals
            .into_iter()
            .filter(|name| entry.get(name).is_some())
            .collect();
        if upserts.is_empty() && removals.is_empty() {
            return false;
        }
        let resources = Arc::make_mut(entry);
        let mut changed_names = Vec::with_capacity(upserts.len() + removals.len());
        for resource in upserts {
            changed_names.push(resource.name.clone());
            resources.upsert(resource);
        }
        for name in removals {
            resources.remove(&name);
            changed_names.push(name);
        }
        resources.record_change(next_generation, changed_names);
        self.generation = next_generation;
        true
    }

    /// Replaces the whole content of one type; returns whether anything changed.
    pub(crate) fn replace(
        &mut self,
        type_url: &str,
        resources: impl IntoIterator<Item = XdsResource>,
    ) -> bool {
        let incoming: HashMap<String, XdsResource> =
            resources.into_iter().map(|r| (r.name.clone(), r)).collect();
        let stale: Vec<String> = self
            .types
            .get(type_url)
            .map(|existing| {
                existing
                    .resources
                    .keys()
                    .filter(|name| !incoming.contains_key(*name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.apply(type_url, incoming.into_values(), stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(value: &[u8]) -> prost_types::Any {
        prost_types::Any {
            type_url: "type.googleapis.com/test.T".into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn version_depends_on_content_and_aliases_only() {
        let a = XdsResource::new("a", vec![], any(b"x"));
        let b = XdsResource::new("b", vec![], any(b"x"));
        let c = XdsResource::new("a", vec![], any(b"y"));
        let d = XdsResource::new("a", vec!["/10.0.0.1".into()], any(b"x"));
        assert_eq!(a.version, b.version);
        assert_ne!(a.version, c.version);
        assert_ne!(a.version, d.version);
        assert_eq!(a.version.len(), 16);
    }

    #[test]
    fn unchanged_upsert_does_not_bump_generation() {
        let mut snap = Snapshot::default();
        assert!(snap.apply("t", [XdsResource::new("a", vec![], any(b"1"))], []));
        assert_eq!(snap.generation(), 1);
        assert!(!snap.apply("t", [XdsResource::new("a", vec![], any(b"1"))], []));
        assert_eq!(snap.generation(), 1);
        assert!(!snap.apply("t", [], ["missing".to_owned()]));
        assert_eq!(snap.generation(), 1);
    }

    #[test]
    fn aliases_resolve_and_follow_their_resource() {
        let mut snap = Snapshot::default();
        snap.apply(
            "t",
            [XdsResource::new(
                "uid-1",
                vec!["net/10.0.0.1".into()],
                any(b"1"),
            )],
            [],
        );
        let types = snap.resources("t").expect("type present");
        assert_eq!(
            types.resolve("net/10.0.0.1").map(|r| r.name.as_str()),
            Some("uid-1")
        );
        assert_eq!(
            types.resolve("uid-1").map(|r| r.name.as_str()),
            Some("uid-1")
        );
        snap.apply(
            "t",
            [XdsResource::new(
                "uid-1",
                vec!["net/10.0.0.2".into()],
                any(b"1"),
            )],
            [],
        );
        let types = snap.resources("t").expect("type present");
        assert!(types.resolve("net/10.0.0.1").is_none());
        assert!(types.resolve("net/10.0.0.2").is_some());
    }

    #[test]
    fn change_log_names_what_changed_since_a_generation_while_it_remembers() {
        let mut snap = Snapshot::default();
        snap.apply("t", [XdsResource::new("a", vec![], any(b"1"))], []);
        snap.apply("other", [XdsResource::new("o", vec![], any(b"1"))], []);
        snap.apply("t", [], ["a".to_owned()]);
        let types = snap.resources("t").expect("type present");
        assert_eq!(types.generation(), 3, "generations are the snapshot's");
        let since = |g| types.changed_since(g).map(Iterator::collect::<Vec<_>>);
        assert_eq!(since(0), Some(vec!["a", "a"]));
        assert_eq!(since(1), Some(vec!["a"]));
        assert_eq!(since(3), Some(vec![]));
        assert_eq!(since(4), None, "a future generation is not trusted");

        for i in 0..=CHANGE_LOG_LEN as u32 {
            snap.apply(
                "t",
                [XdsResource::new("b", vec![], any(&i.to_le_bytes()))],
                [],
            );
        }
        let types = snap.resources("t").expect("type present");
        assert_eq!(
            types.changed_since(3).map(Iterator::count),
            None,
            "forgotten"
        );
        let latest = types.generation();
        assert_eq!(
            types.changed_since(latest - 1).map(Iterator::count),
            Some(1)
        );
    }

    #[test]
    fn replace_removes_absent_names() {
        let mut snap = Snapshot::default();
        snap.replace(
            "t",
            [
                XdsResource::new("a", vec![], any(b"1")),
                XdsResource::new("b", vec![], any(b"2")),
            ],
        );
        assert!(snap.replace("t", [XdsResource::new("a", vec![], any(b"1"))]));
        let types = snap.resources("t").expect("type present");
        assert_eq!(types.len(), 1);
        assert!(types.get("b").is_none());
    }
}
