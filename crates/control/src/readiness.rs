//! Readiness of the control plane (`GET /ready` on the admin port): 503 until start-up is
//! complete, naming what it still waits for; 200 from then on.
//!
//! Start-up waits for two things: the certificate authority (its root loaded) and the
//! configuration (a config directory read, or, following the Kubernetes API, the first
//! list of every watched kind and of the objects referenced then). Until both are there,
//! proxies would get an incomplete snapshot, so the xDS and CA port does not answer either;
//! the admin port answers from the start, so liveness holds while a big cluster lists.

use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;
use weft_serve::Page;

/// The certificate authority's entry.
pub const CA: &str = "certificate authority";
/// The configuration's entry (followed by what it waits for, when it says).
pub const CONFIG: &str = "configuration";

/// What start-up still waits for; shared by the admin page and the start-up sequence.
#[derive(Clone)]
pub struct Readiness {
    pending: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Readiness {
    /// Waits for the CA and the configuration.
    #[must_use]
    pub fn new() -> Readiness {
        let pending = [CA, CONFIG].into_iter().map(str::to_owned).collect();
        Readiness {
            pending: Arc::new(watch::channel(pending).0),
        }
    }

    /// `what` is done (for good).
    pub fn done(&self, what: &str) {
        self.pending
            .send_if_modified(|pending| pending.remove(what));
    }

    /// What is still pending, sorted (empty: ready).
    #[must_use]
    pub fn pending(&self) -> Vec<String> {
        self.pending.borrow().iter().cloned().collect()
    }

    /// Marks the configuration done once `source` (what an object source still lists
    /// before it is complete) is empty; meanwhile `/ready` names what it waits for.
    pub async fn follow_config(&self, mut source: watch::Receiver<BTreeSet<String>>) {
        loop {
            let waiting: Vec<String> = source.borrow_and_update().iter().cloned().collect();
            let entry = if waiting.is_empty() {
                None
            } else {
                Some(format!("{CONFIG} (first list of {})", waiting.join(", ")))
            };
            self.pending.send_if_modified(|pending| {
                let before = pending.clone();
                pending.retain(|p| !p.starts_with(CONFIG));
                pending.extend(entry.clone());
                *pending != before
            });
            if entry.is_none() || source.changed().await.is_err() {
                return;
            }
        }
    }

    /// The `/ready` page.
    #[must_use]
    pub fn page(&self) -> Page {
        let pending = self.pending();
        if pending.is_empty() {
            return Page::text("ready\n");
        }
        Page::with_status(
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: waiting for {}\n", pending.join("; ")),
        )
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_once_the_ca_and_every_listed_kind_are_there() {
        let readiness = Readiness::new();
        assert_eq!(
            readiness.page().status,
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        let (lists, source) = watch::channel(BTreeSet::from(["Pod".to_owned()]));
        let follower = readiness.clone();
        let follow = tokio::spawn(async move { follower.follow_config(source).await });
        readiness.done(CA);
        let page = loop {
            let page = readiness.page();
            if String::from_utf8_lossy(&page.body).contains("Pod") {
                break page;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(
            String::from_utf8_lossy(&page.body),
            "not ready: waiting for configuration (first list of Pod)\n"
        );
        lists.send_replace(BTreeSet::new());
        follow.await.expect("followed to the end");
        let page = readiness.page();
        assert_eq!(page.status, http::StatusCode::OK);
        assert_eq!(String::from_utf8_lossy(&page.body), "ready\n");
    }
}
