//! SPIFFE identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";

/// A workload identity: trust domain, namespace and service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
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
            "{trust_domain}/ns/{namespace}/sa/{service_account}"
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
        Ok(Self {
            trust_domain: td.to_owned(),
            namespace: ns.to_owned(),
            service_account: sa.to_owned(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The principal form without the scheme: `<td>/ns/<ns>/sa/<sa>`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
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
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
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
        assert_eq!(SpiffeId::from_principal(&id.principal()), Ok(id.clone()));
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
}
