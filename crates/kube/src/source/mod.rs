//! The Kubernetes API as the control plane's object source: one watcher per kind
//! ([`kinds::WATCHED`]) feeding an [`ObservedObjects`], which the control plane follows
//! through [`weft_api::ObjectSource`] exactly as it follows a config directory.

mod follow;
pub mod kinds;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_api::{Kind, ObservedObjects};

/// How the watches run.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `timeoutSeconds` asked of each watch request (`None`: kube's default, under the
    /// API server's 5 minutes); a watch that ends resumes from the last version seen.
    pub watch_timeout: Option<Duration>,
}

/// The running watches and the objects they keep current. Stops them when dropped.
pub struct ApiSource {
    objects: Arc<ObservedObjects>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiSource {
    /// Starts a watch of every kind in [`kinds::WATCHED`] and returns once each has been
    /// listed (or found not served by the cluster), so the first snapshot is complete.
    pub async fn start(client: kube::Client, options: &WatchOptions) -> ApiSource {
        let objects = ObservedObjects::new();
        let (listed, mut first_lists) = mpsc::unbounded_channel();
        let mut config = kube::runtime::watcher::Config::default();
        if let Some(timeout) = options.watch_timeout {
            config = config.timeout(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1));
        }
        let tasks = kinds::WATCHED
            .iter()
            .map(|&kind| {
                let follow = follow::Follow {
                    kind,
                    objects: Arc::clone(&objects),
                    config: config.clone(),
                    listed: listed.clone(),
                };
                tokio::spawn(follow.run(client.clone()))
            })
            .collect();
        let mut waiting: BTreeSet<Kind> = kinds::WATCHED.iter().copied().collect();
        while !waiting.is_empty() {
            let Some(kind) = first_lists.recv().await else {
                break;
            };
            waiting.remove(&kind);
        }
        tracing::info!(
            kinds = kinds::WATCHED.len(),
            "Kubernetes API listed; following changes"
        );
        ApiSource { objects, tasks }
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
