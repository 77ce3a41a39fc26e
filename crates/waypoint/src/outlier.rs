//! Passive outlier detection: an endpoint (workload uid) that fails
//! [`OutlierConfig::consecutive_failures`] times in a row (5xx answers or connect failures)
//! is ejected for `base_ejection * times ejected` (capped at `max_ejection`). Endpoint
//! choice skips ejected endpoints unless that would leave none ([`OutlierDetector::filter`]):
//! outlier detection never takes a whole service down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use weft_upstream::{Endpoint, MeshService};

/// Tuning of outlier detection.
#[derive(Debug, Clone, Copy)]
pub struct OutlierConfig {
    /// Consecutive failures that eject an endpoint (default 5).
    pub consecutive_failures: u32,
    /// Ejection time of a first ejection (default 30 s); it grows with each ejection.
    pub base_ejection: Duration,
    /// Longest ejection (default 300 s).
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    consecutive: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// Per-endpoint failure counts and ejections.
#[derive(Debug, Default)]
pub struct OutlierDetector {
    config: OutlierConfig,
    endpoints: Mutex<HashMap<String, Health>>,
}

impl OutlierDetector {
    /// A detector with `config`.
    #[must_use]
    pub fn new(config: OutlierConfig) -> Self {
        Self {
            config,
            endpoints: Mutex::default(),
        }
    }

    /// Records the outcome of one attempt to the endpoint `uid`; true when it was ejected
    /// by this failure.
    pub fn record(&self, uid: &str, failed: bool) -> bool {
        let mut endpoints = self.lock();
        if !failed {
            if let Some(health) = endpoints.get_mut(uid) {
                health.consecutive = 0;
            }
            return false;
        }
        let health = endpoints.entry(uid.to_owned()).or_default();
        health.consecutive += 1;
        if health.consecutive < self.config.consecutive_failures {
            return false;
        }
        health.consecutive = 0;
        health.ejections += 1;
        let time = self
            .config
            .base_ejection
            .saturating_mul(health.ejections)
            .min(self.config.max_ejection);
        health.ejected_until = Some(Instant::now() + time);
        tracing::warn!(endpoint = uid, ejection = ?time, "ejecting endpoint after consecutive failures");
        true
    }

    /// Whether `uid` is ejected now.
    #[must_use]
    pub fn is_ejected(&self, uid: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .get(uid)
            .and_then(|h| h.ejected_until)
            .is_some_and(|until| until > now)
    }

    /// `service` without its ejected endpoints, or unchanged when none is ejected or all are.
    #[must_use]
    pub fn filter(&self, service: &Arc<MeshService>) -> Arc<MeshService> {
        self.filter_except(service, &[])
    }

    /// `service` without its ejected endpoints and without `tried` (workload uids a retry
    /// should avoid); unchanged when that leaves nothing.
    #[must_use]
    pub fn filter_except(&self, service: &Arc<MeshService>, tried: &[String]) -> Arc<MeshService> {
        let endpoints = service.endpoints();
        let now = Instant::now();
        let health = self.lock();
        let avoided = |endpoint: &Endpoint| {
            let uid = endpoint.workload.uid();
            let ejected = (health.get(uid).and_then(|h| h.ejected_until)).is_some_and(|t| t > now);
            ejected || tried.iter().any(|tried| tried == uid)
        };
        // The common case (nothing ejected, nothing tried) allocates nothing.
        let avoiding = endpoints.iter().filter(|e| avoided(e)).count();
        if avoiding == 0 || avoiding == endpoints.len() {
            return Arc::clone(service);
        }
        let kept: Vec<Endpoint> = endpoints.iter().filter(|e| !avoided(e)).cloned().collect();
        drop(health);
        Arc::new(MeshService::new(Arc::clone(service.record()), kept))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_and_grows() {
        let detector = OutlierDetector::new(OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
        });
        assert!(!detector.record("a", true));
        assert!(!detector.record("a", false), "a success resets the count");
        assert!(!detector.record("a", true));
        assert!(!detector.record("a", true));
        assert!(detector.record("a", true));
        assert!(detector.is_ejected("a"));
        assert!(!detector.is_ejected("b"));
        let health = |d: &OutlierDetector| d.lock().get("a").map(|h| h.ejections);
        assert_eq!(health(&detector), Some(1));
        for _ in 0..3 {
            detector.record("a", true);
        }
        assert_eq!(health(&detector), Some(2));
    }
}
