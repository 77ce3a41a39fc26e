//! SPIFFE identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! A [`SpiffeId`] stores its principal form (`<td>/ns/<ns>/sa/<sa>`, what Istio policies match
//! on) once, at construction; the parts and the principal are borrowed from it, so matching a
//! connection against policy never allocates.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

const SCHEME: &str = "spiffe://";
const NS_SEP: &str = "/ns/";
const SA_SEP: &str = "/sa/";

/// Trust domain a workload has when its record leaves `trust_domain` empty.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Service account a workload has when its record leaves `service_account` empty.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// A workload identity: trust domain, namespace and service account.
///
/// Equality, hashing and ordering are those of the `(trust domain, namespace, service
/// account)` triple.
#[derive(Clone)]
pub struct SpiffeId {
    /// `<td>/ns/<ns>/sa/<sa>`.
    principal: Box<str>,
    /// Byte range of the namespace inside `principal`.
    namespace: (usize, usize),
    /// Byte offset of the service account inside `principal` (it runs to the end).
    service_account: usize,
}

/// Why a string is not a workload SPIFFE id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("`{input}` is not a SPIFFE id: it must start with `spiffe://`")]
    MissingScheme { input: String },
    #[error("`{input}` is not a workload SPIFFE id: expected `<trust-domain>/ns/<ns>/sa/<sa>`")]
    BadPath { input: String },
    #[error("`{input}`: trust domain `{trust_domain}` may only contain a-z 0-9 . - _")]
    BadTrustDomain { input: String, trust_domain: String },
    #[error("`{input}`: path segment `{segment}` may only contain A-Z a-z 0-9 . - _")]
    BadSegment { input: String, segment: String },
}

impl SpiffeId {
    /// Builds an id from its parts, validating each of them.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        Self::from_principal(&format!(
            "{trust_domain}{NS_SEP}{namespace}{SA_SEP}{service_account}"
        ))
    }

    /// Parses the principal form used by Istio policies: `<td>/ns/<ns>/sa/<sa>` (no scheme).
    pub fn from_principal(principal: &str) -> Result<Self, SpiffeIdError> {
        let bad_path = || SpiffeIdError::BadPath {
            input: principal.to_owned(),
        };
        let mut parts = principal.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad_path());
        };
        if !is_trust_domain(td) {
            return Err(SpiffeIdError::BadTrustDomain {
                input: principal.to_owned(),
                trust_domain: td.to_owned(),
            });
        }
        for segment in [ns, sa] {
            if !is_path_segment(segment) {
                return Err(SpiffeIdError::BadSegment {
                    input: principal.to_owned(),
                    segment: segment.to_owned(),
                });
            }
        }
        let ns_start = td.len() + NS_SEP.len();
        let ns_end = ns_start + ns.len();
        Ok(Self {
            principal: principal.into(),
            namespace: (ns_start, ns_end),
            service_account: ns_end + SA_SEP.len(),
        })
    }

    /// Parses either form: the URI `spiffe://<td>/ns/<ns>/sa/<sa>` or the principal
    /// `<td>/ns/<ns>/sa/<sa>` (for user input where both are customary).
    pub fn parse_uri_or_principal(input: &str) -> Result<Self, SpiffeIdError> {
        if input.starts_with(SCHEME) {
            input.parse()
        } else {
            Self::from_principal(input)
        }
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.principal[..self.namespace.0 - NS_SEP.len()]
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.principal[self.namespace.0..self.namespace.1]
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.principal[self.service_account..]
    }

    /// The principal form without the scheme: `<td>/ns/<ns>/sa/<sa>` (borrowed, no allocation).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    fn parts(&self) -> (&str, &str, &str) {
        (
            self.trust_domain(),
            self.namespace(),
            self.service_account(),
        )
    }
}

impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        // The principal determines the parts: segments cannot contain `/`.
        self.principal == other.principal
    }
}

impl Eq for SpiffeId {}

impl Hash for SpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.principal.hash(state);
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({self})")
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    /// Parses the URI form `spiffe://<td>/ns/<ns>/sa/<sa>`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let principal = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::MissingScheme {
                input: input.to_owned(),
            })?;
        Self::from_principal(principal).map_err(|err| match err {
            SpiffeIdError::BadPath { .. } => SpiffeIdError::BadPath {
                input: input.to_owned(),
            },
            other => other,
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.principal)
    }
}

fn is_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_uri_and_principal_forms() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/reviews"
            .parse()
            .expect("valid id");
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "reviews");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/reviews");
        assert_eq!(SpiffeId::from_principal(id.principal()), Ok(id.clone()));
        assert_eq!(SpiffeId::new("cluster.local", "default", "reviews"), Ok(id));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/sa/a/ns/b",
            "spiffe://Cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a b/sa/b",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn parses_either_form_for_user_input() {
        let uri = SpiffeId::parse_uri_or_principal("spiffe://td/ns/a/sa/b").expect("uri");
        let principal = SpiffeId::parse_uri_or_principal("td/ns/a/sa/b").expect("principal");
        assert_eq!(uri, principal);
        assert_eq!(format!("{uri:?}"), "SpiffeId(spiffe://td/ns/a/sa/b)");
        for bad in [
            "spiffe://td/ns/a",
            "td/ns//sa/b",
            "",
            "spiffe://TD/ns/a/sa/b",
        ] {
            assert!(
                SpiffeId::parse_uri_or_principal(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn orders_by_trust_domain_then_namespace_then_account() {
        let id = |td, ns, sa| SpiffeId::new(td, ns, sa).expect("id");
        // `.` sorts before `/`, so comparing principals would put `a.b` first.
        assert!(id("a", "z", "z") < id("a.b", "a", "a"));
        assert!(id("a", "n", "z") < id("a", "n.x", "a"));
        assert!(id("a", "n", "s") < id("a", "n", "s.x"));
        assert_eq!(id("a", "n", "s").cmp(&id("a", "n", "s")), Ordering::Equal);
    }
}
