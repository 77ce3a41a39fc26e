//! [`ShardedMap`]: a hash map split into a fixed number of shards, each behind an `Arc`.
//!
//! Cloning the map (publishing a snapshot) copies only the shard pointers; a writer that
//! changes a key afterwards copies the one shard holding it (`Arc::make_mut`), so a delta
//! costs the size of the shards it touches, never the whole map. Readers see plain
//! `HashMap` lookups.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::Arc;

/// Shards per map: with 10,000 entries a touched shard holds about 160.
const SHARDS: usize = 64;

/// A hash map whose shards are shared between snapshots until written.
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<K, V> {
    /// Empty until the first insert (an empty map allocates nothing); then `SHARDS` long.
    shards: Vec<Arc<HashMap<K, V>>>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self { shards: Vec::new() }
    }
}

/// The shard of `key`. A fixed-key hash only spreads keys over shards; each shard's own
/// `HashMap` keeps its random keys.
fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    // The remainder is below `SHARDS`, so the cast keeps it whole.
    (hash % SHARDS as u64) as usize
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// The value of `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards.get(shard_of(key))?.get(key)
    }

    /// True when `key` has a value.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the previous value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.shard_mut(shard_of(&key)).insert(key, value)
    }

    /// Removes `key` (copies its shard only when the key is there).
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        self.shard_mut(shard_of(key)).remove(key)
    }

    /// The value of `key` for changing, inserted as `V::default()` when absent.
    pub(crate) fn entry_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.shard_mut(shard_of(&key)).entry(key).or_default()
    }

    /// Changes the value of `key` with `change` if it exists; removes the key when
    /// `change` returns `false` (e.g. a list became empty).
    pub(crate) fn update<Q>(&mut self, key: &Q, change: impl FnOnce(&mut V) -> bool)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return;
        }
        let shard = self.shard_mut(shard_of(key));
        if let Some(value) = shard.get_mut(key)
            && !change(value)
        {
            shard.remove(key);
        }
    }

    /// All values (unordered).
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    /// All entries (unordered).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    fn shard_mut(&mut self, index: usize) -> &mut HashMap<K, V> {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Arc::default()).collect();
        }
        Arc::make_mut(&mut self.shards[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_its_values_while_the_original_changes() {
        let mut map: ShardedMap<String, u32> = ShardedMap::default();
        for i in 0..1000 {
            map.insert(format!("k{i}"), i);
        }
        let snapshot = map.clone();
        map.insert("k1".into(), 99);
        map.remove("k2");
        map.update("k3", |v| {
            *v += 1;
            true
        });
        map.update("k4", |_| false);
        assert_eq!(snapshot.get("k1"), Some(&1));
        assert_eq!(snapshot.get("k2"), Some(&2));
        assert_eq!(snapshot.get("k3"), Some(&3));
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(map.get("k1"), Some(&99));
        assert_eq!(map.get("k2"), None);
        assert_eq!(map.get("k3"), Some(&4));
        assert_eq!(map.get("k4"), None);
        assert_eq!(map.len(), 998);
    }

    #[test]
    fn a_write_copies_only_the_touched_shard() {
        let mut map: ShardedMap<u32, u32> = ShardedMap::default();
        for i in 0..10_000 {
            map.insert(i, i);
        }
        let snapshot = map.clone();
        map.insert(7, 70);
        let shared = map
            .shards
            .iter()
            .zip(&snapshot.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
    }

    #[test]
    fn removing_an_absent_key_leaves_every_shard_shared() {
        let mut map: ShardedMap<u32, u32> = ShardedMap::default();
        map.insert(1, 1);
        let snapshot = map.clone();
        assert_eq!(map.remove(&2), None);
        map.update(&3, |_| false);
        let shared = map
            .shards
            .iter()
            .zip(&snapshot.shards)
            .all(|(a, b)| Arc::ptr_eq(a, b));
        assert!(shared);
    }
}
