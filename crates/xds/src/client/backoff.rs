//! Exponential reconnect backoff with jitter.

use std::hash::BuildHasher;
use std::time::Duration;

/// Delays between reconnect attempts: doubling from `initial` up to `max`, each drawn
/// uniformly from the upper half of the current step so that proxies restarted together
/// do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    draws: u64,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            step: initial,
            draws: 0,
        }
    }

    /// The delay before the next attempt; grows the following one.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(self.random_unit())
    }

    /// Back to the initial delay (after a successful exchange).
    pub fn reset(&mut self) {
        self.step = self.initial;
    }

    /// A value in [0, 1) from the std library's randomly keyed hasher.
    fn random_unit(&mut self) -> f64 {
        self.draws += 1;
        let bits = std::collections::hash_map::RandomState::new().hash_one(self.draws);
        #[allow(clippy::cast_precision_loss)] // 53 bits of randomness are plenty
        let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jitter_bounds_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let expected_steps = [100u64, 200, 400, 800, 1000, 1000];
        for step in expected_steps {
            let delay = backoff.next_delay();
            let step = Duration::from_millis(step);
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}/2..{step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_varies() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 1);
    }
}
