//! Retry decisions and backoff as tables, and the budget under concurrent use.

use super::{Outcome, RetryBudget, RetryPolicy};
use http::StatusCode;
use std::time::Duration;
use weft_proto::l7 as pb;

fn policy() -> RetryPolicy {
    RetryPolicy::from_wire(&pb::Retry {
        attempts: 2,
        codes: vec![503, 504],
        backoff_ms: 100,
    })
}

#[test]
fn should_retry_listed_codes_and_failures_while_attempts_remain() {
    let status = |code| Outcome::Status(StatusCode::from_u16(code).expect("status"));
    // (attempt that ended, outcome, retry?)
    let rows = [
        (1, status(503), true),
        (2, status(504), true),
        (3, status(503), false),
        (1, status(500), false),
        (1, status(200), false),
        (1, status(404), false),
        (1, Outcome::ConnectFailure, true),
        (2, Outcome::Reset, true),
        (1, Outcome::Timeout, true),
        (3, Outcome::ConnectFailure, false),
    ];
    let policy = policy();
    let failures: Vec<_> = rows
        .iter()
        .filter(|(attempt, outcome, want)| policy.should_retry(*attempt, *outcome) != *want)
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let none = RetryPolicy::from_wire(&pb::Retry::default());
    assert!(!none.should_retry(1, Outcome::ConnectFailure));
}

#[test]
fn backoff_doubles_from_the_minimum_up_to_ten_times_it() {
    let policy = policy();
    let waits: Vec<_> = (1..=6).map(|n| policy.backoff(n)).collect();
    let ms = |v: u64| Duration::from_millis(v);
    assert_eq!(
        waits,
        [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
    assert_eq!(policy.backoff(u32::MAX), ms(1000));
}

#[test]
fn the_budget_allows_the_floor_then_a_share_of_requests() {
    let budget = RetryBudget::new(20, 2);
    let requests: Vec<_> = (0..20).map(|_| budget.start_request()).collect();
    // 20 % of 20 requests in flight: 4 retries.
    let retries: Vec<_> = (0..10).map_while(|_| budget.try_retry()).collect();
    assert_eq!(retries.len(), 4);
    assert_eq!(budget.in_flight(), (20, 4));
    drop(retries);
    drop(requests);
    assert_eq!(budget.in_flight(), (0, 0));
    // No request in flight: the floor.
    let floor: Vec<_> = (0..10).map_while(|_| budget.try_retry()).collect();
    assert_eq!(floor.len(), 2);
}

#[test]
fn clones_share_one_budget_across_threads() {
    let budget = RetryBudget::default();
    let held = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let budget = budget.clone();
            let held = &held;
            scope.spawn(move || {
                let taken: Vec<_> = (0..50).map_while(|_| budget.try_retry()).collect();
                held.lock().expect("lock").extend(taken);
            });
        }
    });
    let held = held.into_inner().expect("lock");
    assert_eq!(held.len(), RetryBudget::DEFAULT_MIN);
    assert_eq!(budget.in_flight(), (0, RetryBudget::DEFAULT_MIN));
}
