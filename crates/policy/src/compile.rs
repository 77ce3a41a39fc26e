//! The compiled policy model (rules of clauses of matches, with optional L7 conditions)
//! and its compilation from `istio.security.Authorization` resources, into matchers that
//! evaluate a connection without allocating: addresses parsed to CIDRs, ports narrowed to `u16`, string
//! matches resolved to an enum. Compiling is also validating: a malformed policy is rejected
//! with a [`ValidationError`] naming the field.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use weft_proto::security::{self, string_match::MatchType};

use crate::ConnectionFacts;
use crate::l7::{L7Match, RequestFacts};
use crate::request_match::compile_extensions;
use crate::validation::{Ctx, Problem, ValidationError};

pub use weft_proto::security::{Action, Scope};

/// A validated, compiled authorization policy (L4 conditions, and the L7 ones of its
/// `weft.l7.request` extensions).
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) key: Arc<str>,
    pub(crate) namespace: Box<str>,
    pub(crate) scope: Scope,
    pub(crate) action: Action,
    pub(crate) dry_run: bool,
    pub(crate) rules: Vec<Rule>,
}

/// Matches if all clauses match (so a rule with no clauses matches everything).
#[derive(Debug)]
pub(crate) struct Rule {
    pub clauses: Vec<Clause>,
    /// An ALLOW rule with L7 conditions: without request facts it matches nothing (fails
    /// safe, as translation drops it). DENY rules instead match on their L4 part.
    pub needs_request: bool,
}

/// Matches if any of its matches matches.
#[derive(Debug)]
pub(crate) struct Clause {
    pub matches: Vec<Match>,
}

/// Every non-empty list must hold: positive lists need one hit, `not_` lists need none.
#[derive(Debug, Default)]
pub(crate) struct Match {
    pub namespaces: Vec<StrMatch>,
    pub not_namespaces: Vec<StrMatch>,
    pub principals: Vec<StrMatch>,
    pub not_principals: Vec<StrMatch>,
    pub source_ips: Vec<IpNet>,
    pub not_source_ips: Vec<IpNet>,
    pub destination_ips: Vec<IpNet>,
    pub not_destination_ips: Vec<IpNet>,
    pub destination_ports: Vec<u16>,
    pub not_destination_ports: Vec<u16>,
    pub service_accounts: Vec<ServiceAccount>,
    pub not_service_accounts: Vec<ServiceAccount>,
    /// L7 conditions, if any (boxed: L4-only matches stay small).
    pub l7: Option<Box<L7Match>>,
}

/// A string condition: Istio's exact, `prefix*`, `*suffix` and `*` (presence) forms.
#[derive(Debug)]
pub(crate) enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// Any non-empty value.
    Presence,
}

#[derive(Debug)]
pub(crate) struct ServiceAccount {
    pub namespace: Box<str>,
    pub name: Box<str>,
}

impl CompiledPolicy {
    /// Validates and compiles `policy`. `resource_name`, when given (xDS), must equal
    /// `<namespace>/<name>`.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the first malformed field.
    pub fn compile(
        resource_name: Option<&str>,
        policy: &security::Authorization,
    ) -> Result<Self, ValidationError> {
        let key = format!("{}/{}", policy.namespace, policy.name);
        let ctx = Ctx {
            resource: resource_name.unwrap_or(&key),
        };
        ctx.non_empty("name", &policy.name)?;
        ctx.non_empty("namespace", &policy.namespace)?;
        if let Some(name) = resource_name.filter(|n| *n != key) {
            return Err(
                Ctx { resource: name }.error("name", Problem::NameMismatch { expected: key })
            );
        }
        let scope = ctx.known_enum("scope", policy.scope)?;
        let action = ctx.known_enum("action", policy.action)?;
        let mut rules: Vec<Rule> = policy
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| compile_rule(ctx, &format!("rules[{r}]"), rule, action))
            .collect::<Result<_, _>>()?;
        if action == Action::Allow && !policy.extensions.is_empty() {
            // Extensions this proxy does not understand narrow an ALLOW to nothing.
            rules.clear();
        }
        Ok(Self {
            key: key.into(),
            namespace: policy.namespace.clone().into(),
            scope,
            action,
            dry_run: policy.dry_run,
            rules,
        })
    }

    /// `<namespace>/<name>`.
    #[must_use]
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The policy's namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where it applies.
    #[must_use]
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// ALLOW or DENY.
    #[must_use]
    pub fn action(&self) -> Action {
        self.action
    }

    /// Evaluated and reported, never enforced.
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Number of rules; an ALLOW policy with none is "allow nothing".
    #[must_use]
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Index of the first rule matching `facts` (and `request`, at an L7 proxy), if any.
    #[must_use]
    pub fn matching_rule(
        &self,
        facts: &ConnectionFacts,
        request: Option<&RequestFacts<'_>>,
    ) -> Option<usize> {
        self.rules
            .iter()
            .position(|rule| rule.matches(facts, request))
    }
}

/// Compiles one rule. A match's `weft.l7.request` extension becomes its L7 conditions.
/// Other extensions (on a match or on the policy), and a `RequestMatch` flagged
/// `unsupported`, are conditions this proxy cannot evaluate, so they fail safe: in an ALLOW
/// policy a match carrying them matches nothing (allows less); in a DENY policy they are
/// ignored (denies more).
fn compile_rule(
    ctx: Ctx<'_>,
    path: &str,
    rule: &security::Rule,
    action: Action,
) -> Result<Rule, ValidationError> {
    let clauses = rule
        .clauses
        .iter()
        .enumerate()
        .map(|(c, clause)| {
            let matches = clause.matches.iter().enumerate().map(|(m, one)| {
                compile_match(
                    ctx,
                    &format!("{path}.clauses[{c}].matches[{m}]"),
                    one,
                    action,
                )
            });
            let matches: Vec<Option<Match>> = matches.collect::<Result<_, _>>()?;
            Ok(Clause {
                matches: matches.into_iter().flatten().collect(),
            })
        })
        .collect::<Result<Vec<Clause>, _>>()?;
    // A clause with no matches matches nothing. In a DENY rule that would switch the whole
    // rule off (deny less), so there an empty clause imposes no condition instead.
    let clauses = match action {
        Action::Deny => clauses
            .into_iter()
            .filter(|c| !c.matches.is_empty())
            .collect(),
        Action::Allow => clauses,
    };
    Ok(Rule::new(clauses, action))
}

/// The compiled match, or `None` when it can never match (an ALLOW match with a condition
/// this proxy cannot evaluate).
fn compile_match(
    ctx: Ctx<'_>,
    path: &str,
    m: &security::Match,
    action: Action,
) -> Result<Option<Match>, ValidationError> {
    let extensions = compile_extensions(ctx, path, &m.extensions)?;
    if extensions.unevaluable && action == Action::Allow {
        return Ok(None);
    }
    compile_l4_match(ctx, path, m).map(|l4| Some(l4.with_l7(extensions.l7)))
}

fn compile_l4_match(
    ctx: Ctx<'_>,
    path: &str,
    m: &security::Match,
) -> Result<Match, ValidationError> {
    let strings =
        |field: &str, list: &[security::StringMatch]| compile_strings(ctx, path, field, list);
    let cidrs = |field: &str, list: &[security::Address]| compile_cidrs(ctx, path, field, list);
    let ports = |field: &str, list: &[u32]| {
        list.iter()
            .enumerate()
            .map(|(i, p)| ctx.port(|| format!("{path}.{field}[{i}]"), *p))
            .collect::<Result<Vec<_>, _>>()
    };
    let accounts = |field: &str, list: &[security::ServiceAccountMatch]| {
        list.iter()
            .enumerate()
            .map(|(i, sa)| {
                ctx.non_empty(
                    &format!("{path}.{field}[{i}].service_account"),
                    &sa.service_account,
                )?;
                ctx.non_empty(&format!("{path}.{field}[{i}].namespace"), &sa.namespace)?;
                Ok(ServiceAccount {
                    namespace: sa.namespace.clone().into(),
                    name: sa.service_account.clone().into(),
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()
    };
    Ok(Match {
        namespaces: strings("namespaces", &m.namespaces)?,
        not_namespaces: strings("not_namespaces", &m.not_namespaces)?,
        principals: strings("principals", &m.principals)?,
        not_principals: strings("not_principals", &m.not_principals)?,
        source_ips: cidrs("source_ips", &m.source_ips)?,
        not_source_ips: cidrs("not_source_ips", &m.not_source_ips)?,
        destination_ips: cidrs("destination_ips", &m.destination_ips)?,
        not_destination_ips: cidrs("not_destination_ips", &m.not_destination_ips)?,
        destination_ports: ports("destination_ports", &m.destination_ports)?,
        not_destination_ports: ports("not_destination_ports", &m.not_destination_ports)?,
        service_accounts: accounts("service_accounts", &m.service_accounts)?,
        not_service_accounts: accounts("not_service_accounts", &m.not_service_accounts)?,
        l7: None,
    })
}

pub(crate) fn compile_string(
    ctx: Ctx<'_>,
    field: impl FnOnce() -> String,
    s: &security::StringMatch,
) -> Result<StrMatch, ValidationError> {
    match &s.match_type {
        Some(MatchType::Exact(v)) => Ok(StrMatch::Exact(v.clone().into())),
        Some(MatchType::Prefix(v)) => Ok(StrMatch::Prefix(v.clone().into())),
        Some(MatchType::Suffix(v)) => Ok(StrMatch::Suffix(v.clone().into())),
        Some(MatchType::Presence(())) => Ok(StrMatch::Presence),
        None => Err(ctx.error(field(), Problem::Unset)),
    }
}

pub(crate) fn compile_cidr(
    ctx: Ctx<'_>,
    path: &str,
    a: &security::Address,
) -> Result<IpNet, ValidationError> {
    let ip = ctx.ip(|| format!("{path}.address"), &a.address)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    // proto3 cannot tell "0" from "unset"; Istio sends the full width for single
    // addresses, so 0 genuinely means "everything of this family".
    let length = u8::try_from(a.length)
        .ok()
        .filter(|l| u32::from(*l) <= max)
        .ok_or_else(|| {
            ctx.error(
                format!("{path}.length"),
                Problem::PrefixTooLong {
                    length: a.length,
                    max,
                },
            )
        })?;
    IpNet::new(ip, length)
        .map(|net| net.trunc())
        .map_err(|e| ctx.error(format!("{path}.length"), Problem::Malformed(e.to_string())))
}

impl Rule {
    pub fn new(clauses: Vec<Clause>, action: Action) -> Self {
        let has_l7 = clauses
            .iter()
            .flat_map(|c| &c.matches)
            .any(|m| m.l7.is_some());
        Self {
            clauses,
            needs_request: action == Action::Allow && has_l7,
        }
    }

    fn matches(&self, facts: &ConnectionFacts, request: Option<&RequestFacts<'_>>) -> bool {
        if self.needs_request && request.is_none() {
            return false;
        }
        self.clauses
            .iter()
            .all(|clause| clause.matches.iter().any(|m| m.matches(facts, request)))
    }
}

impl Match {
    /// Sets the L7 part (dropped when empty, so the match stays L4-only).
    pub fn with_l7(mut self, l7: L7Match) -> Self {
        self.l7 = (!l7.is_empty()).then(|| Box::new(l7));
        self
    }

    /// The L4 part, and the L7 part when there are request facts. Without them the L7
    /// part holds: only DENY rules get here with one (an ALLOW rule needing it never
    /// matches), and they deny on their L4 part.
    fn matches(&self, facts: &ConnectionFacts, request: Option<&RequestFacts<'_>>) -> bool {
        self.matches_l4(facts)
            && self
                .l7
                .as_ref()
                .is_none_or(|l7| request.is_none_or(|r| l7.matches(r)))
    }

    fn matches_l4(&self, facts: &ConnectionFacts) -> bool {
        let identity = facts.source_identity.as_ref();
        let namespace = identity.map(weft_identity::SpiffeId::namespace);
        let principal = identity.map(weft_identity::SpiffeId::principal);
        let source_ip = facts.source_ip;
        let dest_ip = facts.destination.ip();
        let dest_port = facts.destination.port();
        let sa_hit = |sa: &ServiceAccount| {
            identity.is_some_and(|id| {
                id.namespace() == &*sa.namespace && id.service_account() == &*sa.name
            })
        };
        positive(&self.namespaces, |m| m.matches(namespace))
            && negative(&self.not_namespaces, |m| m.matches(namespace))
            && positive(&self.principals, |m| m.matches(principal))
            && negative(&self.not_principals, |m| m.matches(principal))
            && positive(&self.source_ips, |net| contains(net, source_ip))
            && negative(&self.not_source_ips, |net| contains(net, source_ip))
            && positive(&self.destination_ips, |net| contains(net, dest_ip))
            && negative(&self.not_destination_ips, |net| contains(net, dest_ip))
            && positive(&self.destination_ports, |p| *p == dest_port)
            && negative(&self.not_destination_ports, |p| *p == dest_port)
            && positive(&self.service_accounts, sa_hit)
            && negative(&self.not_service_accounts, sa_hit)
    }
}

/// An empty positive list does not constrain; otherwise one element must hit.
pub(crate) fn positive<T>(list: &[T], hit: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(hit)
}

/// No element of a `not_` list may hit (vacuously true when empty).
pub(crate) fn negative<T>(list: &[T], hit: impl Fn(&T) -> bool) -> bool {
    !list.iter().any(hit)
}

/// IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`, seen on dual-stack sockets) match IPv4 CIDRs.
pub(crate) fn contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip) || ip.to_canonical() != ip && net.contains(&ip.to_canonical())
}

impl StrMatch {
    /// A missing value (no peer identity) matches nothing, not even `presence`.
    pub fn matches(&self, value: Option<&str>) -> bool {
        value.is_some_and(|v| self.matches_bytes(v.as_bytes(), <[u8]>::eq))
    }

    /// As [`Self::matches`] for a value that need not be text (a header's bytes).
    pub fn matches_raw(&self, value: Option<&[u8]>) -> bool {
        value.is_some_and(|v| self.matches_bytes(v, <[u8]>::eq))
    }

    /// As [`Self::matches`], comparing ASCII case-insensitively (hosts).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        self.matches_bytes(value.as_bytes(), <[u8]>::eq_ignore_ascii_case)
    }

    fn matches_bytes(&self, value: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) -> bool {
        match self {
            Self::Exact(v) => eq(value, v.as_bytes()),
            Self::Prefix(p) => value
                .get(..p.len())
                .is_some_and(|head| eq(head, p.as_bytes())),
            Self::Suffix(s) => value
                .len()
                .checked_sub(s.len())
                .is_some_and(|start| eq(&value[start..], s.as_bytes())),
            Self::Presence => !value.is_empty(),
        }
    }
}

/// Compiles `<path>.<field>[i]` for every string match of a list.
pub(crate) fn compile_strings(
    ctx: Ctx<'_>,
    path: &str,
    field: &str,
    list: &[security::StringMatch],
) -> Result<Vec<StrMatch>, ValidationError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| compile_string(ctx, || format!("{path}.{field}[{i}]"), s))
        .collect()
}

/// Compiles `<path>.<field>[i]` for every address range of a list.
pub(crate) fn compile_cidrs(
    ctx: Ctx<'_>,
    path: &str,
    field: &str,
    list: &[security::Address],
) -> Result<Vec<IpNet>, ValidationError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| compile_cidr(ctx, &format!("{path}.{field}[{i}]"), a))
        .collect()
}
