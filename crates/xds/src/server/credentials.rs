//! The credential each open stream was admitted with, kept so that streams can be checked
//! again when credentials change (a token removed from the control plane's token file must
//! not keep feeding configuration to a stream opened with it, nor one remapped to another
//! principal keep the old principal's resources). A stream that fails the new check, or
//! now stands for another principal, is told through a one-shot signal and closes with
//! UNAUTHENTICATED.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tonic::metadata::MetadataMap;

/// One open stream's credential and the signal that closes it.
struct OpenStream {
    metadata: MetadataMap,
    /// The principal the stream was admitted as (what its resources are filtered for).
    principal: String,
    revoke: Option<oneshot::Sender<()>>,
}

/// The open streams' credentials, by stream id.
#[derive(Default)]
pub(crate) struct OpenStreams(Mutex<HashMap<u64, OpenStream>>);

impl OpenStreams {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, OpenStream>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records stream `id`'s request metadata and principal; the receiver fires if it is
    /// revoked.
    pub(crate) fn insert(
        &self,
        id: u64,
        metadata: MetadataMap,
        principal: String,
    ) -> oneshot::Receiver<()> {
        let (revoke, revoked) = oneshot::channel();
        let stream = OpenStream {
            metadata,
            principal,
            revoke: Some(revoke),
        };
        self.lock().insert(id, stream);
        revoked
    }

    /// Forgets a stream that ended.
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Every open stream's id and metadata (copied, so checks run without the lock).
    pub(crate) fn list(&self) -> Vec<(u64, MetadataMap, String)> {
        let streams = self.lock();
        streams
            .iter()
            .filter(|(_, stream)| stream.revoke.is_some())
            .map(|(id, s)| (*id, s.metadata.clone(), s.principal.clone()))
            .collect()
    }

    /// Tells stream `id` to close; false if it already ended or was revoked.
    pub(crate) fn revoke(&self, id: u64) -> bool {
        let revoke = self.lock().get_mut(&id).and_then(|s| s.revoke.take());
        revoke.is_some_and(|revoke| revoke.send(()).is_ok())
    }
}
