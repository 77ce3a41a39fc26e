//! [`ConfigStore`]: the objects of a config directory, kept current by watching it.
//!
//! The directory is read recursively (the same rules as `weft analyze`, `.weftignore`
//! included). Every change burst (editor saves, `git checkout`) is debounced into one reload,
//! which re-reads the files and emits typed [`ConfigEvent`]s for what changed. A file with an
//! error keeps contributing its last good objects (none if it never loaded cleanly); its
//! findings are available from [`ConfigStore::file_errors`] for `weft status`.

use crate::files::find_manifests;
use crate::finding::{Code, Finding, Severity};
use crate::load::{LoadResult, load_file};
use crate::object::{LoadedObject, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use crate::watch::WatchHandle;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// What identifies one version of a file's content without reading it. Editors and tools
/// write by rename (new inode) or in place (new mtime/ctime, nanosecond resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: u64,
}

impl Fingerprint {
    /// `None` when the metadata cannot be read, or when the file changed within the last
    /// [`SETTLE`] (a second write in the same timestamp tick would look unchanged); the
    /// file is then read again on the next reload.
    fn of(path: &Path) -> Option<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let settled = |time: std::time::SystemTime| time.elapsed().is_ok_and(|age| age >= SETTLE);
        if !meta.modified().is_ok_and(settled) || !settled(changed_time(&meta)) {
            return None;
        }
        Some(Fingerprint {
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        })
    }
}

/// How old a file's last change must be before its fingerprint is trusted. Local
/// filesystems stamp times in ticks of at most 10 ms (older kernels), so a later write
/// always shows a new time; filesystems with coarser times (some network ones) may miss a
/// same-size rewrite within their tick.
const SETTLE: Duration = Duration::from_millis(100);

fn changed_time(meta: &std::fs::Metadata) -> std::time::SystemTime {
    use std::os::unix::fs::MetadataExt;
    let since_epoch = Duration::new(
        u64::try_from(meta.ctime()).unwrap_or(0),
        u32::try_from(meta.ctime_nsec()).unwrap_or(0),
    );
    std::time::UNIX_EPOCH + since_epoch
}

#[derive(Default)]
struct FileState {
    /// Objects of the last clean load of the file.
    good: Vec<Arc<LoadedObject>>,
    /// Position in `good` of each identity the file defines (its first definition).
    by_ref: HashMap<ObjectRef, usize>,
    /// Error findings of the latest load (empty when it loaded cleanly).
    errors: Vec<Finding>,
    /// The file version last read (`None`: re-read on every reload).
    fingerprint: Option<Fingerprint>,
}

impl FileState {
    fn new(
        good: Vec<Arc<LoadedObject>>,
        errors: Vec<Finding>,
        fingerprint: Option<Fingerprint>,
    ) -> Self {
        let mut by_ref = HashMap::with_capacity(good.len());
        for (position, object) in good.iter().enumerate() {
            by_ref.entry(object.object.object_ref()).or_insert(position);
        }
        FileState {
            good,
            by_ref,
            errors,
            fingerprint,
        }
    }
}

/// A file whose objects may have changed, with the identities it defined before.
struct Touched {
    path: PathBuf,
    previous: Vec<ObjectRef>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
    /// The winning object of each identity (first file in path order).
    merged: HashMap<ObjectRef, Arc<LoadedObject>>,
    /// The files that define each identity, in path order.
    definers: HashMap<ObjectRef, BTreeSet<PathBuf>>,
    /// Error findings of the latest directory walk (unreadable directories or entries), or
    /// why the whole directory could not be read.
    walk_errors: Vec<Finding>,
    subscribers: Vec<mpsc::UnboundedSender<ConfigEvent>>,
    generation: u64,
}

impl State {
    /// Removes the state of `path`: its last good objects, and the note for [`Self::remerge`]
    /// of what it defined.
    fn take_file(&mut self, path: &Path) -> (Vec<Arc<LoadedObject>>, Touched) {
        let (good, previous) = match self.files.remove(path) {
            Some(file) => (file.good, file.by_ref.into_keys().collect()),
            None => Default::default(),
        };
        let note = Touched {
            path: path.to_owned(),
            previous,
        };
        (good, note)
    }

    /// Brings `definers` and `merged` up to date after the files in `touched` were loaded
    /// again or removed; returns the events for the identities whose winner changed. The
    /// cost follows the objects of the touched files, not the size of the store.
    fn remerge(&mut self, touched: &[Touched]) -> Vec<ConfigEvent> {
        let mut affected: BTreeSet<ObjectRef> = BTreeSet::new();
        for Touched { path, previous } in touched {
            for object_ref in previous {
                if let Some(paths) = self.definers.get_mut(object_ref) {
                    paths.remove(path);
                }
                affected.insert(object_ref.clone());
            }
            for object_ref in self
                .files
                .get(path)
                .into_iter()
                .flat_map(|f| f.by_ref.keys())
            {
                self.definers
                    .entry(object_ref.clone())
                    .or_default()
                    .insert(path.clone());
                affected.insert(object_ref.clone());
            }
        }
        let mut events = Vec::new();
        for object_ref in affected {
            let winner = self.winner(&object_ref);
            let event = match (self.merged.get(&object_ref), &winner) {
                (None, Some(new)) => Some(ConfigEvent::Added(Arc::clone(new))),
                (Some(old), None) => Some(ConfigEvent::Deleted(Arc::clone(old))),
                (Some(old), Some(new)) if !Arc::ptr_eq(old, new) && old.object != new.object => {
                    Some(ConfigEvent::Updated {
                        old: Arc::clone(old),
                        new: Arc::clone(new),
                    })
                }
                _ => None,
            };
            events.extend(event);
            match winner {
                Some(object) => self.merged.insert(object_ref, object),
                None => {
                    self.definers.remove(&object_ref);
                    self.merged.remove(&object_ref)
                }
            };
        }
        events
    }

    /// The object of the first file (in path order) that defines `object_ref`.
    fn winner(&self, object_ref: &ObjectRef) -> Option<Arc<LoadedObject>> {
        let path = self.definers.get(object_ref)?.first()?;
        let file = self.files.get(path)?;
        file.good.get(*file.by_ref.get(object_ref)?).cloned()
    }
}

/// Whether `dir` can be listed; the finding says why not.
fn readable_dir(dir: &Path) -> Result<(), Finding> {
    let Err(error) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let source = crate::object::Source {
        file: dir.to_owned(),
        line: 0,
    };
    let message = format!(
        "cannot read the config directory: {error}; the objects last read from it stay in force"
    );
    Err(Finding::new(Code::ReadError, None, source, message))
}

/// The walk findings worth keeping until the next reload: errors (unreadable directories),
/// with warnings (directory loops) logged.
fn walk_errors(findings: Vec<Finding>) -> Vec<Finding> {
    let mut errors = Vec::new();
    for finding in findings {
        match finding.severity {
            Severity::Error => errors.push(finding),
            Severity::Warning => tracing::warn!(%finding, "config directory"),
            Severity::Info => {}
        }
    }
    errors
}

/// The state of `path` after loading it again: its new objects if it loaded cleanly, or
/// its last good objects with the new errors.
fn next_file_state(
    path: &Path,
    previous_good: Vec<Arc<LoadedObject>>,
    result: LoadResult,
    fingerprint: Option<Fingerprint>,
) -> FileState {
    let errors: Vec<Finding> = result
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    // a failed read (not a bad file) is retried on the next reload
    let fingerprint = fingerprint.filter(|_| !errors.iter().any(|f| f.code == Code::ReadError));
    let good = if errors.is_empty() {
        result.objects.into_iter().map(Arc::new).collect()
    } else {
        tracing::warn!(file = %path.display(), errors = errors.len(), first = %errors[0], "config file has errors; keeping its last good objects");
        previous_good
    };
    FileState::new(good, errors, fingerprint)
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
            .flat_map(|f| f.good.iter().map(|o| LoadedObject::clone(o)))
            .collect();
        ConfigSnapshot::new(objects)
    }

    /// How many reloads have happened (starts at 1 after [`Self::open`]).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Error findings of files whose latest version could not be used, and of directories
    /// that could not be read (for `weft status`); their last good objects stay.
    #[must_use]
    pub fn file_errors(&self) -> Vec<Finding> {
        let state = self.lock();
        state
            .walk_errors
            .iter()
            .chain(state.files.values().flat_map(|f| &f.errors))
            .cloned()
            .collect()
    }

    /// Re-reads the files of the directory that are new or changed since the last reload
    /// (by size, modification and change time, inode), updates the store and sends the
    /// events; returns them too. Unchanged files keep their parsed objects, so the cost of
    /// a reload follows the edit, not the size of the directory.
    pub fn reload(&self) -> Vec<ConfigEvent> {
        if let Err(finding) = readable_dir(&self.root) {
            return self.keep_everything(finding);
        }
        let found = find_manifests(std::slice::from_ref(&self.root));
        let present: Vec<(PathBuf, Option<Fingerprint>)> = found
            .files
            .into_iter()
            .map(|p| {
                let fingerprint = Fingerprint::of(&p);
                (p, fingerprint)
            })
            .collect();
        let to_load: Vec<&(PathBuf, Option<Fingerprint>)> = {
            let state = self.lock();
            present
                .iter()
                .filter(|(path, fingerprint)| {
                    fingerprint.is_none()
                        || state.files.get(path).map(|f| f.fingerprint) != Some(*fingerprint)
                })
                .collect()
        };
        let loads: Vec<(&PathBuf, Option<Fingerprint>, LoadResult)> = to_load
            .into_iter()
            .map(|(path, fingerprint)| (path, *fingerprint, load_file(path)))
            .collect();
        let mut state = self.lock();
        state.walk_errors = walk_errors(found.findings);
        let mut touched = Vec::new();
        let kept: HashSet<&Path> = present.iter().map(|(p, _)| p.as_path()).collect();
        // a file below a directory that could not be read is unknown, not gone
        let gone: Vec<PathBuf> = state
            .files
            .keys()
            .filter(|p| !kept.contains(p.as_path()))
            .filter(|p| !found.unreadable.iter().any(|dir| p.starts_with(dir)))
            .cloned()
            .collect();
        for path in gone {
            touched.push(state.take_file(&path).1);
        }
        for (path, fingerprint, result) in loads {
            let (good, note) = state.take_file(path);
            let file = next_file_state(path, good, result, fingerprint);
            state.files.insert(path.clone(), file);
            touched.push(note);
        }
        let events = state.remerge(&touched);
        state.generation += 1;
        state
            .subscribers
            .retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
        events
    }

    /// A reload that found the directory itself unreadable (moved away, deleted, no
    /// permission): every object stays as last read, and the reason is reported.
    fn keep_everything(&self, finding: Finding) -> Vec<ConfigEvent> {
        let mut state = self.lock();
        let objects: usize = state.files.values().map(|f| f.good.len()).sum();
        tracing::error!(%finding, objects, "config directory unreadable; keeping the objects last read from it");
        state.walk_errors = vec![finding];
        state.generation += 1;
        Vec::new()
    }

    /// Watches the directory and reloads after each burst of changes, once no change has
    /// arrived for `debounce`. Runs on the current tokio runtime until the handle is dropped.
    ///
    /// # Errors
    /// [`StoreError::Watch`] if the OS watcher cannot be set up.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle, StoreError> {
        let store = Arc::clone(self);
        let reload = move || {
            let store = Arc::clone(&store);
            async move {
                let reloaded = tokio::task::spawn_blocking(move || store.reload()).await;
                if let Err(error) = reloaded {
                    tracing::error!(%error, "config reload failed");
                }
                true
            }
        };
        let relevant = |event: &notify::Result<notify::Event>| {
            event.as_ref().is_ok_and(|e| !e.kind.is_access())
        };
        WatchHandle::start(
            &self.root,
            notify::RecursiveMode::Recursive,
            relevant,
            debounce,
            reload,
        )
        .map_err(|source| StoreError::Watch {
            path: self.root.clone(),
            source,
        })
    }
}
