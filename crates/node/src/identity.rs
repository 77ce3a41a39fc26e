//! The workload identity as the node proxy sees it: a SPIFFE id split into trust domain,
//! namespace and service account, with the policy "principal" form precomputed so that
//! matching a connection never allocates.

use std::fmt;

/// Trust domain used when a workload record leaves `trust_domain` empty.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Service account used when a workload record leaves `service_account` empty.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

const SPIFFE_SCHEME: &str = "spiffe://";

/// A workload identity `spiffe://<td>/ns/<ns>/sa/<sa>`.
///
/// The principal string (`<td>/ns/<ns>/sa/<sa>`, the form policies match on) is built once at
/// construction; accessors borrow from it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `<td>/ns/<ns>/sa/<sa>`.
    principal: Box<str>,
    /// Byte range of the namespace inside `principal`.
    namespace: (usize, usize),
    /// Byte offset of the service account inside `principal` (it runs to the end).
    service_account: usize,
}

/// Why a string is not a SPIFFE workload identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a workload identity spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>: {reason}"
)]
pub struct IdentityParseError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Identity {
    /// Builds an identity from its parts.
    #[must_use]
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        let principal = format!("{trust_domain}/ns/{namespace}/sa/{service_account}");
        let ns_start = trust_domain.len() + "/ns/".len();
        let ns_end = ns_start + namespace.len();
        Self {
            principal: principal.into_boxed_str(),
            namespace: (ns_start, ns_end),
            service_account: ns_end + "/sa/".len(),
        }
    }

    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>` (the `spiffe://` prefix is optional, so the
    /// principal form parses too).
    ///
    /// # Errors
    /// Fails when the path is not exactly `ns/<ns>/sa/<sa>` or a part is empty.
    pub fn parse(input: &str) -> Result<Self, IdentityParseError> {
        let fail = |reason| IdentityParseError {
            input: input.to_owned(),
            reason,
        };
        let rest = input.strip_prefix(SPIFFE_SCHEME).unwrap_or(input);
        let mut parts = rest.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(fail(
                "path must be exactly /ns/<namespace>/sa/<service-account>",
            ));
        };
        if td.is_empty() || ns.is_empty() || sa.is_empty() {
            return Err(fail(
                "trust domain, namespace and service account must be non-empty",
            ));
        }
        Ok(Self::new(td, ns, sa))
    }

    /// The trust domain.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.principal[..self.namespace.0 - "/ns/".len()]
    }

    /// The Kubernetes namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.principal[self.namespace.0..self.namespace.1]
    }

    /// The Kubernetes service account.
    #[must_use]
    pub fn service_account(&self) -> &str {
        &self.principal[self.service_account..]
    }

    /// `<td>/ns/<ns>/sa/<sa>`: the form `istio.security` principal matches use.
    #[must_use]
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// `spiffe://<td>/ns/<ns>/sa/<sa>`: the certificate URI SAN and the metrics label form.
    #[must_use]
    pub fn to_uri(&self) -> String {
        format!("{SPIFFE_SCHEME}{}", self.principal)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SPIFFE_SCHEME}{}", self.principal)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl std::str::FromStr for Identity {
    type Err = IdentityParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_forms_round_trip() {
        let id = Identity::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "shop");
        assert_eq!(id.service_account(), "web");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/web");
        assert_eq!(id.to_uri(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(id, Identity::new("cluster.local", "shop", "web"));
        assert_eq!(Identity::parse(id.principal()).unwrap(), id);
    }

    #[test]
    fn malformed_identities_are_rejected_with_the_input() {
        for bad in [
            "spiffe://td/ns/a",
            "spiffe://td/ns/a/sa/b/extra",
            "spiffe://td/namespace/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/ns//sa/b",
            "",
        ] {
            let err = Identity::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("not a workload identity"));
        }
    }
}
