//! Following a path on disk: an OS watcher whose relevant events are grouped into bursts,
//! and an action run once per burst, after no relevant event has arrived for the debounce
//! time (an editor's save, a `git checkout` or a Kubernetes Secret update is many events).
//! The config store and the control plane's token file both follow their files this way.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

/// Keeps a watch alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    burst: mpsc::UnboundedSender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Watches `path` (`mode`: the directory alone or all below it) on the current tokio
    /// runtime; `relevant` picks the events (and watcher errors) that start or extend a
    /// burst; `on_burst` runs after each burst and returns false to stop following.
    ///
    /// # Errors
    /// If the OS watcher cannot be set up.
    pub fn start<R, F, Fut>(
        path: &Path,
        mode: notify::RecursiveMode,
        relevant: R,
        debounce: Duration,
        mut on_burst: F,
    ) -> notify::Result<Self>
    where
        R: Fn(&notify::Result<notify::Event>) -> bool + Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        use notify::Watcher as _;
        let (burst, mut signals) = mpsc::unbounded_channel();
        let signal = burst.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            if relevant(&event) {
                let _ = signal.send(());
            }
        })?;
        watcher.watch(path, mode)?;
        let task = tokio::spawn(async move {
            while signals.recv().await.is_some() {
                while let Ok(Some(())) = tokio::time::timeout(debounce, signals.recv()).await {}
                if !on_burst().await {
                    return;
                }
            }
        });
        Ok(Self {
            _watcher: watcher,
            burst,
            task,
        })
    }

    /// Starts a burst as an event would (e.g. to catch up with changes made before the
    /// watch started).
    pub fn poke(&self) {
        let _ = self.burst.send(());
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
