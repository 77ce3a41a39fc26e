//! The per-service retry budget: retries in flight to a service may not exceed a share of
//! its requests in flight ([`BUDGET_PERCENT`], at least [`MIN_RETRY_CONCURRENCY`]), so that
//! retries cannot multiply the load on a service that is already failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Share of active requests that may be retries.
pub const BUDGET_PERCENT: usize = 20;
/// Retries always allowed in flight, whatever the request count.
pub const MIN_RETRY_CONCURRENCY: usize = 3;

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// Active requests and retries per service key.
#[derive(Debug, Default)]
pub struct RetryBudgets {
    services: Mutex<HashMap<String, Arc<Counts>>>,
}

/// A request in flight to a service (counted until dropped).
#[derive(Debug)]
pub struct ActiveRequest {
    counts: Arc<Counts>,
}

/// A retry in flight (counted until dropped).
#[derive(Debug)]
pub struct ActiveRetry {
    counts: Arc<Counts>,
}

impl RetryBudgets {
    /// Counts a request to `service` until the returned guard drops.
    pub fn request(&self, service: &str) -> ActiveRequest {
        let counts = {
            let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(services.entry(service.to_owned()).or_default())
        };
        counts.requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest { counts }
    }
}

impl ActiveRequest {
    /// A retry, if the service's budget allows one now.
    #[must_use]
    pub fn retry(&self) -> Option<ActiveRetry> {
        let requests = self.counts.requests.load(Ordering::Relaxed);
        let allowed = (requests * BUDGET_PERCENT / 100).max(MIN_RETRY_CONCURRENCY);
        let previous = self.counts.retries.fetch_add(1, Ordering::Relaxed);
        if previous >= allowed {
            self.counts.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ActiveRetry {
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.counts.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for ActiveRetry {
    fn drop(&mut self) {
        self.counts.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_active_requests() {
        let budgets = RetryBudgets::default();
        let requests: Vec<_> = (0..20).map(|_| budgets.request("ns/a")).collect();
        // 20% of 20 = 4 retries at once.
        let retries: Vec<_> = (0..10).filter_map(|_| requests[0].retry()).collect();
        assert_eq!(retries.len(), 4);
        drop(retries);
        assert!(
            requests[0].retry().is_some(),
            "finished retries free the budget"
        );
        let lone = budgets.request("ns/b");
        let retries: Vec<_> = (0..10).filter_map(|_| lone.retry()).collect();
        assert_eq!(retries.len(), MIN_RETRY_CONCURRENCY);
    }
}
