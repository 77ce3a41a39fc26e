//! Removals a stream holds back until the other types it was sending are up to date on the
//! client (sent and ACKed): make-before-break across types (a workload is moved to its new
//! policy before the old policy goes, and a client that rejected the move keeps the old
//! policy its workload still refers to). Pure bookkeeping, no I/O.

use std::collections::{HashSet, VecDeque};

/// One response's removals of one type, held back while other types had changes to send.
#[derive(Debug)]
struct Held {
    type_url: String,
    names: Vec<String>,
    /// The other types that had changes pending, with how many diffs each had completed
    /// then: the removals may go once each has completed another (or has nothing pending)
    /// and the client ACKed everything of that type it was sent.
    waits_for: Vec<(String, u64)>,
}

impl Held {
    fn is_ready(&self, progress: impl Fn(&str) -> Option<Progress>) -> bool {
        self.waits_for.iter().all(|(type_url, completed_then)| {
            progress(type_url).is_none_or(|now| now.settled_since(*completed_then))
        })
    }
}

/// A type's progress as [`HeldRemovals::take_ready`] needs it: the diffs it completed so
/// far, whether it has changes pending, and whether the client ACKed all it was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) completed_diffs: u64,
    pub(crate) pending: bool,
    pub(crate) acked: bool,
}

impl Progress {
    /// Whether a wait that began when `completed_then` diffs were complete is over.
    fn settled_since(self, completed_then: u64) -> bool {
        self.acked && (!self.pending || self.completed_diffs > completed_then)
    }
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

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether removals of `type_url` are held back.
    pub(crate) fn holds(&self, type_url: &str) -> bool {
        self.batches.iter().any(|held| held.type_url == type_url)
    }

    /// Whether some batch's wait is over (see [`HeldRemovals::take_ready`]).
    pub(crate) fn any_ready(&self, progress: impl Fn(&str) -> Option<Progress>) -> bool {
        self.batches.iter().any(|held| held.is_ready(&progress))
    }

    /// The first type with removals whose wait is over, and those removals (every ready
    /// batch of that type, in one sorted list). `progress` is `None` for a type the stream
    /// no longer follows.
    pub(crate) fn take_ready(
        &mut self,
        progress: impl Fn(&str) -> Option<Progress>,
    ) -> Option<(String, Vec<String>)> {
        let ready = |held: &Held| held.is_ready(&progress);
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

    /// Address's progress, everything sent ACKed.
    fn address(completed_diffs: u64, pending: bool) -> impl Fn(&str) -> Option<Progress> {
        address_acked(completed_diffs, pending, true)
    }

    fn address_acked(
        completed_diffs: u64,
        pending: bool,
        acked: bool,
    ) -> impl Fn(&str) -> Option<Progress> {
        move |type_url| {
            (type_url == ADDRESS).then_some(Progress {
                completed_diffs,
                pending,
                acked,
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
    fn removals_wait_until_the_client_acked_what_the_awaited_type_sent() {
        let mut held = HeldRemovals::default();
        held.hold(POLICY, strings(&["old"]), vec![(ADDRESS.to_owned(), 3)]);
        // The diff went out but the client has not ACKed it (or NACKed it): the policy
        // its workloads may still refer to stays.
        assert!(!held.any_ready(address_acked(4, false, false)));
        assert_eq!(held.take_ready(address_acked(4, false, false)), None);
        assert!(held.any_ready(address_acked(4, false, true)));
        assert_eq!(
            held.take_ready(address_acked(4, false, true)),
            Some((POLICY.to_owned(), strings(&["old"])))
        );
        // A type the stream no longer follows holds nothing back.
        held.hold(POLICY, strings(&["gone"]), vec![(ADDRESS.to_owned(), 5)]);
        assert!(held.any_ready(|_| None));
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
