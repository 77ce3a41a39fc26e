//! [`ConfigStore`]: the objects of a config directory, kept current by watching it.
//!
//! The directory is read recursively (the same rules as `weft analyze`, `.weftignore`
//! included). Every change burst (editor saves, `git checkout`) is debounced into one reload,
//! which re-reads the files and emits typed [`ConfigEvent`]s for what changed. A file with an
//! error keeps contributing its last good objects (none if it never loaded cleanly); its
//! findings are available from [`ConfigStore::file_errors`] for `weft status`.

use crate::finding::{Finding, Severity};
use crate::load::{collect_manifest_files, load_file};
use crate::object::{LoadedObject, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// A change to one object.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigEvent {
    /// A new object.
    Added(Arc<LoadedObject>),
    /// An object whose content changed.
    Updated {
        /// The previous version.
        old: Arc<LoadedObject>,
        /// The current version.
        new: Arc<LoadedObject>,
    },
    /// An object that is gone.
    Deleted(Arc<LoadedObject>),
}

impl ConfigEvent {
    /// The identity of the object concerned.
    #[must_use]
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            ConfigEvent::Added(o)
            | ConfigEvent::Deleted(o)
            | ConfigEvent::Updated { new: o, .. } => o.object.object_ref(),
        }
    }
}

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The config directory does not exist or is not a directory.
    #[error("config directory {path} is not a readable directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The file watcher could not be started.
    #[error("cannot watch config directory {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: notify::Error,
    },
}

#[derive(Default)]
struct FileState {
    /// Objects of the last clean load of the file.
    good: Vec<LoadedObject>,
    /// Error findings of the latest load (empty when it loaded cleanly).
    errors: Vec<Finding>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
    merged: HashMap<ObjectRef, Arc<LoadedObject>>,
    subscribers: Vec<mpsc::UnboundedSender<ConfigEvent>>,
    generation: u64,
}

/// The objects of one config directory. Cheap to share (`Arc`); all methods take `&self`.
pub struct ConfigStore {
    root: PathBuf,
    state: Mutex<State>,
}

impl ConfigStore {
    /// Reads `root` once. Files with errors contribute nothing yet (see [`Self::file_errors`]).
    ///
    /// # Errors
    /// [`StoreError::NotADirectory`] if `root` is not a directory.
    pub fn open(root: &Path) -> Result<Arc<ConfigStore>, StoreError> {
        if !root.is_dir() {
            return Err(StoreError::NotADirectory {
                path: root.to_owned(),
            });
        }
        let store = Arc::new(ConfigStore {
            root: root.to_owned(),
            state: Mutex::new(State::default()),
        });
        store.reload();
        Ok(store)
    }

    /// The watched directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is replaced wholesale under the lock; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Receives every event from now on.
    #[must_use]
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ConfigEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().subscribers.push(sender);
        receiver
    }

    /// The current objects, indexed.
    #[must_use]
    pub fn snapshot(&self) -> ConfigSnapshot {
        let state = self.lock();
        let objects = state
            .files
            .values()
            .flat_map(|f| f.good.iter().cloned())
            .collect();
        ConfigSnapshot::new(objects)
    }

    /// How many reloads have happened (starts at 1 after [`Self::open`]).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Error findings of files whose latest version could not be used (for `weft status`).
    #[must_use]
    pub fn file_errors(&self) -> Vec<Finding> {
        self.lock()
            .files
            .values()
            .flat_map(|f| f.errors.iter().cloned())
            .collect()
    }

    /// Re-reads the directory, updates the store and sends the events; returns them too.
    pub fn reload(&self) -> Vec<ConfigEvent> {
        let (paths, _skipped) = collect_manifest_files(std::slice::from_ref(&self.root));
        let loads: Vec<(PathBuf, crate::load::LoadResult)> = paths
            .into_iter()
            .map(|p| {
                let result = load_file(&p);
                (p, result)
            })
            .collect();
        let mut state = self.lock();
        let mut files = BTreeMap::new();
        for (path, result) in loads {
            let previous = state.files.remove(&path).unwrap_or_default();
            let errors: Vec<Finding> = result
                .findings
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .collect();
            if errors.is_empty() {
                files.insert(
                    path,
                    FileState {
                        good: result.objects,
                        errors,
                    },
                );
            } else {
                tracing::warn!(file = %path.display(), errors = errors.len(), first = %errors[0], "config file has errors; keeping its last good objects");
                files.insert(
                    path,
                    FileState {
                        good: previous.good,
                        errors,
                    },
                );
            }
        }
        state.files = files;
        let merged = merge(&state.files);
        let events = diff(&state.merged, &merged);
        state.merged = merged;
        state.generation += 1;
        state
            .subscribers
            .retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
        events
    }

    /// Watches the directory and reloads after each burst of changes, once no change has
    /// arrived for `debounce`. Runs on the current tokio runtime until the handle is dropped.
    ///
    /// # Errors
    /// [`StoreError::Watch`] if the OS watcher cannot be set up.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle, StoreError> {
        use notify::Watcher;
        let (signal, mut signals) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = signal.send(());
                }
            })
            .map_err(|source| StoreError::Watch {
                path: self.root.clone(),
                source,
            })?;
        watcher
            .watch(&self.root, notify::RecursiveMode::Recursive)
            .map_err(|source| StoreError::Watch {
                path: self.root.clone(),
                source,
            })?;
        let store = Arc::clone(self);
        let task = tokio::spawn(async move {
            while signals.recv().await.is_some() {
                while let Ok(Some(())) = tokio::time::timeout(debounce, signals.recv()).await {}
                let store = Arc::clone(&store);
                let reloaded = tokio::task::spawn_blocking(move || store.reload()).await;
                if let Err(error) = reloaded {
                    tracing::error!(%error, "config reload failed");
                }
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps a directory watch alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Objects of all files by identity; on duplicates the first file (in path order) wins.
fn merge(files: &BTreeMap<PathBuf, FileState>) -> HashMap<ObjectRef, Arc<LoadedObject>> {
    let mut merged = HashMap::new();
    for object in files.values().flat_map(|f| &f.good) {
        merged
            .entry(object.object.object_ref())
            .or_insert_with(|| Arc::new(object.clone()));
    }
    merged
}

/// Events turning `old` into `new`, in a stable order (by identity).
fn diff(
    old: &HashMap<ObjectRef, Arc<LoadedObject>>,
    new: &HashMap<ObjectRef, Arc<LoadedObject>>,
) -> Vec<ConfigEvent> {
    let mut events: Vec<ConfigEvent> = Vec::new();
    for (key, object) in new {
        match old.get(key) {
            None => events.push(ConfigEvent::Added(Arc::clone(object))),
            Some(previous) if previous.object != object.object => {
                events.push(ConfigEvent::Updated {
                    old: Arc::clone(previous),
                    new: Arc::clone(object),
                });
            }
            Some(_) => {}
        }
    }
    events.extend(
        old.iter()
            .filter(|(key, _)| !new.contains_key(*key))
            .map(|(_, o)| ConfigEvent::Deleted(Arc::clone(o))),
    );
    events.sort_by_key(ConfigEvent::object_ref);
    events
}
