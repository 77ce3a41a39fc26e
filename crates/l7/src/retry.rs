//! Retries: which attempt outcomes a rule retries and after how long ([`RetryPolicy`]),
//! and the per-service [`RetryBudget`] that caps retries in flight to a share of the
//! requests in flight, so that retries cannot multiply the load on a failing service.
//!
//! Without a budget, every request to a service that fails everything turns into
//! `attempts + 1` requests: a service degraded by load gets several times that load. The
//! budget allows at most [`RetryBudget::DEFAULT_PERCENT`] % of the requests in flight to be
//! retries (a failing service sees at most 1.2 times its load), with a floor of
//! [`RetryBudget::DEFAULT_MIN`] retries in flight so that a quiet service, where 20 % of a
//! handful of requests rounds to nothing, can still retry an occasional failure.

#[cfg(test)]
mod tests;

use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use weft_proto::l7 as pb;

/// Backoff doubles per retry up to this many times the configured minimum.
const BACKOFF_CAP_FACTOR: u32 = 10;

/// How one attempt to a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(StatusCode),
    /// The connection to the backend could not be made.
    ConnectFailure,
    /// The stream or connection was reset before a response.
    Reset,
    /// `timeouts.backendRequest` expired before a response.
    Timeout,
}

/// A rule's `retry`: how many retries, on which status codes, and the minimum wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    codes: Vec<u16>,
    backoff: Duration,
}

impl RetryPolicy {
    /// From the wire form (the converter has filled in weft's defaults).
    #[must_use]
    pub fn from_wire(retry: &pb::Retry) -> Self {
        RetryPolicy {
            attempts: retry.attempts,
            codes: (retry.codes.iter())
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            backoff: Duration::from_millis(retry.backoff_ms),
        }
    }

    /// Retries allowed after the first attempt.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Status codes that are retried.
    #[must_use]
    pub fn codes(&self) -> &[u16] {
        &self.codes
    }

    /// Whether to retry after attempt number `attempt` (1 for the first) ended with
    /// `outcome`: attempts are left, and the outcome is a connect failure, a reset, a
    /// backend timeout or one of the listed status codes.
    #[must_use]
    pub fn should_retry(&self, attempt: u32, outcome: Outcome) -> bool {
        let retriable = match outcome {
            Outcome::Status(status) => self.codes.contains(&status.as_u16()),
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => true,
        };
        retriable && attempt <= self.attempts
    }

    /// The wait before retry number `retry` (1 for the first): the configured minimum,
    /// doubled for each further retry, at most ten times the minimum.
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let factor = (1u32 << doublings).min(BACKOFF_CAP_FACTOR);
        self.backoff.saturating_mul(factor)
    }
}

/// Requests and retries in flight to one service, shared by every request to it (clones
/// share the counts). Lock-free: two atomic counters.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    counts: Arc<Counts>,
    percent: usize,
    min: usize,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// A request in flight, counted until dropped.
#[derive(Debug)]
pub struct RequestGuard {
    counts: Arc<Counts>,
}

/// A retry in flight, counted until dropped.
#[derive(Debug)]
pub struct RetryGuard {
    counts: Arc<Counts>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PERCENT, Self::DEFAULT_MIN)
    }
}

impl RetryBudget {
    /// Share of the requests in flight that may be retries, in percent.
    pub const DEFAULT_PERCENT: usize = 20;
    /// Retries always allowed in flight.
    pub const DEFAULT_MIN: usize = 10;

    /// A budget of `percent` % of requests in flight, at least `min` retries.
    #[must_use]
    pub fn new(percent: usize, min: usize) -> Self {
        RetryBudget {
            counts: Arc::default(),
            percent,
            min,
        }
    }

    /// Counts a request (its first attempt) until the guard is dropped.
    #[must_use]
    pub fn start_request(&self) -> RequestGuard {
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard {
            counts: Arc::clone(&self.counts),
        }
    }

    /// Takes a place for one retry, or `None` when the budget is spent (answer with the
    /// last attempt's outcome).
    #[must_use]
    pub fn try_retry(&self) -> Option<RetryGuard> {
        let requests = self.counts.requests.load(Ordering::Relaxed);
        let limit = (requests * self.percent / 100).max(self.min);
        self.counts
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| {
                (r < limit).then_some(r + 1)
            })
            .ok()?;
        Some(RetryGuard {
            counts: Arc::clone(&self.counts),
        })
    }

    /// (requests, retries) in flight.
    #[must_use]
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.counts.requests.load(Ordering::Relaxed),
            self.counts.retries.load(Ordering::Relaxed),
        )
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.counts.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.counts.retries.fetch_sub(1, Ordering::AcqRel);
    }
}
