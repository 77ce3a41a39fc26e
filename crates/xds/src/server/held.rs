//! Removals a stream holds back until the other types it was sending are up to date:
//! make-before-break across types (a workload is moved to its new policy before the old
//! policy goes). Pure bookkeeping, no I/O.

use std::collections::{HashSet, VecDeque};

/// One response's removals of one type, held back while other types had changes to send.
#[derive(Debug)]
struct Held {
    type_url: String,
    names: Vec<String>,
    /// The other types that had changes pending, with how many diffs each had completed
    /// then: the removals may go once each has completed another, or has nothing pending.
    waits_for: Vec<(String, u64)>,
}

/// A type's progress as [`HeldRemovals::take_ready`] needs it: the diffs it completed so
/// far, and whether it has changes pending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) completed_diffs: u64,
    pub(crate) pending: bool,
}

/// The removals a stream holds back, oldest first.
#[derive(Debug, Default)]
pub(crate) struct HeldRemovals {
    batches: VecDeque<Held>,
}

impl HeldRemovals {
    /// Holds `names` (removals of `type_url`) until every type of `waits_for` (type URL,
    /// diffs completed now) completed another diff or has nothing pending.
    pub(crate) fn hold(
        &mut self,
        type_url: &str,
        names: Vec<String>,
        waits_for: Vec<(String, u64)>,
    ) {
        self.batches.push_back(Held {
            type_url: type_url.to_owned(),
            names,
            waits_for,
        });
    }

    /// Names of `type_url` just sent (upserted: re-created; or removed directly) are no
    /// longer held: removing them later would undo the upsert or repeat the removal.
    pub(crate) fn forget<'n>(&mut self, type_url: &str, sent: impl IntoIterator<Item = &'n str>) {
        if self.batches.iter().all(|held| held.type_url != type_url) {
            return;
        }
        let sent: HashSet<&str> = sent.into_iter().collect();
        for held in self.batches.iter_mut().filter(|h| h.type_url == type_url) {
            held.names.retain(|name| !sent.contains(name.as_str()));
        }
        self.batches.retain(|held| !held.names.is_empty());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether removals of `type_url` are held back.
    pub(crate) fn holds(&self, type_url: &str) -> bool {
        self.batches.iter().any(|held| held.type_url == type_url)
    }

    /// The first type with removals whose wait is over, and those removals (every ready
    /// batch of that type, in one sorted list). `progress` is `None` for a type the stream
    /// no longer follows.
    pub(crate) fn take_ready(
        &mut self,
        progress: impl Fn(&str) -> Option<Progress>,
    ) -> Option<(String, Vec<String>)> {
        let ready = |held: &Held| {
            held.waits_for.iter().all(|(type_url, completed_then)| {
                progress(type_url)
                    .is_none_or(|now| !now.pending || now.completed_diffs > *completed_then)
            })
        };
        let first = self.batches.iter().position(ready)?;
        let type_url = self.batches[first].type_url.clone();
        let mut names = Vec::new();
        let mut kept = VecDeque::with_capacity(self.batches.len());
        for held in self.batches.drain(..) {
            if held.type_url == type_url && ready(&held) {
                names.extend(held.names);
            } else {
                kept.push_back(held);
            }
        }
        self.batches = kept;
        names.sort_unstable();
        names.dedup();
        Some((type_url, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "type.googleapis.com/istio.security.Authorization";
    const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn address(completed_diffs: u64, pending: bool) -> impl Fn(&str) -> Option<Progress> {
        move |type_url| {
            (type_url == ADDRESS).then_some(Progress {
                completed_diffs,
                pending,
            })
        }
    }

    #[test]
    fn removals_wait_until_each_awaited_type_completed_another_diff() {
        let mut held = HeldRemovals::default();
        held.hold(POLICY, strings(&["old"]), vec![(ADDRESS.to_owned(), 3)]);
        // Address still sends the diff it had then (e.g. in 128 KiB parts), or newer
        // changes keep it busy: nothing goes.
        assert_eq!(held.take_ready(address(3, true)), None);
        // A later removal waits for a later diff than the first one.
        held.hold(POLICY, strings(&["later"]), vec![(ADDRESS.to_owned(), 4)]);
        assert_eq!(
            held.take_ready(address(4, true)),
            Some((POLICY.to_owned(), strings(&["old"])))
        );
        assert!(held.holds(POLICY));
        assert_eq!(held.take_ready(address(4, true)), None);
        // Nothing pending any more: everything held may go.
        assert_eq!(
            held.take_ready(address(4, false)),
            Some((POLICY.to_owned(), strings(&["later"])))
        );
        assert!(held.is_empty());
    }

    #[test]
    fn a_name_sent_again_is_no_longer_held_and_ready_batches_of_a_type_merge() {
        let mut held = HeldRemovals::default();
        held.hold(POLICY, strings(&["a", "b"]), vec![(ADDRESS.to_owned(), 1)]);
        held.hold(POLICY, strings(&["c"]), vec![(ADDRESS.to_owned(), 1)]);
        held.hold(ADDRESS, strings(&["w"]), vec![]);
        held.forget(POLICY, ["a"]);
        held.forget(POLICY, ["c"]);
        // Address's own removal waits for nothing and comes first.
        assert_eq!(
            held.take_ready(address(1, true)),
            Some((ADDRESS.to_owned(), strings(&["w"])))
        );
        assert_eq!(
            held.take_ready(address(2, true)),
            Some((POLICY.to_owned(), strings(&["b"])))
        );
        assert!(held.is_empty());
    }
}
