//! [`StateStore`]: the single writer side (xDS client or local config) and the lock-free
//! reader side (`snapshot()`) of the mesh state.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use weft_proto::{security::Authorization, workload::Address};

use super::index::Index;
use super::{AddressRecord, LocalConfig, MeshState};
use crate::validation::ValidationError;
use weft_policy::CompiledPolicy;

/// Holds the current [`MeshState`] and the writer's indexes.
///
/// Readers call [`StateStore::snapshot`] (one atomic load, no lock). Writers apply updates;
/// each update validates every resource on its own, keeps the previous version of any
/// rejected resource, updates the indexes of the changed resources only and publishes a
/// new snapshot.
#[derive(Debug)]
pub struct StateStore {
    current: ArcSwap<MeshState>,
    resources: Mutex<Resources>,
    generation: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Resources {
    index: Index,
    generation: u64,
}

/// What an update did.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct UpdateOutcome {
    /// Resources rejected (NACK these; their previous versions, if any, stay in force).
    pub rejected: Vec<ValidationError>,
    /// Generation of the snapshot published by this update.
    pub generation: u64,
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StateStore {
    /// An empty store (generation 0).
    #[must_use]
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(MeshState::default()),
            resources: Mutex::new(Resources::default()),
            generation: watch::Sender::new(0),
        }
    }

    /// The current snapshot. Lock-free; hold it for the duration of one decision.
    #[must_use]
    pub fn snapshot(&self) -> Arc<MeshState> {
        self.current.load_full()
    }

    /// Notified with the new generation after every publish (the data path rechecks open
    /// connections on change).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Applies a delta of `istio.workload.Address` resources: `(name, resource)` upserts and
    /// removed names.
    pub fn update_addresses(
        &self,
        upserts: impl IntoIterator<Item = (String, Address)>,
        removed: &[String],
    ) -> UpdateOutcome {
        let mut resources = self.lock();
        let mut rejected = Vec::new();
        for (name, address) in upserts {
            match AddressRecord::validate(Some(&name), address) {
                Ok(record) => resources.index.put_address(record),
                Err(error) => rejected.push(error),
            }
        }
        for name in removed {
            resources.index.remove_address(name);
        }
        let generation = self.publish(&mut resources);
        UpdateOutcome {
            rejected,
            generation,
        }
    }

    /// Applies a delta of `istio.security.Authorization` resources.
    pub fn update_authorizations(
        &self,
        upserts: impl IntoIterator<Item = (String, Authorization)>,
        removed: &[String],
    ) -> UpdateOutcome {
        let mut resources = self.lock();
        let mut rejected = Vec::new();
        for (name, policy) in upserts {
            match CompiledPolicy::compile(Some(&name), &policy) {
                Ok(compiled) => resources.index.put_policy(name, Arc::new(compiled)),
                Err(error) => rejected.push(error),
            }
        }
        for name in removed {
            resources.index.remove_policy(name);
        }
        let generation = self.publish(&mut resources);
        UpdateOutcome {
            rejected,
            generation,
        }
    }

    /// Replaces everything with an already validated local configuration.
    pub fn replace_all(&self, config: LocalConfig) -> u64 {
        let mut resources = self.lock();
        resources.index.replace(&config.addresses, &config.policies);
        self.publish(&mut resources)
    }

    fn publish(&self, resources: &mut Resources) -> u64 {
        resources.generation += 1;
        let state = resources.index.publish(resources.generation);
        self.current.store(Arc::new(state));
        self.generation.send_replace(resources.generation);
        resources.generation
    }

    /// Index updates do not panic short of a bug; if one did, the published snapshot stays
    /// whole and the writer keeps going rather than stopping every later update.
    fn lock(&self) -> MutexGuard<'_, Resources> {
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
