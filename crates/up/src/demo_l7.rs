//! The L7 steps of `weft up --demo`, through the waypoint of `shop/reviews` (the bundled
//! `reviews.yaml`): the caller's node proxy sends reviews' traffic over HBONE to the
//! waypoint pod, which routes and authorizes each HTTP request.
//!
//! 5. frontend/web -> reviews.shop, [`SPLIT_CALLS`] requests: the HTTPRoute splits them
//!    90/10 between reviews-v1 and reviews-v2; the step counts who answered.
//! 6. frontend/web -> reviews.shop/admin: denied by the waypoint's L7 AuthorizationPolicy,
//!    403 `RBAC: access denied`.

use crate::demo::{CallResult, call};
use crate::mesh::Mesh;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The client pod of the L7 steps.
const CLIENT: &str = "frontend/web-0";
/// The service behind the waypoint.
const SERVICE_URL: &str = "http://reviews.shop/";
/// A path the waypoint's policy denies.
const DENIED_URL: &str = "http://reviews.shop/admin";
/// Requests of the split step.
pub const SPLIT_CALLS: usize = 40;
/// How long the waypoint may take to answer its first request (certificate and config).
const WAYPOINT_WAIT: Duration = Duration::from_secs(20);
/// Pause between attempts while waiting for the waypoint.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// What the waypoint answers a request its policy denies.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Runs steps `first` and `first + 1` into `report`; returns (steps as expected, steps).
pub(crate) fn run(mesh: &Mesh, report: &mut String, first: usize) -> (usize, usize) {
    let _ = writeln!(
        report,
        "({first}) L7 split at the waypoint: {CLIENT} -> reviews.shop, {SPLIT_CALLS} requests \
         (HTTPRoute reviews: 90% v1, 10% v2)"
    );
    let split = split_step(mesh, report);
    let _ = writeln!(
        report,
        "({}) L7 denial at the waypoint: {CLIENT} -> reviews.shop/admin \
         (AuthorizationPolicy reviews-deny-admin, targetRefs the waypoint)",
        first + 1
    );
    let denial = denial_step(mesh, report);
    (usize::from(split) + usize::from(denial), 2)
}

fn split_step(mesh: &Mesh, report: &mut String) -> bool {
    if !mesh.plan().pods.contains_key(CLIENT) {
        let _ = writeln!(report, "    skipped: pod {CLIENT} is not running");
        return false;
    }
    if let Err(last) = wait_for_waypoint(mesh) {
        let _ = writeln!(
            report,
            "    result: UNEXPECTED: the waypoint did not answer within {}s\n    client: {}",
            WAYPOINT_WAIT.as_secs(),
            first_line(&last)
        );
        return false;
    }
    let calls: Vec<CallResult> = (0..SPLIT_CALLS)
        .filter_map(|_| call(mesh, CLIENT, SERVICE_URL))
        .collect();
    let tally = tally(&calls);
    let answered: usize = tally.values().sum();
    let v1 = tally.get("reviews-v1").copied().unwrap_or_default();
    let v2 = tally.get("reviews-v2").copied().unwrap_or_default();
    let as_expected = answered == SPLIT_CALLS && v1 + v2 == answered && v1 > v2;
    let verdict = if as_expected {
        "OK, as expected"
    } else {
        "UNEXPECTED"
    };
    let _ = writeln!(report, "    result: {verdict}");
    let _ = writeln!(
        report,
        "    answers: {}",
        describe_tally(&tally, SPLIT_CALLS)
    );
    as_expected
}

fn denial_step(mesh: &Mesh, report: &mut String) -> bool {
    let Some(result) = call(mesh, CLIENT, DENIED_URL) else {
        let _ = writeln!(report, "    skipped: pod {CLIENT} is not running");
        return false;
    };
    let as_expected = is_l7_denial(&result);
    let verdict = match (as_expected, result.ok) {
        (true, _) => "DENIED (403), as expected",
        (false, true) => "UNEXPECTED: the request succeeded",
        (false, false) => "UNEXPECTED: not an L7 denial",
    };
    let _ = writeln!(report, "    result: {verdict}");
    let _ = writeln!(report, "    client: {}", one_line(&result.output));
    as_expected
}

/// Whether a call was answered 403 with the waypoint's denial body.
pub(crate) fn is_l7_denial(result: &CallResult) -> bool {
    !result.ok && first_line(result).contains("403") && result.output.contains(DENIED_BODY)
}

/// Calls the service until it answers (the waypoint has its certificate and config).
fn wait_for_waypoint(mesh: &Mesh) -> Result<(), CallResult> {
    let deadline = Instant::now() + WAYPOINT_WAIT;
    loop {
        let result = call(mesh, CLIENT, SERVICE_URL).unwrap_or(CallResult {
            ok: false,
            output: format!("pod {CLIENT} is not running"),
        });
        if result.ok || Instant::now() >= deadline {
            return if result.ok { Ok(()) } else { Err(result) };
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Answers per version (the echo's pod name without its replica suffix); failures count
/// under `error: <status line>`.
fn tally(calls: &[CallResult]) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    for result in calls {
        let key = answered_by(result)
            .map(|pod| version_of(&pod).to_owned())
            .unwrap_or_else(|| format!("error: {}", first_line(result)));
        *tally.entry(key).or_default() += 1;
    }
    tally
}

/// The pod that answered a successful echo call.
fn answered_by(result: &CallResult) -> Option<String> {
    if !result.ok {
        return None;
    }
    let (_, body) = result.output.split_once('\n')?;
    let echo: Value = serde_json::from_str(body.trim()).ok()?;
    echo["pod"].as_str().map(str::to_owned)
}

/// `reviews-v1-0` -> `reviews-v1`.
fn version_of(pod: &str) -> &str {
    pod.rsplit_once('-').map_or(pod, |(workload, _)| workload)
}

fn describe_tally(tally: &BTreeMap<String, usize>, total: usize) -> String {
    let parts: Vec<String> = tally
        .iter()
        .map(|(who, count)| format!("{who} x{count}"))
        .collect();
    format!("{} (of {total})", parts.join(", "))
}

fn first_line(result: &CallResult) -> String {
    result
        .output
        .lines()
        .next()
        .unwrap_or("(no output)")
        .trim()
        .to_owned()
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ok: bool, output: &str) -> CallResult {
        CallResult {
            ok,
            output: output.to_owned(),
        }
    }

    #[test]
    fn answers_are_counted_per_version_and_failures_by_status() {
        let calls = [
            answer(true, "HTTP 200 OK\n{\"pod\":\"reviews-v1-0\"}\n"),
            answer(true, "HTTP 200 OK\n{\"pod\":\"reviews-v1-0\"}\n"),
            answer(true, "HTTP 200 OK\n{\"pod\":\"reviews-v2-0\"}\n"),
            answer(false, "HTTP 503 Service Unavailable\nno healthy upstream\n"),
        ];
        let tally = tally(&calls);
        assert_eq!(
            describe_tally(&tally, 4),
            "error: HTTP 503 Service Unavailable x1, reviews-v1 x2, reviews-v2 x1 (of 4)"
        );
    }

    #[test]
    fn a_denial_is_a_403_with_the_rbac_body() {
        assert!(is_l7_denial(&answer(
            false,
            "HTTP 403 Forbidden\nRBAC: access denied\n"
        )));
        assert!(!is_l7_denial(&answer(
            false,
            "error: connection reset by peer\n"
        )));
        assert!(!is_l7_denial(&answer(false, "HTTP 403 Forbidden\nnope\n")));
    }
}
