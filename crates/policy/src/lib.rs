//! weft-policy: the one authorization engine of weft's proxies (node proxy, waypoint,
//! ingress gateway).
//!
//! It owns compiled authorization policies ([`CompiledPolicy`], grouped per workload into a
//! [`PolicySet`]) and their evaluation, with the semantics of `docs/policy.md`: any matching
//! DENY denies; else no ALLOW policy allows; else a matching ALLOW allows; else deny. An
//! ALLOW policy with zero rules therefore denies everything (allow-nothing). Dry-run
//! policies are evaluated into [`Decision::dry_run`] and never enforced.
//!
//! A decision is about a connection ([`ConnectionFacts`]) and, at an L7 proxy, optionally
//! one request on it ([`RequestFacts`]). Rules may carry L7 conditions (hosts, methods,
//! paths, headers, request principals, the original client address); evaluated without
//! request facts (a node proxy at L4) they fail safe exactly as the control plane's
//! translation does: an ALLOW rule using them matches nothing, a DENY rule matches on its
//! L4 part.
//!
//! Policies are compiled from the `istio.security.Authorization` wire message
//! ([`CompiledPolicy::compile`]), whose matches may carry their L7 conditions as a
//! `weft.l7.request` extension (a packed `weft.l7.v1.RequestMatch`). With the `api`
//! feature, [`wire::from_api`] converts the user's `AuthorizationPolicy` to that wire form
//! (what the control plane sends a waypoint) and [`CompiledPolicy::from_api`] compiles it
//! through the same compiler. Compiling validates: a malformed
//! policy is a [`ValidationError`] naming the field. A [`PolicySet`] is precompiled per
//! workload, so evaluating walks a few short vectors and allocates only for the decision.
//!
//! It must not know where policies come from (xDS, files, a config store) nor do I/O: the
//! proxies feed it compiled policies and facts, and look sets up through [`PolicyLookup`].

mod compile;
mod decision;
mod facts;
mod l7;
mod request_match;
mod set;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod validation;
#[cfg(feature = "api")]
pub mod wire;

pub use compile::{Action, CompiledPolicy, Scope};
pub use decision::{Decision, Outcome, Reason, Verdict};
pub use facts::{ConnectionFacts, Transport};
pub use l7::RequestFacts;
pub use set::{OpenConnection, PolicyLookup, PolicySet, recheck};
pub use validation::{Problem, ValidationError};
