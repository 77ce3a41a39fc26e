//! The evaluation behind `weft x authz check`: "would a connection from X to workload Y on
//! port N be allowed?" answered from a [`MeshState`] with the same [`PolicySet`]s the proxy
//! enforces. Pure: no I/O, no clock.
//!
//! [`PolicySet`]: weft_policy::PolicySet

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use crate::state::{MeshState, MeshWorkload};
use weft_identity::SpiffeId;
use weft_policy::{ConnectionFacts, Decision, Transport};

/// The destination workload of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `<namespace>/<name>` (pod name for Kubernetes pods).
    Workload {
        /// Namespace.
        namespace: String,
        /// Workload name.
        name: String,
    },
    /// A workload address (must belong to exactly one workload).
    Ip(IpAddr),
}

/// The client side of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An mTLS (HBONE) client with this identity.
    Identity(SpiffeId),
    /// A plaintext client (no identity).
    Plaintext,
}

/// One `weft x authz check` question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzQuery {
    /// Destination workload.
    pub to: Target,
    /// Destination (target) port on the workload.
    pub port: u16,
    /// Who connects.
    pub from: Source,
    /// Client IP; when absent the unspecified address of the destination's family is used,
    /// so positive source-IP rules cannot match and `not_source_ips` rules hold.
    pub source_ip: Option<IpAddr>,
}

/// The answer: which workload was evaluated and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// uid of the destination workload.
    pub workload: String,
    /// The decision, including the dry-run outcome if dry-run policies apply.
    pub decision: Decision,
}

/// Why a query could not be answered (bad input; a DENY is not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// `--to` is neither `<namespace>/<name>` nor an IP address.
    #[error("target {0:?} is neither <namespace>/<name> nor an IP address")]
    BadTarget(String),
    /// No workload has that namespace and name.
    #[error("no workload {namespace}/{name}")]
    NoSuchWorkload {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// No workload has that address.
    #[error("no workload has address {0}")]
    NoWorkloadWithIp(IpAddr),
    /// Several workloads (on different networks) have that address.
    #[error("address {ip} belongs to several workloads ({}); name one as <namespace>/<name>", .uids.join(", "))]
    AmbiguousIp {
        /// The address.
        ip: IpAddr,
        /// Their uids.
        uids: Vec<String>,
    },
}

impl FromStr for Target {
    type Err = CheckError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Ip(ip));
        }
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self::Workload {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(CheckError::BadTarget(s.to_owned())),
        }
    }
}

/// Answers `query` against `state`.
///
/// # Errors
/// When the target workload cannot be identified (see [`CheckError`]).
pub fn check(state: &MeshState, query: &AuthzQuery) -> Result<CheckResult, CheckError> {
    let (workload, destination_ip) = find_target(state, &query.to)?;
    let (source_identity, transport) = match &query.from {
        Source::Identity(id) => (Some(id.clone()), Transport::Hbone),
        Source::Plaintext => (None, Transport::Plaintext),
    };
    let source_ip = query.source_ip.unwrap_or(if destination_ip.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let facts = ConnectionFacts {
        source_identity,
        source_ip,
        destination: SocketAddr::new(destination_ip, query.port),
        transport,
    };
    Ok(CheckResult {
        workload: workload.uid().to_owned(),
        decision: state.policies_of(&workload).evaluate(&facts),
    })
}

fn find_target(
    state: &MeshState,
    target: &Target,
) -> Result<(Arc<MeshWorkload>, IpAddr), CheckError> {
    match target {
        Target::Workload { namespace, name } => {
            let workload = state.workload_by_name(namespace, name).ok_or_else(|| {
                CheckError::NoSuchWorkload {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }
            })?;
            let ip = workload
                .addresses()
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            Ok((workload.clone(), ip))
        }
        Target::Ip(ip) => {
            let mut owners = state.workloads_with_ip(*ip);
            let first = owners.next().ok_or(CheckError::NoWorkloadWithIp(*ip))?;
            let rest: Vec<_> = owners.map(|w| w.uid().to_owned()).collect();
            if rest.is_empty() {
                Ok((first.clone(), *ip))
            } else {
                let mut uids = vec![first.uid().to_owned()];
                uids.extend(rest);
                uids.sort();
                Err(CheckError::AmbiguousIp { ip: *ip, uids })
            }
        }
    }
}

/// The CLI line: `ALLOW <policy> rule <n> (<reason>)` / `DENY ...`, then the dry-run part.
impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.decision)
    }
}

#[cfg(test)]
mod tests {
    use weft_proto::security::{Action, Match, Scope};

    use super::*;
    use crate::state::LocalConfig;
    use crate::state::tests::pod;
    use weft_policy::testing::{authz, cidr, deny, exact, one, presence};
    use weft_proto::workload::{Address, address};

    fn state() -> MeshState {
        let mut db = pod("shop", "db-1", "10.0.3.1");
        db.authorization_policies = vec!["shop/db-allow".into()];
        let addresses = [
            pod("shop", "web-1", "10.0.1.1"),
            db,
            pod("ops", "admin-1", "10.0.2.1"),
        ]
        .into_iter()
        .map(|w| Address {
            r#type: Some(address::Type::Workload(w)),
        });
        let policies = [
            deny(
                "istio-system/strict",
                vec![one(Match {
                    not_principals: vec![presence()],
                    ..Default::default()
                })],
            ),
            authz(
                "shop/db-allow",
                Scope::WorkloadSelector,
                Action::Allow,
                vec![
                    one(Match {
                        principals: vec![exact("cluster.local/ns/shop/sa/web")],
                        destination_ports: vec![5432],
                        ..Default::default()
                    }),
                    one(Match {
                        source_ips: vec![cidr("10.0.2.0/24")],
                        ..Default::default()
                    }),
                ],
            ),
        ];
        let mut policies = policies.to_vec();
        policies[0].scope = Scope::Global.into();
        LocalConfig::from_resources(addresses, policies)
            .unwrap()
            .to_state()
    }

    fn ask(
        to: &str,
        port: u16,
        from: Option<&str>,
        source_ip: Option<&str>,
    ) -> Result<String, CheckError> {
        let query = AuthzQuery {
            to: to.parse()?,
            port,
            from: from.map_or(Source::Plaintext, |id| {
                Source::Identity(SpiffeId::parse_uri_or_principal(id).unwrap())
            }),
            source_ip: source_ip.map(|ip| ip.parse().unwrap()),
        };
        check(&state(), &query).map(|r| r.to_string())
    }

    #[test]
    fn answers_by_name_and_by_ip() {
        let web = Some("spiffe://cluster.local/ns/shop/sa/web");
        let admin = Some("spiffe://cluster.local/ns/ops/sa/admin");
        let table = [
            (
                ask("shop/db-1", 5432, web, None),
                "ALLOW shop/db-allow rule 0 (an ALLOW rule matched)",
            ),
            (
                ask("10.0.3.1", 5432, web, None),
                "ALLOW shop/db-allow rule 0 (an ALLOW rule matched)",
            ),
            (
                ask("shop/db-1", 22, web, None),
                "DENY (no ALLOW rule matched)",
            ),
            (
                ask("shop/db-1", 5432, admin, None),
                "DENY (no ALLOW rule matched)",
            ),
            (
                ask("shop/db-1", 5432, admin, Some("10.0.2.1")),
                "ALLOW shop/db-allow rule 1 (an ALLOW rule matched)",
            ),
            (
                ask("shop/db-1", 5432, None, Some("10.0.2.1")),
                "DENY istio-system/strict rule 0 (a DENY rule matched)",
            ),
            (
                ask("shop/web-1", 80, admin, None),
                "ALLOW (no ALLOW policy applies)",
            ),
        ];
        for (i, (got, want)) in table.into_iter().enumerate() {
            assert_eq!(got.unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn bad_targets_are_errors_not_decisions() {
        assert_eq!(
            ask("db-1", 1, None, None),
            Err(CheckError::BadTarget("db-1".into()))
        );
        assert_eq!(
            ask("shop/nope", 1, None, None).unwrap_err().to_string(),
            "no workload shop/nope"
        );
        assert_eq!(
            ask("10.9.9.9", 1, None, None),
            Err(CheckError::NoWorkloadWithIp("10.9.9.9".parse().unwrap()))
        );
    }

    #[test]
    fn an_ip_on_two_networks_is_ambiguous() {
        let mut a = pod("shop", "a", "10.0.0.1");
        a.network = "east".into();
        let mut b = pod("shop", "b", "10.0.0.1");
        b.network = "west".into();
        let state = LocalConfig::from_resources(
            [a, b].map(|w| Address {
                r#type: Some(address::Type::Workload(w)),
            }),
            [],
        )
        .unwrap()
        .to_state();
        let query = AuthzQuery {
            to: "10.0.0.1".parse().unwrap(),
            port: 1,
            from: Source::Plaintext,
            source_ip: None,
        };
        let err = check(&state, &query).unwrap_err();
        assert!(
            matches!(err, CheckError::AmbiguousIp { ref uids, .. } if uids.len() == 2),
            "{err}"
        );
    }
}
