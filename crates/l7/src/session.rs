//! Session persistence of a rule (Gateway API `sessionPersistence`, GEP-1619): the first
//! request of a session is sent as usual (a backend by weight, an endpoint by the upstream's
//! choice) and its response carries a *session token*, in a cookie (`Set-Cookie`) or in a
//! header of the session's name; later requests carrying the token go to the same backend
//! and endpoint while that endpoint is healthy, and get a new token when it is not.
//!
//! A token is `<backend index>.<endpoint key>`: the index of the backend in the rule's
//! `backendRefs` and the endpoint's key (16 hex digits: [`endpoint_key`], a digest of the
//! service and the workload uid, which the service computes once per endpoint set as
//! `weft_upstream::EndpointKey`s, so finding the endpoint is one map lookup). It names the endpoint without showing
//! its address, is the same on every gateway replica and across restarts, and a forged one
//! can only choose among the rule's own endpoints (it grants nothing).
//!
//! Timeouts, as the spec defines them: `absoluteTimeout` ends a session that long after
//! it began, `idleTimeout` when no request carried it for that long. The gateway keeps no
//! session table: a rule with either timeout adds the session's start and the time it was
//! last seen (Unix milliseconds, hex) to its tokens, `<backend>.<key>.<start>.<seen>`, and
//! refuses a token past either limit (the request then starts a new session). With an idle
//! timeout, an answer hands out a refreshed token once the held one was last seen
//! [`REFRESH`] ago (or a quarter of the idle timeout, if shorter), so a session in use
//! stays alive without a new header on every answer. A Permanent cookie's `Max-Age` is the
//! rest of its absolute lifetime. The times are the client's to keep: changing them can
//! only keep its own session longer.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use weft_proto::l7 as pb;

use crate::routes::FieldError;

/// The cookie name when `sessionName` is not set.
pub const DEFAULT_COOKIE: &str = "weft-session";

/// How long after a token was last seen an answer refreshes it (idle timeouts only).
pub const REFRESH: Duration = Duration::from_secs(1);

/// Bytes of the endpoint key a token carries.
const KEY_BYTES: usize = 8;

/// Where the token travels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Carrier {
    /// A cookie named `name`; `permanent`: it gets a `Max-Age` (the absolute timeout).
    Cookie { name: String, permanent: bool },
    /// A request and response header.
    Header(HeaderName),
}

/// A rule's compiled session persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPersistence {
    carrier: Carrier,
    /// `absoluteTimeout` in milliseconds.
    absolute_ms: Option<u64>,
    /// `idleTimeout` in milliseconds.
    idle_ms: Option<u64>,
}

/// A token read from a request: which backend, the key of its endpoint, and (with
/// timeouts) when its session began and was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionToken {
    /// Index of the backend in the rule.
    pub backend: usize,
    key: [u8; KEY_BYTES],
    started_ms: u64,
    seen_ms: u64,
}

impl SessionToken {
    /// The key of the endpoint the token names (a `weft_upstream::EndpointKey`).
    #[must_use]
    pub fn endpoint_key(&self) -> &[u8; KEY_BYTES] {
        &self.key
    }
}

impl SessionPersistence {
    /// Compiles the wire form; `at` names the field in errors.
    pub(crate) fn compile(wire: &pb::SessionPersistence, at: &str) -> Result<Self, FieldError> {
        use pb::session_persistence::Type;
        let name = if wire.name.is_empty() {
            DEFAULT_COOKIE
        } else {
            wire.name.as_str()
        };
        let carrier = match Type::try_from(wire.r#type) {
            Ok(Type::Cookie) => {
                if !name.bytes().all(is_token_byte) {
                    return Err((
                        format!("{at}.sessionName"),
                        format!("{name:?} is not a valid cookie name"),
                    ));
                }
                Carrier::Cookie {
                    name: name.to_owned(),
                    permanent: wire.max_age_seconds > 0,
                }
            }
            Ok(Type::Header) => Carrier::Header(HeaderName::try_from(name).map_err(|_| {
                (
                    format!("{at}.sessionName"),
                    format!("{name:?} is not a valid header name"),
                )
            })?),
            Err(_) => {
                return Err((
                    format!("{at}.type"),
                    format!("unknown session type {}", wire.r#type),
                ));
            }
        };
        // A Permanent cookie from an older control plane carries only its Max-Age.
        let absolute_ms = match wire.absolute_timeout_ms {
            0 => (wire.max_age_seconds > 0).then(|| wire.max_age_seconds.saturating_mul(1000)),
            ms => Some(ms),
        };
        Ok(Self {
            carrier,
            absolute_ms,
            idle_ms: (wire.idle_timeout_ms > 0).then_some(wire.idle_timeout_ms),
        })
    }

    /// The live token a request carries: well formed and, with timeouts, within them.
    #[must_use]
    pub fn token(&self, headers: &HeaderMap) -> Option<SessionToken> {
        self.token_at(headers, self.now_ms())
    }

    /// The header that hands the client a token for the endpoint with key `key` of backend
    /// `backend` (its index in the rule), unless the request's token (`held`) already names
    /// it and needs no refresh: `Set-Cookie` (`Path=/`, `HttpOnly`, and `Max-Age` for a
    /// Permanent cookie) or the session header.
    #[must_use]
    pub fn hand_out(
        &self,
        backend: usize,
        key: &[u8; KEY_BYTES],
        held: Option<&SessionToken>,
    ) -> Option<(HeaderName, HeaderValue)> {
        self.response_header_at(backend, key, held, self.now_ms())
    }

    fn timed(&self) -> bool {
        self.absolute_ms.is_some() || self.idle_ms.is_some()
    }

    /// Now in Unix milliseconds, when the rule has timeouts (else 0: not read).
    fn now_ms(&self) -> u64 {
        if !self.timed() {
            return 0;
        }
        let since = SystemTime::now().duration_since(UNIX_EPOCH);
        since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn token_at(&self, headers: &HeaderMap, now_ms: u64) -> Option<SessionToken> {
        let token = parse(self.carried(headers)?, self.timed())?;
        let within = |limit: Option<u64>, since: u64| {
            limit.is_none_or(|limit| now_ms < since.saturating_add(limit))
        };
        (within(self.absolute_ms, token.started_ms) && within(self.idle_ms, token.seen_ms))
            .then_some(token)
    }

    /// The raw token of the request (no allocation).
    fn carried<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        match &self.carrier {
            Carrier::Cookie { name, .. } => headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    (key == name).then_some(value)
                }),
            Carrier::Header(name) => headers.get(name)?.to_str().ok(),
        }
    }

    fn response_header_at(
        &self,
        backend: usize,
        key: &[u8; KEY_BYTES],
        held: Option<&SessionToken>,
        now_ms: u64,
    ) -> Option<(HeaderName, HeaderValue)> {
        let same = held.filter(|t| t.backend == backend && t.key == *key);
        if same.is_some_and(|t| !self.needs_refresh(t, now_ms)) {
            return None;
        }
        let started_ms = same.map_or(now_ms, |t| t.started_ms);
        let mut token = format!("{backend}.");
        for byte in key {
            let _ = write!(token, "{byte:02x}");
        }
        if self.timed() {
            let _ = write!(token, ".{started_ms:x}.{now_ms:x}");
        }
        let (name, value) = match &self.carrier {
            Carrier::Cookie { name, permanent } => {
                let mut cookie = format!("{name}={token}; Path=/; HttpOnly");
                if let Some(absolute) = self.absolute_ms.filter(|_| *permanent) {
                    let left = started_ms.saturating_add(absolute).saturating_sub(now_ms);
                    let _ = write!(cookie, "; Max-Age={}", left.div_ceil(1000));
                }
                (SET_COOKIE, cookie)
            }
            Carrier::Header(name) => (name.clone(), token),
        };
        let value = HeaderValue::try_from(value).expect("cookie names and tokens are header-safe");
        Some((name, value))
    }

    /// Whether a held token of the chosen endpoint is handed out again: with an idle
    /// timeout, once it was last seen [`REFRESH`] (or a quarter of the timeout) ago.
    fn needs_refresh(&self, held: &SessionToken, now_ms: u64) -> bool {
        self.idle_ms.is_some_and(|idle| {
            let every = (idle / 4).clamp(1, u64::try_from(REFRESH.as_millis()).unwrap_or(1000));
            now_ms.saturating_sub(held.seen_ms) >= every
        })
    }
}

/// The key a token names endpoint `uid` of service `service` (`<namespace>/<hostname>`)
/// by: the first 8 bytes of SHA-256 over both (the derivation a service's
/// `weft_upstream::MeshService::endpoint_by_key` is given).
#[must_use]
pub fn endpoint_key(service: &str, uid: &str) -> [u8; KEY_BYTES] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [service, uid] {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    let digest = context.finish();
    let mut key = [0; KEY_BYTES];
    key.copy_from_slice(&digest.as_ref()[..KEY_BYTES]);
    key
}

/// Parses `<backend>.<key>` or, for a rule with timeouts, `<backend>.<key>.<start>.<seen>`.
fn parse(value: &str, timed: bool) -> Option<SessionToken> {
    let mut parts = value.split('.');
    let backend = parts.next()?.parse().ok()?;
    let hex = parts.next()?;
    if hex.len() != KEY_BYTES * 2 {
        return None;
    }
    let mut key = [0; KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = hex_pair(pair)?;
    }
    let mut time = || u64::from_str_radix(parts.next()?, 16).ok();
    let (started_ms, seen_ms) = if timed { (time()?, time()?) } else { (0, 0) };
    parts.next().is_none().then_some(SessionToken {
        backend,
        key,
        started_ms,
        seen_ms,
    })
}

/// A byte of an RFC 9110 token (what a cookie name may hold).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    let value = digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?;
    u8::try_from(value).ok()
}
