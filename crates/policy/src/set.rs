//! The policies of one workload ([`PolicySet`]) and the evaluation order of
//! `docs/policy.md`; [`recheck`] re-evaluates open connections after a policy change.

use std::sync::Arc;

use crate::{
    Action, CompiledPolicy, ConnectionFacts, Decision, Outcome, Reason, RequestFacts, Verdict,
};

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

    /// Evaluates a connection at L4 (a node proxy): [`Self::evaluate_with`] without request
    /// facts.
    #[must_use]
    pub fn evaluate(&self, facts: &ConnectionFacts) -> Decision {
        self.evaluate_with(facts, None)
    }

    /// Evaluates a connection and, at an L7 proxy, one request on it. Without `request`,
    /// rules with L7 conditions fail safe (an ALLOW rule matches nothing, a DENY rule
    /// matches on its L4 part). While a policy the workload names is missing, everything is
    /// denied.
    #[must_use]
    pub fn evaluate_with(
        &self,
        facts: &ConnectionFacts,
        request: Option<&RequestFacts<'_>>,
    ) -> Decision {
        let outcome = match self.missing.first() {
            Some(missing) => Outcome {
                verdict: Verdict::Deny,
                reason: Reason::PolicyNotReceived,
                policy: Some(Arc::from(missing.as_str())),
                rule: None,
            },
            None => decide(self.deny.iter(), self.allow.iter(), (facts, request)),
        };
        let dry_run =
            (!self.dry_run_deny.is_empty() || !self.dry_run_allow.is_empty()).then(|| {
                decide(
                    self.deny.iter().chain(&self.dry_run_deny),
                    self.allow.iter().chain(&self.dry_run_allow),
                    (facts, request),
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

/// What one evaluation is about: the connection, and the request if any.
type Facts<'f> = (&'f ConnectionFacts, Option<&'f RequestFacts<'f>>);

fn decide<'a>(
    deny: impl Iterator<Item = &'a Arc<CompiledPolicy>>,
    allow: impl Iterator<Item = &'a Arc<CompiledPolicy>>,
    facts: Facts<'_>,
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
    (facts, request): Facts<'_>,
) -> Option<(&'a CompiledPolicy, usize)> {
    policies.find_map(|p| p.matching_rule(facts, request).map(|rule| (&**p, rule)))
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

/// Where [`recheck`] finds the current policies of a workload (the node proxy's state
/// snapshot implements it).
pub trait PolicyLookup {
    /// The policy set of the workload with this uid, or `None` if there is no such workload.
    fn policies_for(&self, workload_uid: &str) -> Option<&PolicySet>;
}

impl<T: PolicyLookup + ?Sized> PolicyLookup for Arc<T> {
    fn policies_for(&self, workload_uid: &str) -> Option<&PolicySet> {
        (**self).policies_for(workload_uid)
    }
}

/// After a policy update, re-evaluates open connections against `lookup` and returns those
/// now denied, with the decision (the data path closes them and logs why).
///
/// A connection whose destination workload is no longer known is not returned: that is a
/// routing change, not a policy decision, and the data path handles it separately.
pub fn recheck<'a, K: 'a>(
    lookup: &impl PolicyLookup,
    open: impl IntoIterator<Item = OpenConnection<'a, K>>,
) -> Vec<(K, Decision)> {
    open.into_iter()
        .filter_map(|conn| {
            let decision = lookup
                .policies_for(conn.destination_workload)?
                .evaluate(conn.facts);
            (!decision.is_allowed()).then_some((conn.id, decision))
        })
        .collect()
}
