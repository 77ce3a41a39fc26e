//! L4 authorization: the facts of one connection evaluated against the policies that apply
//! to its destination workload, with the semantics of `docs/policy.md`:
//! any matching DENY denies; else no ALLOW policy allows; else a matching ALLOW allows;
//! else deny. An ALLOW policy with zero rules therefore denies everything (allow-nothing).
//! Dry-run policies are evaluated into [`Decision::dry_run`] and never enforced.
//!
//! A [`PolicySet`] is precompiled per workload when the state snapshot is built, so the
//! connection path walks a few short vectors and allocates only for the decision's result.

mod compile;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use compile::{Action, CompiledPolicy, Scope};

use crate::state::MeshState;
use weft_identity::SpiffeId;

/// How a connection reached the enforcing proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Mutual TLS HBONE tunnel; the peer identity comes from its certificate.
    Hbone,
    /// Plain TCP; there is no peer identity.
    Plaintext,
}

/// What the policy engine knows about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Verified peer identity (`None` for plaintext: principal, namespace and service
    /// account rules then cannot match, and their `not_` forms hold).
    pub source_identity: Option<SpiffeId>,
    /// Original source IP of the client workload.
    pub source_ip: IpAddr,
    /// Destination workload address and target port (after service VIP resolution).
    pub destination: SocketAddr,
    /// How the connection arrived.
    pub transport: Transport,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The connection may proceed.
    Allow,
    /// The connection must be refused (or closed).
    Deny,
}

/// Why the verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A DENY policy rule matched.
    DenyMatched,
    /// No ALLOW policy applies to the workload, so everything not denied is allowed.
    NoAllowPolicy,
    /// An ALLOW policy rule matched.
    AllowMatched,
    /// ALLOW policies apply but none matched (this includes allow-nothing policies).
    NoAllowMatched,
    /// The workload names a selector policy the proxy has not received yet; it might be a
    /// DENY, so the connection is refused until it arrives (security fails closed).
    PolicyNotReceived,
}

/// The result of one evaluation (enforced, or what dry-run policies would have done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// The deciding policy `<ns>/<name>` (for `DenyMatched`, `AllowMatched`, and the missing
    /// policy for `PolicyNotReceived`).
    pub policy: Option<Arc<str>>,
    /// Index of the matching rule in the deciding policy.
    pub rule: Option<usize>,
}

/// The decision for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What is enforced.
    pub outcome: Outcome,
    /// Present when dry-run policies apply to the workload: the outcome if they were
    /// enforced too. Report it (log, count); never act on it.
    pub dry_run: Option<Outcome>,
}

impl Decision {
    /// True when the connection may proceed.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.outcome.verdict == Verdict::Allow
    }

    /// True when enforcing the dry-run policies would have denied an allowed connection
    /// (the case to count and log for users trying a policy out).
    #[must_use]
    pub fn dry_run_would_deny(&self) -> bool {
        self.is_allowed()
            && self
                .dry_run
                .as_ref()
                .is_some_and(|d| d.verdict == Verdict::Deny)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DenyMatched => "a DENY rule matched",
            Self::NoAllowPolicy => "no ALLOW policy applies",
            Self::AllowMatched => "an ALLOW rule matched",
            Self::NoAllowMatched => "no ALLOW rule matched",
            Self::PolicyNotReceived => "the workload's policy has not been received yet",
        })
    }
}

/// One line: `ALLOW ns/name rule 2 (an ALLOW rule matched)` or `DENY (no ALLOW rule matched)`.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict)?;
        if let Some(policy) = &self.policy {
            write!(f, " {policy}")?;
        }
        if let Some(rule) = self.rule {
            write!(f, " rule {rule}")?;
        }
        write!(f, " ({})", self.reason)
    }
}

/// The enforced outcome, then the dry-run outcome if any: what `weft x authz check` prints.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.outcome)?;
        if let Some(dry) = &self.dry_run {
            write!(f, "; dry-run: {dry}")?;
        }
        Ok(())
    }
}

/// The policies applying to one workload, split by action and enforcement, each list sorted
/// by policy key so that the deciding policy is deterministic.
#[derive(Debug, Default)]
pub struct PolicySet {
    deny: Vec<Arc<CompiledPolicy>>,
    allow: Vec<Arc<CompiledPolicy>>,
    dry_run_deny: Vec<Arc<CompiledPolicy>>,
    dry_run_allow: Vec<Arc<CompiledPolicy>>,
    missing: Vec<String>,
}

impl PolicySet {
    /// Groups `policies` (duplicates by key are dropped). `missing` lists selector policies
    /// the workload names but the proxy has not received: while any is missing, the set
    /// denies every connection.
    #[must_use]
    pub fn new(
        policies: impl IntoIterator<Item = Arc<CompiledPolicy>>,
        missing: Vec<String>,
    ) -> Self {
        let mut all: Vec<_> = policies.into_iter().collect();
        all.sort_by(|a, b| a.key().cmp(b.key()));
        all.dedup_by(|a, b| a.key() == b.key());
        let mut set = Self {
            missing,
            ..Self::default()
        };
        for policy in all {
            let list = match (policy.dry_run(), policy.action()) {
                (false, Action::Deny) => &mut set.deny,
                (false, Action::Allow) => &mut set.allow,
                (true, Action::Deny) => &mut set.dry_run_deny,
                (true, Action::Allow) => &mut set.dry_run_allow,
            };
            list.push(policy);
        }
        set
    }

    /// Evaluates `facts`. While a policy the workload names is missing, everything is denied.
    #[must_use]
    pub fn evaluate(&self, facts: &ConnectionFacts) -> Decision {
        let outcome = match self.missing.first() {
            Some(missing) => Outcome {
                verdict: Verdict::Deny,
                reason: Reason::PolicyNotReceived,
                policy: Some(Arc::from(missing.as_str())),
                rule: None,
            },
            None => decide(self.deny.iter(), self.allow.iter(), facts),
        };
        let dry_run =
            (!self.dry_run_deny.is_empty() || !self.dry_run_allow.is_empty()).then(|| {
                decide(
                    self.deny.iter().chain(&self.dry_run_deny),
                    self.allow.iter().chain(&self.dry_run_allow),
                    facts,
                )
            });
        Decision { outcome, dry_run }
    }

    /// Every policy in the set (enforced first), for diagnostics and config dumps.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<CompiledPolicy>> {
        self.deny
            .iter()
            .chain(&self.allow)
            .chain(&self.dry_run_deny)
            .chain(&self.dry_run_allow)
    }

    /// Selector policies the workload references that the proxy does not have.
    #[must_use]
    pub fn missing(&self) -> &[String] {
        &self.missing
    }
}

fn decide<'a>(
    deny: impl Iterator<Item = &'a Arc<CompiledPolicy>>,
    allow: impl Iterator<Item = &'a Arc<CompiledPolicy>>,
    facts: &ConnectionFacts,
) -> Outcome {
    if let Some((policy, rule)) = first_match(deny, facts) {
        return matched(Verdict::Deny, Reason::DenyMatched, policy, rule);
    }
    let mut allow = allow.peekable();
    if allow.peek().is_none() {
        return unmatched(Verdict::Allow, Reason::NoAllowPolicy);
    }
    match first_match(allow, facts) {
        Some((policy, rule)) => matched(Verdict::Allow, Reason::AllowMatched, policy, rule),
        None => unmatched(Verdict::Deny, Reason::NoAllowMatched),
    }
}

fn first_match<'a>(
    mut policies: impl Iterator<Item = &'a Arc<CompiledPolicy>>,
    facts: &ConnectionFacts,
) -> Option<(&'a CompiledPolicy, usize)> {
    policies.find_map(|p| p.matching_rule(facts).map(|rule| (&**p, rule)))
}

fn matched(verdict: Verdict, reason: Reason, policy: &CompiledPolicy, rule: usize) -> Outcome {
    Outcome {
        verdict,
        reason,
        policy: Some(policy.key().clone()),
        rule: Some(rule),
    }
}

fn unmatched(verdict: Verdict, reason: Reason) -> Outcome {
    Outcome {
        verdict,
        reason,
        policy: None,
        rule: None,
    }
}

/// An open connection the data path asks [`recheck`] about.
#[derive(Debug, Clone, Copy)]
pub struct OpenConnection<'a, K> {
    /// The data path's handle for the connection (returned for denied ones).
    pub id: K,
    /// uid of the destination workload the connection was authorized for.
    pub destination_workload: &'a str,
    /// The facts it was authorized with.
    pub facts: &'a ConnectionFacts,
}

/// After a state update, re-evaluates open connections against `state` and returns those
/// now denied, with the decision (the data path closes them and logs why).
///
/// A connection whose destination workload is no longer in `state` is not returned: that
/// is a routing change, not a policy decision, and the data path handles it separately.
pub fn recheck<'a, K: 'a>(
    state: &MeshState,
    open: impl IntoIterator<Item = OpenConnection<'a, K>>,
) -> Vec<(K, Decision)> {
    open.into_iter()
        .filter_map(|conn| {
            let workload = state.workload_by_uid(conn.destination_workload)?;
            let decision = workload.policies().evaluate(conn.facts);
            (!decision.is_allowed()).then_some((conn.id, decision))
        })
        .collect()
}
