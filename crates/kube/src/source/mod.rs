//! The Kubernetes API as the control plane's object source: one watcher per kind
//! ([`kinds::WATCHED`]) and one per referenced Secret or ConfigMap ([`referenced`], watched
//! by name), feeding an [`ObservedObjects`], which the control plane follows through
//! [`weft_api::ObjectSource`] exactly as it follows a config directory.

mod follow;
pub mod kinds;
mod named;
mod referenced;
mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_api::{Kind, ObjectRef, ObjectSource, ObservedObjects};

/// How the watches run.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `timeoutSeconds` asked of each watch request (`None`: kube's default, under the
    /// API server's 5 minutes); a watch that ends resumes from the last version seen.
    pub watch_timeout: Option<Duration>,
    /// Objects watched by name whatever references them (the mesh config ConfigMap).
    pub always_watched: Vec<ObjectRef>,
}

impl WatchOptions {
    /// The defaults for a mesh whose root namespace is `root_namespace`: its mesh config
    /// ConfigMap (`istio`) is watched by name.
    #[must_use]
    pub fn for_root_namespace(root_namespace: &str) -> WatchOptions {
        WatchOptions {
            always_watched: vec![ObjectRef {
                kind: Kind::ConfigMap,
                namespace: Some(root_namespace.to_owned()),
                name: weft_control::translate::MESH_CONFIG_MAP.to_owned(),
            }],
            ..WatchOptions::default()
        }
    }
}

/// The running watches and the objects they keep current. Stops them when dropped.
pub struct ApiSource {
    objects: Arc<ObservedObjects>,
    pending: watch::Receiver<BTreeSet<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiSource {
    /// Starts the watches (see [`ApiSource::spawn`]) and returns once the first sync is
    /// done, so the first snapshot is complete.
    pub async fn start(client: kube::Client, options: &WatchOptions) -> ApiSource {
        let source = ApiSource::spawn(client, options);
        source.synced().await;
        source
    }

    /// Starts a watch of every kind in [`kinds::WATCHED`] and of every referenced object,
    /// and returns at once; [`ApiSource::pending`] says what the first sync waits for.
    #[must_use]
    pub fn spawn(client: kube::Client, options: &WatchOptions) -> ApiSource {
        let objects = ObservedObjects::new();
        let labels = kinds::WATCHED.iter().map(|k| k.name().to_owned());
        let first_sync = Arc::new(sync::FirstSync::new(
            labels.chain([named::REFERENCES.to_owned()]),
        ));
        let pending = first_sync.subscribe();
        let mut config = kube::runtime::watcher::Config::default();
        if let Some(timeout) = options.watch_timeout {
            config = config.timeout(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1));
        }
        let named = named::NamedWatches {
            client: client.clone(),
            objects: Arc::clone(&objects),
            config: config.clone(),
            sync: Arc::clone(&first_sync),
            fixed: options.always_watched.clone(),
            running: BTreeMap::new(),
        };
        let changes = objects.subscribe();
        let mut tasks = vec![tokio::spawn(named.run(changes, pending.clone()))];
        tasks.extend(kinds::WATCHED.iter().map(|&kind| {
            let follow = follow::Follow {
                watched: follow::Watched::Kind(kind),
                objects: Arc::clone(&objects),
                config: config.clone(),
                sync: Arc::clone(&first_sync),
            };
            tokio::spawn(follow.run(client.clone()))
        }));
        ApiSource {
            objects,
            pending,
            tasks,
        }
    }

    /// Completes once the first sync is done: every kind listed (or found not served by
    /// the cluster), then every object referenced at that point.
    pub async fn synced(&self) {
        let mut pending = self.pending.clone();
        let _ = pending.wait_for(BTreeSet::is_empty).await;
        tracing::info!(
            kinds = kinds::WATCHED.len(),
            "Kubernetes API listed; following changes"
        );
    }

    /// What the first sync still waits for (kind names and `Kind/namespace/name` of
    /// objects watched by name); empty once it is done, and from then on.
    #[must_use]
    pub fn pending(&self) -> watch::Receiver<BTreeSet<String>> {
        self.pending.clone()
    }

    /// The objects, kept current by the watches.
    #[must_use]
    pub fn objects(&self) -> Arc<ObservedObjects> {
        Arc::clone(&self.objects)
    }
}

impl Drop for ApiSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
