//! Open streams per caller: an authenticated principal (one bearer token's node or
//! identity) may hold at most [`ServerConfig::max_streams_per_caller`](super::ServerConfig)
//! streams at once; a new stream over the limit is refused with `RESOURCE_EXHAUSTED`
//! (open ones are kept), counted in `xds_streams_refused_total` and logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Open streams by principal.
#[derive(Debug)]
pub(crate) struct CallerStreams {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl CallerStreams {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::default(),
        }
    }

    /// A slot for a new stream of `principal`, or `None` when it holds its limit.
    pub(crate) fn admit(self: &Arc<Self>, principal: &str) -> Option<CallerSlot> {
        let mut open = self.lock();
        let count = open.entry(principal.to_owned()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(CallerSlot {
            streams: Arc::clone(self),
            principal: principal.to_owned(),
        })
    }

    /// The limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open stream counted against its caller; released when dropped.
#[derive(Debug)]
pub(crate) struct CallerSlot {
    streams: Arc<CallerStreams>,
    principal: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(count) = open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}
