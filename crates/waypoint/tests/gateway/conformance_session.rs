//! Session persistence (GEP-1619) through the gateway's real listener: HTTPRoute rules with
//! `sessionPersistence` over two echo backends, the suite's `CookieSessionPersistence` and
//! `CookieSessionPersistencePermanentLifetime` features, header-based sessions, the
//! session timeouts (`absoluteTimeout`, `idleTimeout`) and a GRPCRoute rule's session.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::conformance::{Conformance, GATEWAY, request, route, route_conditions};
use crate::conformance_grpc::{call, grpc_route, h2c};
use crate::fixture::send;

/// A rule splitting 50/50 between `infra-backend-v1` and `v2` with `session` (YAML flow
/// mapping) as its `sessionPersistence`.
fn sticky_route(session: &str) -> String {
    let rules = format!(
        "  - backendRefs: [{{name: infra-backend-v1, port: 8080}}, {{name: infra-backend-v2, port: 8080}}]
    sessionPersistence: {session}
"
    );
    format!("{GATEWAY}{}", route("sticky", &rules))
}

/// Sends `count` requests, each on a new connection, with `headers`; the pods that answered
/// with how often, and the session header (`token_header`) of each answer.
async fn spread(
    case: &Conformance,
    count: usize,
    headers: &[(&str, &str)],
    token_header: &str,
) -> (BTreeMap<String, usize>, Vec<(String, String)>) {
    let mut pods = BTreeMap::new();
    let mut tokens = Vec::new();
    for _ in 0..count {
        let mut client = case.fixture.h1(80).await;
        let answer = send(&mut client, request("GET", "/", headers)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let pod = answer.header("x-backend").to_owned();
        *pods.entry(pod.clone()).or_insert(0) += 1;
        tokens.push((pod, answer.header(token_header).to_owned()));
    }
    (pods, tokens)
}

/// The `name=value` part of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or_default()
}

/// Features CookieSessionPersistence (Session lifetime): requests without the cookie spread
/// over both backends by weight and each answer sets the session cookie (named by
/// `sessionName`, no Max-Age, the endpoint not readable in it); requests carrying one pod's
/// cookie all reach that pod and get no new cookie; a cookie of an unknown endpoint is
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_session_persistence() {
    let manifests = sticky_route("{sessionName: Session-A, type: Cookie}");
    let accepted = route_conditions(&manifests, "sticky");
    assert!(
        accepted.iter().all(|(_, status, _)| status == "True"),
        "{accepted:?}"
    );
    let case = Conformance::start(&manifests).await;
    let (pods, tokens) = spread(&case, 40, &[], "set-cookie").await;
    assert_eq!(
        pods.len(),
        2,
        "without a cookie both backends answer: {pods:?}"
    );
    let mut cookies = BTreeMap::new();
    for (pod, set_cookie) in &tokens {
        assert!(set_cookie.starts_with("Session-A="), "{set_cookie}");
        assert!(
            !set_cookie.contains("Max-Age"),
            "a session cookie: {set_cookie}"
        );
        let ip = case.backend(pod).ip.to_string();
        assert!(
            !set_cookie.contains(&ip),
            "the address shows in {set_cookie}"
        );
        cookies.insert(pod.clone(), cookie_pair(set_cookie).to_owned());
    }
    for (pod, cookie) in &cookies {
        let headers = [("cookie", cookie.as_str())];
        let (answered, tokens) = spread(&case, 15, &headers, "set-cookie").await;
        assert_eq!(answered, BTreeMap::from([(pod.clone(), 15)]), "{cookie}");
        assert!(tokens.iter().all(|(_, set)| set.is_empty()), "{tokens:?}");
    }
    let stale = "Session-A=0.0011223344556677";
    let (_, tokens) = spread(&case, 1, &[("cookie", stale)], "set-cookie").await;
    assert!(tokens[0].1.starts_with("Session-A="), "{tokens:?}");
    assert_ne!(cookie_pair(&tokens[0].1), stale);
}

/// Feature CookieSessionPersistencePermanentLifetime: a Permanent cookie carries
/// `absoluteTimeout` as its Max-Age and sticks like a session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_session_persistence_permanent_lifetime() {
    let manifests = sticky_route(
        "{sessionName: keep, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}",
    );
    let case = Conformance::start(&manifests).await;
    let (_, tokens) = spread(&case, 1, &[], "set-cookie").await;
    let (pod, set_cookie) = &tokens[0];
    assert!(set_cookie.starts_with("keep="), "{set_cookie}");
    assert!(set_cookie.ends_with("; Max-Age=3600"), "{set_cookie}");
    let headers = [("cookie", cookie_pair(set_cookie))];
    let (answered, _) = spread(&case, 10, &headers, "set-cookie").await;
    assert_eq!(answered, BTreeMap::from([(pod.clone(), 10)]));
}

/// Header-based session persistence: the token comes back in the session header and,
/// sent again in it, keeps the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_session_persistence() {
    let manifests = sticky_route("{sessionName: x-session, type: Header}");
    let case = Conformance::start(&manifests).await;
    let (_, tokens) = spread(&case, 1, &[], "x-session").await;
    let (pod, token) = &tokens[0];
    assert!(!token.is_empty(), "no x-session header in the answer");
    let (answered, _) = spread(&case, 10, &[("x-session", token)], "x-session").await;
    assert_eq!(answered, BTreeMap::from([(pod.clone(), 10)]));
}

/// The session start a timed token (`<backend>.<key>.<start>.<seen>`) carries.
fn started(token: &str) -> &str {
    token.split('.').nth(2).unwrap_or_default()
}

/// Sends `token` in the `x-session` header every 100 ms until an answer starts a new
/// session (a token with another start); how long that took from the first send, and the
/// pods that answered before.
async fn until_a_new_session(case: &Conformance, token: &str) -> (Duration, Vec<String>) {
    let begun = Instant::now();
    let mut pods = Vec::new();
    loop {
        let (_, tokens) = spread(case, 1, &[("x-session", token)], "x-session").await;
        let (pod, answer) = &tokens[0];
        if !answer.is_empty() && started(answer) != started(token) {
            return (begun.elapsed(), pods);
        }
        pods.push(pod.clone());
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "the session never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `absoluteTimeout` on a Session-lifetime session: the token sticks until the timeout,
/// counted from the session's start, has passed; then the request starts a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_timeout_ends_the_session_after_it() {
    let case = Conformance::start(&sticky_route(
        "{sessionName: x-session, type: Header, absoluteTimeout: 1s}",
    ))
    .await;
    let sent = Instant::now();
    let (_, tokens) = spread(&case, 1, &[], "x-session").await;
    let (pod, token) = tokens[0].clone();
    let (waited, pods) = until_a_new_session(&case, &token).await;
    assert!(
        sent.elapsed() >= Duration::from_secs(1) && waited <= sent.elapsed(),
        "ended after {waited:?}"
    );
    assert!(!pods.is_empty(), "the session ended at once");
    assert!(pods.iter().all(|p| *p == pod), "{pods:?} left {pod}");
}

/// `idleTimeout`: a session carried by requests more often than the timeout outlives it
/// (answers hand out refreshed tokens); left idle longer, it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_an_unused_session_and_use_keeps_it() {
    let case = Conformance::start(&sticky_route(
        "{sessionName: x-session, type: Header, idleTimeout: 1s}",
    ))
    .await;
    let (_, tokens) = spread(&case, 1, &[], "x-session").await;
    let (pod, mut token) = tokens[0].clone();
    let first = token.clone();
    let begun = Instant::now();
    // Sent no later than the gateway stamped the held token's last use.
    let mut token_sent = begun;
    while begun.elapsed() < Duration::from_millis(2_500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        let (_, tokens) = spread(&case, 1, &[("x-session", &token)], "x-session").await;
        let (answered, refreshed) = &tokens[0];
        assert_eq!(answered, &pod, "the session moved while in use");
        if !refreshed.is_empty() {
            assert_eq!(
                started(refreshed),
                started(&first),
                "a new session: {refreshed}"
            );
            token = refreshed.clone();
            token_sent = sent;
        }
    }
    assert_ne!(token, first, "no refreshed token in 2.5 s");
    let (waited, _) = until_a_new_session(&case, &token).await;
    // The idle timeout counts from the held token's last use, stamped in milliseconds.
    assert!(
        token_sent.elapsed() >= Duration::from_millis(990),
        "ended {:?} after the token's last use ({waited:?} of polling)",
        token_sent.elapsed()
    );
}

/// Session persistence on a GRPCRoute rule: the first call's answer sets the cookie, calls
/// carrying it reach the same backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_cookie_session_persistence() {
    let rules = "  - backendRefs: [{name: infra-backend-v1, port: 8080}, {name: infra-backend-v2, port: 8080}]
    sessionPersistence: {sessionName: grpc-session, type: Cookie}
";
    let manifests = format!(
        "{GATEWAY}{}",
        grpc_route("sticky-grpc", "[{name: gw}]", rules)
    );
    let case = Conformance::start(&manifests).await;
    let mut client = h2c(&case, 80).await;
    let mut cookies = BTreeMap::new();
    for _ in 0..40 {
        let answer = call(&mut client, "grpc.example", "Echo", &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let set_cookie = answer.header("set-cookie");
        assert!(set_cookie.starts_with("grpc-session="), "{answer:?}");
        let pair = cookie_pair(set_cookie).to_owned();
        cookies.insert(answer.header("x-backend").to_owned(), pair);
    }
    assert_eq!(
        cookies.len(),
        2,
        "without a cookie both backends answer: {cookies:?}"
    );
    for (pod, cookie) in &cookies {
        for _ in 0..10 {
            let answer = call(&mut client, "grpc.example", "Echo", &[("cookie", cookie)]).await;
            assert_eq!(answer.header("x-backend"), pod, "{cookie}");
            assert_eq!(answer.header("set-cookie"), "", "{answer:?}");
        }
    }
}
