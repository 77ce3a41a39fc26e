//! Following one kind, or one object by name: a `kube` watcher (list, then watch from the
//! list's resourceVersion; resumption from the last version seen when a watch ends; a fresh
//! list after 410 Gone; bookmarks; backoff on errors) whose events update the observed
//! objects. A relist replaces what it covers as a whole (the kind's objects, or the one
//! object), so objects deleted while no watch was open are removed and none is added twice.
//!
//! One object is watched in its namespace with the field selector `metadata.name=NAME`:
//! the API sends that object and nothing else of its kind.

use super::sync::FirstSync;
use crate::convert::{object_ref, parse};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;
use weft_api::{Kind, LoadResult, ObjectRef, ObservedObjects};

/// How long a watch whose version the cluster does not serve waits before choosing the
/// version again.
const RESELECT_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// What one watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Watched {
    /// Every object of a kind, cluster-wide.
    Kind(Kind),
    /// One object, by name.
    Object(ObjectRef),
}

impl Watched {
    fn kind(&self) -> Kind {
        match self {
            Watched::Kind(kind) => *kind,
            Watched::Object(object) => object.kind,
        }
    }

    /// How the first sync names it.
    pub(super) fn label(&self) -> String {
        match self {
            Watched::Kind(kind) => kind.name().to_owned(),
            Watched::Object(object) => object.to_string(),
        }
    }
}

/// One watch: what it covers and where it reports.
pub(super) struct Follow {
    pub watched: Watched,
    pub objects: Arc<ObservedObjects>,
    pub config: watcher::Config,
    /// Told once the watch listed for the first time (or found its kind not served).
    pub sync: Arc<FirstSync>,
}

impl Follow {
    /// Runs until the client is gone or the task is aborted. The version watched is the
    /// first the cluster serves; when the API answers that it does not serve it (any
    /// more), the version is chosen again after [`RESELECT_AFTER`] (a CRD installed or
    /// upgraded meanwhile).
    pub(super) async fn run(self, client: kube::Client) {
        let kind = self.watched.kind();
        let namespace = match &self.watched {
            Watched::Kind(_) => None,
            Watched::Object(object) => object.namespace.clone(),
        };
        loop {
            let resource = super::kinds::served_resource(&client, kind, namespace.as_deref()).await;
            if !self.follow(client.clone(), &resource).await {
                return;
            }
            tokio::time::sleep(RESELECT_AFTER).await;
        }
    }

    /// Watches at `resource` until the stream ends (false) or the API says it does not
    /// serve it (true).
    async fn follow(&self, client: kube::Client, resource: &kube::core::ApiResource) -> bool {
        let kind = self.watched.kind();
        let (api, config): (Api<DynamicObject>, _) = match &self.watched {
            Watched::Kind(_) => (Api::all_with(client, resource), self.config.clone()),
            Watched::Object(object) => {
                let api = match object.namespace.as_deref() {
                    Some(namespace) => Api::namespaced_with(client, namespace, resource),
                    None => Api::all_with(client, resource),
                };
                let by_name = format!("metadata.name={}", object.name);
                (api, self.config.clone().fields(&by_name))
            }
        };
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut listing = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listing.clear(),
                Ok(Event::InitApply(object)) => listing.push(parse(kind, resource, &object)),
                Ok(Event::InitDone) => self.listed(std::mem::take(&mut listing)),
                Ok(Event::Apply(object)) => {
                    let (object_ref, result) = parse(kind, resource, &object);
                    self.objects.apply(&object_ref, result);
                }
                Ok(Event::Delete(object)) => {
                    self.objects.remove(&object_ref(kind, &object));
                }
                Err(error) => {
                    if self.report(&error) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// A complete list: it replaces what this watch covers.
    fn listed(&self, listed: Vec<(ObjectRef, LoadResult)>) {
        let count = listed.len();
        match &self.watched {
            Watched::Kind(kind) => {
                let changes = self.objects.replace_kind(*kind, listed).len();
                tracing::info!(kind = %kind, objects = count, changes, "listed");
            }
            Watched::Object(wanted) => {
                let mut found = false;
                for (object_ref, result) in listed {
                    if object_ref == *wanted {
                        found = true;
                        self.objects.apply(&object_ref, result);
                    }
                }
                if !found {
                    self.objects.remove(wanted);
                }
                tracing::debug!(object = %wanted, found, "listed by name");
            }
        }
        self.sync.listed(&self.watched.label());
    }

    /// Logs a watch error (the watcher retries with backoff). A kind the cluster does
    /// not serve (its CRD is not installed) counts as listed, with no objects; returns
    /// whether that is the error.
    fn report(&self, error: &watcher::Error) -> bool {
        let not_served = matches!(
            error,
            watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.is_not_found()
        );
        let watched = self.watched.label();
        if not_served {
            tracing::warn!(%watched, "not served by this cluster (CRD not installed?); looking again in {RESELECT_AFTER:?}");
            self.sync.listed(&watched);
        } else {
            tracing::warn!(%watched, %error, "watch failed; retrying");
        }
        not_served
    }
}
