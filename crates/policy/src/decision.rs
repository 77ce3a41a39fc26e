//! The answer of an evaluation: [`Decision`] (enforced [`Outcome`], plus what dry-run
//! policies would have done), and its one-line rendering used by logs and the CLI.

use std::fmt;
use std::sync::Arc;

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
