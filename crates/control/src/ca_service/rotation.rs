//! Drives a root rotation on the running control plane: takes a rotation asked for with
//! `weft ca rotate` (a request file in the CA state directory), prepares the new root through
//! the [`RootStore`], moves the phases forward as certificates are renewed or expire
//! ([`RootRotation::advance`]), keeps the published trust bundle file current, makes the new
//! root the stored current one once the old is dropped, and renders where it stands for
//! `/debug/caz` (`weft status`).

use serde_json::{Value, json};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::ca::rotation::Advanced;
use weft_identity::ca::{NextRoot, RootRotation, RootStore};

/// How often the driver looks for a request and for a phase that can end. Phases end when
/// certificates are renewed or expire, which takes seconds at the least.
pub const ROTATION_TICK: Duration = Duration::from_millis(500);

/// The rotation, its store and the last problem met (shown by `weft status`).
pub struct RotationDriver {
    rotation: Arc<RootRotation>,
    store: Arc<dyn RootStore>,
    last_error: Mutex<Option<String>>,
}

impl RotationDriver {
    /// A driver for `rotation`, whose roots `store` keeps. Publishes the current bundle.
    pub fn new(rotation: Arc<RootRotation>, store: Arc<dyn RootStore>) -> Self {
        let driver = Self {
            rotation,
            store,
            last_error: Mutex::new(None),
        };
        driver.publish_bundle();
        driver
    }

    /// The rotation driven.
    pub fn rotation(&self) -> &Arc<RootRotation> {
        &self.rotation
    }

    /// Takes a pending request and moves a phase forward when it can; returns what changed.
    pub fn step(&self, now: SystemTime) -> Option<Advanced> {
        if let Some(next) = self.store.take_request() {
            self.begin(&next);
        }
        let advanced = self.rotation.advance(now)?;
        match advanced {
            Advanced::NewRootSigns => {
                tracing::info!("root rotation: every holder has both roots; the new root signs");
            }
            Advanced::OldRootDropped => {
                tracing::info!(
                    "root rotation: no live certificate chains to the old root; it is dropped"
                );
                if let Err(err) = self.store.promote_next() {
                    self.failed(format!("saving the new root as current: {err}"));
                }
                self.publish_bundle();
            }
        }
        Some(advanced)
    }

    /// Starts a rotation to `next` (also used by tests instead of a request file).
    pub fn begin(&self, next: &NextRoot) {
        let started = self
            .store
            .prepare_next(next)
            .map_err(|err| err.to_string())
            .and_then(|ca| self.rotation.begin(ca).map_err(|err| err.to_string()));
        match started {
            Ok(()) => {
                tracing::info!(?next, "root rotation started: both roots are published");
                *self.lock_error() = None;
                self.publish_bundle();
            }
            Err(err) => self.failed(format!("cannot start the root rotation: {err}")),
        }
    }

    /// Runs [`Self::step`] every [`ROTATION_TICK`], forever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ROTATION_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.step(SystemTime::now());
        }
    }

    /// Where the rotation stands, as `/debug/caz` serves it.
    pub fn status_json(&self) -> Value {
        let status = self.rotation.status(SystemTime::now());
        let roots: Vec<Value> = status
            .roots
            .iter()
            .map(|root| {
                json!({
                    "fingerprint_sha256": root.fingerprint,
                    "not_after": rfc3339_utc(root.not_after),
                    "signing": root.signing,
                    "live_certificates": root.live_certificates,
                })
            })
            .collect();
        json!({
            "phase": status.phase.name(),
            "since": rfc3339_utc(status.since),
            "roots": roots,
            "holders_without_bundle": status.holders_without_bundle,
            "unknown_until": status.unknown_until.map(rfc3339_utc),
            "last_error": self.lock_error().clone(),
        })
    }

    fn publish_bundle(&self) {
        if let Err(err) = self.store.publish_bundle(&self.rotation.bundle_pem()) {
            self.failed(format!("writing the trust bundle: {err}"));
        }
    }

    fn failed(&self, message: String) {
        tracing::error!("{message}");
        *self.lock_error() = Some(message);
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn rfc3339_utc(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
