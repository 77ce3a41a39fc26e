//! Session persistence of a rule (Gateway API `sessionPersistence`, GEP-1619): the first
//! request of a session is sent as usual (a backend by weight, an endpoint by the upstream's
//! choice) and its response carries a *session token*, in a cookie (`Set-Cookie`) or in a
//! header of the session's name; later requests carrying the token go to the same backend
//! and endpoint while that endpoint is healthy, and get a new token when it is not.
//!
//! A token is `<backend index>.<digest>`: the index of the backend in the rule's
//! `backendRefs`, and the first 8 bytes (hex) of SHA-256 over the session name, the
//! backend's service key and the endpoint's workload uid. It names the endpoint without
//! showing its address, is the same on every gateway replica and across restarts, and a
//! forged one can only choose among the rule's own endpoints (it grants nothing).

use std::fmt::Write as _;
use std::time::Duration;

use aws_lc_rs::digest;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use weft_proto::l7 as pb;

use crate::routes::FieldError;

/// The cookie name when `sessionName` is not set.
pub const DEFAULT_COOKIE: &str = "weft-session";

/// Bytes of the digest a token carries.
const DIGEST_BYTES: usize = 8;

/// Where the token travels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Carrier {
    /// A cookie named `name`; `max_age`: a Permanent cookie's lifetime.
    Cookie {
        name: String,
        max_age: Option<Duration>,
    },
    /// A request and response header.
    Header(HeaderName),
}

/// A rule's compiled session persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPersistence {
    carrier: Carrier,
}

/// A token read from a request: which backend, and the digest naming its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionToken {
    /// Index of the backend in the rule.
    pub backend: usize,
    digest: [u8; DIGEST_BYTES],
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
                    max_age: (wire.max_age_seconds > 0)
                        .then(|| Duration::from_secs(wire.max_age_seconds)),
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
        Ok(Self { carrier })
    }

    /// The token a request carries, if it carries a well-formed one (no allocation).
    #[must_use]
    pub fn token(&self, headers: &HeaderMap) -> Option<SessionToken> {
        let value = match &self.carrier {
            Carrier::Cookie { name, .. } => headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    (key == name).then_some(value)
                })?,
            Carrier::Header(name) => headers.get(name)?.to_str().ok()?,
        };
        let (backend, hex) = value.split_once('.')?;
        if hex.len() != DIGEST_BYTES * 2 {
            return None;
        }
        let mut digest = [0; DIGEST_BYTES];
        for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = hex_pair(pair)?;
        }
        Some(SessionToken {
            backend: backend.parse().ok()?,
            digest,
        })
    }

    /// Whether `token` names the endpoint `uid` of the backend service `service`.
    #[must_use]
    pub fn names(&self, token: &SessionToken, service: &str, uid: &str) -> bool {
        token.digest == self.digest(service, uid)
    }

    /// The header that hands the client the token for the endpoint `uid` of backend
    /// `backend` (its index in the rule), service `service`: `Set-Cookie` (`Path=/`,
    /// `HttpOnly`, and `Max-Age` for a Permanent cookie) or the session header.
    #[must_use]
    pub fn response_header(
        &self,
        backend: usize,
        service: &str,
        uid: &str,
    ) -> (HeaderName, HeaderValue) {
        let digest = self.digest(service, uid);
        let mut token = format!("{backend}.");
        for byte in digest {
            let _ = write!(token, "{byte:02x}");
        }
        let (name, value) = match &self.carrier {
            Carrier::Cookie { name, max_age } => {
                let mut cookie = format!("{name}={token}; Path=/; HttpOnly");
                if let Some(age) = max_age {
                    let _ = write!(cookie, "; Max-Age={}", age.as_secs());
                }
                (SET_COOKIE, cookie)
            }
            Carrier::Header(name) => (name.clone(), token),
        };
        let value = HeaderValue::try_from(value).expect("cookie names and tokens are header-safe");
        (name, value)
    }

    fn digest(&self, service: &str, uid: &str) -> [u8; DIGEST_BYTES] {
        let name = match &self.carrier {
            Carrier::Cookie { name, .. } => name.as_str(),
            Carrier::Header(name) => name.as_str(),
        };
        let mut context = digest::Context::new(&digest::SHA256);
        for part in [name, service, uid] {
            context.update(part.as_bytes());
            context.update(&[0]);
        }
        let mut out = [0; DIGEST_BYTES];
        out.copy_from_slice(&context.finish().as_ref()[..DIGEST_BYTES]);
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(r#type: i32, name: &str, max_age_seconds: u64) -> SessionPersistence {
        let wire = pb::SessionPersistence {
            r#type,
            name: name.to_owned(),
            max_age_seconds,
        };
        SessionPersistence::compile(&wire, "rule").unwrap()
    }

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_cookie_token_names_its_endpoint_and_no_other() {
        let session = compile(0, "", 0);
        let (name, value) = session.response_header(1, "ns/svc.ns.svc", "pod-a");
        assert_eq!(name, SET_COOKIE);
        let value = value.to_str().unwrap();
        assert!(value.starts_with("weft-session=1."), "{value}");
        assert!(value.ends_with("; Path=/; HttpOnly"), "{value}");
        assert!(!value.contains("pod-a"), "{value}");
        let pair = value.split(';').next().unwrap();
        let headers = with(COOKIE, &format!("other=x; {pair}"));
        let token = session.token(&headers).unwrap();
        assert_eq!(token.backend, 1);
        assert!(session.names(&token, "ns/svc.ns.svc", "pod-a"));
        assert!(!session.names(&token, "ns/svc.ns.svc", "pod-b"));
        assert!(!session.names(&token, "ns/other.ns.svc", "pod-a"));
    }

    #[test]
    fn a_permanent_cookie_has_max_age_and_a_header_session_no_cookie() {
        let permanent = compile(0, "sticky", 3600);
        let (_, value) = permanent.response_header(0, "s", "u");
        assert!(
            value.to_str().unwrap().ends_with("; Max-Age=3600"),
            "{value:?}"
        );
        let header = compile(1, "x-session", 0);
        let (name, value) = header.response_header(0, "s", "u");
        assert_eq!(name.as_str(), "x-session");
        let headers = with(name, value.to_str().unwrap());
        assert!(header.names(&header.token(&headers).unwrap(), "s", "u"));
    }

    #[test]
    fn malformed_tokens_and_names_are_refused() {
        let session = compile(0, "", 0);
        for cookie in [
            "weft-session=x",
            "weft-session=1.zz",
            "weft-session=a.0011223344556677",
        ] {
            assert_eq!(session.token(&with(COOKIE, cookie)), None, "{cookie}");
        }
        let wire = pb::SessionPersistence {
            r#type: 0,
            name: "bad name".into(),
            max_age_seconds: 0,
        };
        let error = SessionPersistence::compile(&wire, "rules[0].session").unwrap_err();
        assert_eq!(error.0, "rules[0].session.sessionName");
    }
}
