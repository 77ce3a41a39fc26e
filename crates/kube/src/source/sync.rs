//! The first full sync: what the source still has to list before its objects are complete
//! (every watched kind, then every object watched by name that was referenced at that
//! point). Once nothing is pending the sync is done for good: lists after it (relists,
//! objects referenced later) never make the source incomplete again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// What is still pending, shared by the watches that report their first list.
pub(super) struct FirstSync {
    pending: watch::Sender<BTreeSet<String>>,
    done: AtomicBool,
}

impl FirstSync {
    /// Waits for `pending` (labels such as a kind's name).
    pub(super) fn new(pending: impl IntoIterator<Item = String>) -> FirstSync {
        let pending: BTreeSet<String> = pending.into_iter().collect();
        let done = AtomicBool::new(pending.is_empty());
        FirstSync {
            pending: watch::channel(pending).0,
            done,
        }
    }

    /// Adds `what` to the wait, unless the sync is already done.
    pub(super) fn expect(&self, what: &str) {
        self.pending.send_if_modified(|pending| {
            !self.done.load(Ordering::SeqCst) && pending.insert(what.to_owned())
        });
    }

    /// `what` was listed; the sync is done when it was the last one pending.
    pub(super) fn listed(&self, what: &str) {
        self.pending.send_if_modified(|pending| {
            let removed = pending.remove(what);
            if removed && pending.is_empty() {
                self.done.store(true, Ordering::SeqCst);
            }
            removed
        });
    }

    /// Follows what is pending (empty: done).
    pub(super) fn subscribe(&self) -> watch::Receiver<BTreeSet<String>> {
        self.pending.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::FirstSync;

    #[test]
    fn the_sync_is_done_once_everything_expected_was_listed_and_stays_done() {
        let sync = FirstSync::new(["Pod".to_owned(), "Service".to_owned()]);
        let pending = sync.subscribe();
        sync.listed("Pod");
        sync.expect("Secret shop/cert");
        sync.listed("Service");
        assert_eq!(pending.borrow().len(), 1, "the Secret is still waited for");
        sync.listed("Secret shop/cert");
        assert!(pending.borrow().is_empty());
        sync.expect("Secret shop/later");
        assert!(
            pending.borrow().is_empty(),
            "nothing is waited for after the sync"
        );
    }
}
