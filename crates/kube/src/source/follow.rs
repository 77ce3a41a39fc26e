//! Following one kind: a `kube` watcher (list, then watch from the list's resourceVersion;
//! resumption from the last version seen when a watch ends; a fresh list after 410 Gone;
//! bookmarks; backoff on errors) whose events update the observed objects. A relist
//! replaces the kind's objects as a whole, so objects deleted while no watch was open
//! are removed and none is added twice.

use crate::convert::{object_ref, parse};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;
use tokio::sync::mpsc;
use weft_api::{Kind, ObservedObjects};

/// One kind's watch: where it reports.
pub(super) struct Follow {
    pub kind: Kind,
    pub objects: Arc<ObservedObjects>,
    pub config: watcher::Config,
    /// Told the kind once it was listed for the first time (or is not served).
    pub listed: mpsc::UnboundedSender<Kind>,
}

impl Follow {
    /// Runs until the client is gone (never, in a running control plane).
    pub(super) async fn run(self, client: kube::Client) {
        let resource = super::kinds::api_resource(self.kind);
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let mut events = watcher::watcher(api, self.config.clone())
            .default_backoff()
            .boxed();
        let mut listing = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listing.clear(),
                Ok(Event::InitApply(object)) => listing.push(parse(self.kind, &resource, &object)),
                Ok(Event::InitDone) => {
                    let listed = std::mem::take(&mut listing);
                    let count = listed.len();
                    let changes = self.objects.replace_kind(self.kind, listed).len();
                    tracing::info!(kind = %self.kind, objects = count, changes, "listed");
                    let _ = self.listed.send(self.kind);
                }
                Ok(Event::Apply(object)) => {
                    let (object_ref, result) = parse(self.kind, &resource, &object);
                    self.objects.apply(&object_ref, result);
                }
                Ok(Event::Delete(object)) => {
                    self.objects.remove(&object_ref(self.kind, &object));
                }
                Err(error) => self.report(&error),
            }
        }
    }

    /// Logs a watch error (the watcher retries with backoff). A kind the cluster does
    /// not serve (its CRD is not installed) counts as listed, with no objects.
    fn report(&self, error: &watcher::Error) {
        let not_served = matches!(
            error,
            watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.is_not_found()
        );
        if not_served {
            tracing::warn!(kind = %self.kind, "not served by this cluster (CRD not installed?); retrying");
            let _ = self.listed.send(self.kind);
        } else {
            tracing::warn!(kind = %self.kind, %error, "watch failed; retrying");
        }
    }
}
