//! Which `AuthorizationPolicy` attributes need an L7 proxy. A node proxy sees a connection:
//! its peer identity, TCP peer address and destination. Everything about a request (JWT
//! principals, host, method, path, headers) or about the original client behind a load
//! balancer (`remoteIpBlocks`, `remote.ip`: taken from `X-Forwarded-For` or the PROXY
//! protocol) is only visible to a waypoint or gateway. The translator (which drops or
//! widens rules using them) and `weft analyze` (which warns about it) both ask here.

use crate::istio::{Condition, Operation, Source};

/// `when` keys a node proxy can evaluate; every other key needs an L7 proxy.
pub const L4_CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

/// A list-valued field is set when it has at least one value (Istio ignores empty lists).
fn is_set(values: &Option<Vec<String>>) -> bool {
    values.as_ref().is_some_and(|v| !v.is_empty())
}

impl Source {
    /// Names of the set fields that only an L7 proxy can check, in field order.
    #[must_use]
    pub fn l7_fields(&self) -> Vec<&'static str> {
        [
            ("requestPrincipals", &self.request_principals),
            ("notRequestPrincipals", &self.not_request_principals),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
        ]
        .into_iter()
        .filter_map(|(name, values)| is_set(values).then_some(name))
        .collect()
    }
}

impl Operation {
    /// Names of the set fields that only an L7 proxy can check, in field order.
    #[must_use]
    pub fn l7_fields(&self) -> Vec<&'static str> {
        [
            ("hosts", &self.hosts),
            ("notHosts", &self.not_hosts),
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
            ("paths", &self.paths),
            ("notPaths", &self.not_paths),
        ]
        .into_iter()
        .filter_map(|(name, values)| is_set(values).then_some(name))
        .collect()
    }
}

impl Condition {
    /// Whether a node proxy can evaluate this condition.
    #[must_use]
    pub fn is_l4(&self) -> bool {
        L4_CONDITION_KEYS.contains(&self.key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_client_addresses_are_l7_and_peer_addresses_are_not() {
        let source = Source {
            ip_blocks: Some(vec!["10.0.0.0/8".into()]),
            remote_ip_blocks: Some(vec!["192.0.2.1".into()]),
            not_remote_ip_blocks: Some(vec![]),
            ..Source::default()
        };
        assert_eq!(source.l7_fields(), ["remoteIpBlocks"]);
        let condition = |key: &str| Condition {
            key: key.into(),
            ..Condition::default()
        };
        assert!(condition("source.ip").is_l4());
        assert!(!condition("remote.ip").is_l4());
        assert!(!condition("request.headers[x-user]").is_l4());
    }
}
