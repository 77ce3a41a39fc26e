//! The control plane's handle for changing what the server serves, with debouncing: a burst
//! of edits becomes one published snapshot, hence one push per stream.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::resource::{Snapshot, XdsResource};

/// How edits are grouped into pushes.
#[derive(Debug, Clone, Copy)]
pub struct DebounceConfig {
    /// Publish once no edit arrived for this long.
    pub quiet: Duration,
    /// Publish at the latest this long after the first edit of a burst, even if edits keep
    /// coming.
    pub max_delay: Duration,
}

impl Default for DebounceConfig {
    /// 10 ms of quiet: the config store upstream already groups an editor's burst into one
    /// batch of edits, so this stage only has to join the few `apply` calls of one refresh
    /// (and of refreshes that follow each other closely); it adds at most 10 ms per edit.
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// A snapshot as streams see it: the content plus when its oldest unpublished edit happened
/// (the start of the push latency measurement).
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) snapshot: Snapshot,
    pub(crate) first_edit_at: Instant,
    /// False only for the placeholder before the first publish: streams send nothing until
    /// the control plane has published its initial state, so a restarted control plane
    /// never tells proxies to delete everything they hold.
    pub(crate) initialized: bool,
}

#[derive(Debug, Default)]
struct Staging {
    snapshot: Snapshot,
    first_edit_at: Option<Instant>,
    /// The first edit is always published, even if it changed nothing (an empty initial
    /// state is still a state).
    announced: bool,
}

/// Changes the resources the server serves. Cheap to clone; every clone edits the same
/// state. Edits are visible to streams after the debounce window (see [`DebounceConfig`]).
/// Edits that change nothing (same versions) cause no push at all.
///
/// Streams are answered only after the first publish: at startup, publish the initial state
/// of every type the control plane serves (in one burst; an empty `replace` counts).
#[derive(Debug, Clone)]
pub struct ResourcePublisher {
    staging: Arc<Mutex<Staging>>,
    edits: Arc<watch::Sender<u64>>,
}

impl ResourcePublisher {
    /// Creates the publisher and spawns its debounce task (on the current tokio runtime).
    /// The task ends when every clone of the publisher is dropped.
    pub(crate) fn spawn(config: DebounceConfig) -> (Self, watch::Receiver<Arc<Published>>) {
        let staging = Arc::new(Mutex::new(Staging::default()));
        let (edits_tx, edits_rx) = watch::channel(0u64);
        let (out_tx, out_rx) = watch::channel(Arc::new(Published {
            snapshot: Snapshot::default(),
            first_edit_at: Instant::now(),
            initialized: false,
        }));
        tokio::spawn(debounce_loop(
            Arc::clone(&staging),
            edits_rx,
            out_tx,
            config,
        ));
        let publisher = Self {
            staging,
            edits: Arc::new(edits_tx),
        };
        (publisher, out_rx)
    }

    /// Inserts/replaces `upserts` and deletes `removals` (by name) in one type URL.
    pub fn apply<N: Into<String>>(
        &self,
        type_url: &str,
        upserts: impl IntoIterator<Item = XdsResource>,
        removals: impl IntoIterator<Item = N>,
    ) {
        self.edit(|snapshot| {
            snapshot.apply(type_url, upserts, removals.into_iter().map(Into::into))
        });
    }

    /// [`ResourcePublisher::apply`] for several type URLs as one edit: streams never see a
    /// snapshot with some of these types changed and not the others (a workload's new
    /// policy list without its new policy).
    pub fn apply_types<'t>(
        &self,
        edits: impl IntoIterator<Item = (&'t str, Vec<XdsResource>, Vec<String>)>,
    ) {
        self.edit(|snapshot| {
            let mut changed = false;
            for (type_url, upserts, removals) in edits {
                changed |= snapshot.apply(type_url, upserts, removals);
            }
            changed
        });
    }

    /// Makes `resources` the complete content of one type URL (absent names are removed).
    pub fn replace(&self, type_url: &str, resources: impl IntoIterator<Item = XdsResource>) {
        self.edit(|snapshot| snapshot.replace(type_url, resources));
    }

    /// The current content including edits not yet published (for `/debug/configz`).
    #[must_use]
    pub fn current(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    fn edit(&self, change: impl FnOnce(&mut Snapshot) -> bool) {
        let generation = {
            let mut staging = self.lock();
            if !change(&mut staging.snapshot) && staging.announced {
                return;
            }
            staging.announced = true;
            staging.first_edit_at.get_or_insert_with(Instant::now);
            staging.snapshot.generation()
        };
        self.edits.send_replace(generation);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Staging> {
        // The lock only guards plain data updates; a panic mid-update cannot leave it torn in
        // a way later readers care about, so recover from poisoning.
        self.staging.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn debounce_loop(
    staging: Arc<Mutex<Staging>>,
    mut edits: watch::Receiver<u64>,
    out: watch::Sender<Arc<Published>>,
    config: DebounceConfig,
) {
    loop {
        if edits.changed().await.is_err() {
            return;
        }
        wait_for_quiet(&mut edits, config).await;
        let published = {
            let mut staging = staging.lock().unwrap_or_else(PoisonError::into_inner);
            Published {
                snapshot: staging.snapshot.clone(),
                first_edit_at: staging.first_edit_at.take().unwrap_or_else(Instant::now),
                initialized: true,
            }
        };
        tracing::debug!(
            generation = published.snapshot.generation(),
            "publishing xDS snapshot"
        );
        out.send_replace(Arc::new(published));
    }
}

/// Returns once no edit arrived for `quiet`, or `max_delay` after the burst began, or when
/// the publisher is gone.
async fn wait_for_quiet(edits: &mut watch::Receiver<u64>, config: DebounceConfig) {
    let burst_deadline = Instant::now() + config.max_delay;
    loop {
        let deadline = (Instant::now() + config.quiet).min(burst_deadline);
        match tokio::time::timeout_at(deadline, edits.changed()).await {
            Ok(Ok(())) if Instant::now() < burst_deadline => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, value: &[u8]) -> XdsResource {
        XdsResource::new(
            name,
            vec![],
            prost_types::Any {
                type_url: "t".into(),
                value: value.to_vec(),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn burst_of_edits_is_published_once() {
        let config = DebounceConfig {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        let (publisher, mut rx) = ResourcePublisher::spawn(config);
        for i in 0..50u8 {
            publisher.apply("t", [resource("a", &[i])], Vec::<String>::new());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rx.changed().await.expect("publisher alive");
        assert_eq!(rx.borrow_and_update().snapshot.generation(), 50);
        let next = tokio::time::timeout(Duration::from_secs(10), rx.changed()).await;
        assert!(next.is_err(), "a single burst must publish exactly once");
    }

    #[tokio::test(start_paused = true)]
    async fn endless_edits_still_publish_after_max_delay() {
        let config = DebounceConfig {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let (publisher, mut rx) = ResourcePublisher::spawn(config);
        let started = Instant::now();
        let editor = tokio::spawn(async move {
            for i in 0..1000u32 {
                publisher.apply("t", [resource("a", &i.to_le_bytes())], Vec::<String>::new());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        rx.changed().await.expect("publisher alive");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(700));
        editor.abort();
    }
}
