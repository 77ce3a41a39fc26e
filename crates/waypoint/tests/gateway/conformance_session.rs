//! Session persistence (GEP-1619) through the gateway's real listener: HTTPRoute rules with
//! `sessionPersistence` over two echo backends, the suite's `CookieSessionPersistence` and
//! `CookieSessionPersistencePermanentLifetime` features, and header-based sessions.

use std::collections::BTreeMap;

use crate::conformance::{Conformance, GATEWAY, request, route, route_conditions};
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
