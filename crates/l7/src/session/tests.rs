//! Tokens: what an answer hands out, what a request's token names, and the timeouts.

use super::*;

const KEY: [u8; 8] = [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
const OTHER: [u8; 8] = [1; 8];

fn compile(r#type: i32, name: &str, max_age_seconds: u64, idle_ms: u64) -> SessionPersistence {
    let wire = pb::SessionPersistence {
        r#type,
        name: name.to_owned(),
        max_age_seconds,
        absolute_timeout_ms: max_age_seconds * 1000,
        idle_timeout_ms: idle_ms,
    };
    SessionPersistence::compile(&wire, "rule").unwrap()
}

fn with(name: HeaderName, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

/// The request headers that carry back the token a `Set-Cookie` value hands out.
fn cookie_of(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    with(COOKIE, &format!("other=x; {pair}"))
}

#[test]
fn a_cookie_token_names_its_endpoint_and_is_handed_out_once() {
    let session = compile(0, "", 0, 0);
    let (name, value) = session.response_header_at(1, &KEY, None, 0).unwrap();
    assert_eq!(name, SET_COOKIE);
    assert_eq!(
        value.to_str().unwrap(),
        "weft-session=1.0011223344556677; Path=/; HttpOnly"
    );
    let token = session.token_at(&cookie_of(&value), 0).unwrap();
    assert_eq!((token.backend, *token.endpoint_key()), (1, KEY));
    assert_eq!(session.response_header_at(1, &KEY, Some(&token), 0), None);
    assert!(
        (session.response_header_at(1, &OTHER, Some(&token), 0)).is_some(),
        "another endpoint answered: a new token"
    );
}

#[test]
fn a_permanent_cookie_has_max_age_and_a_header_session_no_cookie() {
    let permanent = compile(0, "sticky", 3600, 0);
    let (_, value) = permanent.response_header_at(0, &KEY, None, 5_000).unwrap();
    let text = value.to_str().unwrap();
    assert!(
        text.starts_with("sticky=0.0011223344556677.1388.1388;"),
        "{text}"
    );
    assert!(text.ends_with("; Max-Age=3600"), "{text}");
    let header = compile(1, "x-session", 0, 0);
    let (name, value) = header.response_header_at(0, &KEY, None, 0).unwrap();
    assert_eq!(name.as_str(), "x-session");
    let token = header.token_at(&with(name, value.to_str().unwrap()), 0);
    assert_eq!(token.map(|t| *t.endpoint_key()), Some(KEY));
}

#[test]
fn an_absolute_timeout_ends_the_session_that_long_after_it_began() {
    let session = compile(0, "s", 10, 0);
    let (_, value) = session.response_header_at(0, &KEY, None, 1_000).unwrap();
    let headers = cookie_of(&value);
    let token = session.token_at(&headers, 10_999).unwrap();
    assert_eq!(
        session.response_header_at(0, &KEY, Some(&token), 10_999),
        None
    );
    assert_eq!(
        session.token_at(&headers, 11_000),
        None,
        "10 s after it began"
    );
    let (_, again) = session
        .response_header_at(0, &OTHER, Some(&token), 6_000)
        .unwrap();
    assert!(
        again.to_str().unwrap().ends_with("; Max-Age=10"),
        "a new endpoint starts a new session: {again:?}"
    );
}

#[test]
fn an_idle_timeout_ends_a_session_no_request_carried_and_use_keeps_it() {
    let session = compile(1, "x-s", 0, 2_000);
    let name = HeaderName::from_static("x-s");
    let (_, first) = session.response_header_at(0, &KEY, None, 0).unwrap();
    let token = |value: &HeaderValue, now| {
        session.token_at(&with(name.clone(), value.to_str().unwrap()), now)
    };
    let held = token(&first, 400).unwrap();
    assert_eq!(
        session.response_header_at(0, &KEY, Some(&held), 400),
        None,
        "seen within a quarter of the timeout: not refreshed"
    );
    let held = token(&first, 1_900).unwrap();
    let (_, refreshed) = session
        .response_header_at(0, &KEY, Some(&held), 1_900)
        .unwrap();
    assert_eq!(refreshed.to_str().unwrap(), "0.0011223344556677.0.76c");
    assert_eq!(token(&first, 2_000), None, "idle for 2 s");
    assert!(token(&refreshed, 3_800).is_some(), "refreshed at 1.9 s");
    assert_eq!(token(&refreshed, 3_900), None);
}

#[test]
fn malformed_tokens_and_names_are_refused() {
    let session = compile(0, "", 0, 0);
    for cookie in [
        "weft-session=x",
        "weft-session=1.zz",
        "weft-session=a.0011223344556677",
        "weft-session=1.0011223344556677.5.5",
    ] {
        assert_eq!(session.token_at(&with(COOKIE, cookie), 0), None, "{cookie}");
    }
    let timed = compile(0, "", 0, 1_000);
    let untimed = with(COOKIE, "weft-session=1.0011223344556677");
    assert_eq!(timed.token_at(&untimed, 0), None, "no times");
    let wire = pb::SessionPersistence {
        name: "bad name".into(),
        ..pb::SessionPersistence::default()
    };
    let error = SessionPersistence::compile(&wire, "rules[0].session").unwrap_err();
    assert_eq!(error.0, "rules[0].session.sessionName");
}
