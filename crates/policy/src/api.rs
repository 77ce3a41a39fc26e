//! Compiles the user's `AuthorizationPolicy` (weft's config model) directly, L7 fields
//! included, for the proxies that see requests (waypoint, gateway). Same shape as the
//! control plane's translation to the wire form: `from`, `to` and each `when` condition
//! become one clause; a `from`/`to` entry with no field makes its clause no condition.
//!
//! `when` keys this engine has no facts for (`request.auth.claims[...]`, `connection.sni`,
//! ...) fail safe: in an ALLOW rule they match nothing, in a DENY rule they are no
//! condition. Values that do not parse (ports, addresses, header names) are errors.

use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use weft_api::istio::{self, AuthorizationPolicy, Condition, Operation, Source};

use crate::compile::{Clause, Match, Rule, ServiceAccount, StrMatch};
use crate::l7::{HeaderCondition, L7Match};
use crate::validation::{Ctx, Problem, ValidationError};
use crate::{Action, CompiledPolicy, Scope};

/// The annotation that makes a policy dry-run (`"true"`, case-insensitive).
const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

impl CompiledPolicy {
    /// Compiles `policy` with its L7 clauses. `root_namespace` (usually `istio-system`)
    /// makes a selector-less policy mesh-wide ([`Scope::Global`]).
    ///
    /// # Errors
    /// A [`ValidationError`] naming the first malformed field, or the action for AUDIT and
    /// CUSTOM, which this engine does not decide.
    pub fn from_api(
        policy: &AuthorizationPolicy,
        root_namespace: &str,
    ) -> Result<Self, ValidationError> {
        let namespace = policy
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(weft_api::object::DEFAULT_NAMESPACE);
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let ctx = Ctx { resource: &key };
        ctx.non_empty("metadata.name", name)?;
        let action = action(ctx, policy.spec.action)?;
        let compiler = Compiler {
            ctx,
            namespace,
            action,
        };
        let rules = policy.spec.rules.iter().flatten().enumerate();
        let rules = rules
            .map(|(r, rule)| compiler.rule(&format!("spec.rules[{r}]"), rule))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            key: key.as_str().into(),
            namespace: namespace.into(),
            scope: scope(policy, namespace, root_namespace),
            action,
            dry_run: dry_run(policy),
            rules,
        })
    }
}

fn action(ctx: Ctx<'_>, action: Option<istio::Action>) -> Result<Action, ValidationError> {
    match action {
        None | Some(istio::Action::Allow) => Ok(Action::Allow),
        Some(istio::Action::Deny) => Ok(Action::Deny),
        Some(other) => Err(ctx.error(
            "spec.action",
            Problem::Malformed(format!(
                "action {other:?} is not decided by the policy engine"
            )),
        )),
    }
}

fn scope(policy: &AuthorizationPolicy, namespace: &str, root_namespace: &str) -> Scope {
    let selector = policy.spec.selector.as_ref();
    if selector.is_some_and(|s| !s.match_labels.is_empty()) {
        Scope::WorkloadSelector
    } else if namespace == root_namespace {
        Scope::Global
    } else {
        Scope::Namespace
    }
}

fn dry_run(policy: &AuthorizationPolicy) -> bool {
    let annotations = policy.metadata.annotations.as_ref();
    annotations
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[derive(Clone, Copy)]
struct Compiler<'a> {
    ctx: Ctx<'a>,
    namespace: &'a str,
    action: Action,
}

impl Compiler<'_> {
    fn rule(self, path: &str, rule: &istio::Rule) -> Result<Rule, ValidationError> {
        let mut clauses = Vec::new();
        let from = rule.from.iter().flatten().enumerate();
        let from =
            from.map(|(i, f)| self.source(&format!("{path}.from[{i}].source"), f.source.as_ref()));
        clauses.extend(clause_of(from.collect::<Result<_, _>>()?));
        let to = rule.to.iter().flatten().enumerate();
        let to = to.map(|(i, t)| {
            self.operation(&format!("{path}.to[{i}].operation"), t.operation.as_ref())
        });
        clauses.extend(clause_of(to.collect::<Result<_, _>>()?));
        for (i, condition) in rule.when.iter().flatten().enumerate() {
            match self.condition(&format!("{path}.when[{i}]"), condition)? {
                Some(m) => clauses.push(Clause { matches: vec![m] }),
                // A key without facts: ALLOW matches nothing (an empty clause), DENY ignores it.
                None if self.action == Action::Allow => clauses.push(Clause { matches: vec![] }),
                None => {}
            }
        }
        Ok(Rule::new(clauses, self.action))
    }

    fn source(self, path: &str, source: Option<&Source>) -> Result<Match, ValidationError> {
        let Some(s) = source else {
            return Ok(Match::default());
        };
        let l7 = L7Match {
            request_principals: wildcards(s.request_principals.as_ref()),
            not_request_principals: wildcards(s.not_request_principals.as_ref()),
            remote_ips: self.cidrs(
                &format!("{path}.remoteIpBlocks"),
                s.remote_ip_blocks.as_ref(),
            )?,
            not_remote_ips: self.cidrs(
                &format!("{path}.notRemoteIpBlocks"),
                s.not_remote_ip_blocks.as_ref(),
            )?,
            ..L7Match::default()
        };
        let m = Match {
            principals: principals(s.principals.as_ref()),
            not_principals: principals(s.not_principals.as_ref()),
            namespaces: wildcards(s.namespaces.as_ref()),
            not_namespaces: wildcards(s.not_namespaces.as_ref()),
            service_accounts: self.accounts(s.service_accounts.as_ref()),
            not_service_accounts: self.accounts(s.not_service_accounts.as_ref()),
            source_ips: self.cidrs(&format!("{path}.ipBlocks"), s.ip_blocks.as_ref())?,
            not_source_ips: self.cidrs(&format!("{path}.notIpBlocks"), s.not_ip_blocks.as_ref())?,
            ..Match::default()
        };
        Ok(m.with_l7(l7))
    }

    fn operation(
        self,
        path: &str,
        operation: Option<&Operation>,
    ) -> Result<Match, ValidationError> {
        let Some(o) = operation else {
            return Ok(Match::default());
        };
        let l7 = L7Match {
            hosts: wildcards(o.hosts.as_ref()),
            not_hosts: wildcards(o.not_hosts.as_ref()),
            methods: wildcards(o.methods.as_ref()),
            not_methods: wildcards(o.not_methods.as_ref()),
            paths: wildcards(o.paths.as_ref()),
            not_paths: wildcards(o.not_paths.as_ref()),
            ..L7Match::default()
        };
        let m = Match {
            destination_ports: self.ports(&format!("{path}.ports"), o.ports.as_ref())?,
            not_destination_ports: self.ports(&format!("{path}.notPorts"), o.not_ports.as_ref())?,
            ..Match::default()
        };
        Ok(m.with_l7(l7))
    }

    /// The match of one `when` condition, or `None` for a key this engine has no facts for.
    fn condition(self, path: &str, c: &Condition) -> Result<Option<Match>, ValidationError> {
        let (values, not_values) = (c.values.as_ref(), c.not_values.as_ref());
        let field = format!("{path} (key {})", c.key);
        let m = match c.key.as_str() {
            "source.ip" => Match {
                source_ips: self.cidrs(&field, values)?,
                not_source_ips: self.cidrs(&field, not_values)?,
                ..Match::default()
            },
            "destination.ip" => Match {
                destination_ips: self.cidrs(&field, values)?,
                not_destination_ips: self.cidrs(&field, not_values)?,
                ..Match::default()
            },
            "source.namespace" => Match {
                namespaces: wildcards(values),
                not_namespaces: wildcards(not_values),
                ..Match::default()
            },
            "source.principal" => Match {
                principals: principals(values),
                not_principals: principals(not_values),
                ..Match::default()
            },
            "destination.port" => Match {
                destination_ports: self.ports(&field, values)?,
                not_destination_ports: self.ports(&field, not_values)?,
                ..Match::default()
            },
            key => return self.l7_condition(&field, key, values, not_values),
        };
        Ok(Some(m))
    }

    fn l7_condition(
        self,
        field: &str,
        key: &str,
        values: Option<&Vec<String>>,
        not_values: Option<&Vec<String>>,
    ) -> Result<Option<Match>, ValidationError> {
        let l7 = match key {
            "remote.ip" => L7Match {
                remote_ips: self.cidrs(field, values)?,
                not_remote_ips: self.cidrs(field, not_values)?,
                ..L7Match::default()
            },
            "request.auth.principal" => L7Match {
                request_principals: wildcards(values),
                not_request_principals: wildcards(not_values),
                ..L7Match::default()
            },
            _ => match header_key(key) {
                Some(name) => L7Match {
                    headers: vec![HeaderCondition {
                        name: HeaderName::try_from(name.to_ascii_lowercase()).map_err(|e| {
                            self.ctx.error(field, Problem::Malformed(e.to_string()))
                        })?,
                        values: wildcards(values),
                        not_values: wildcards(not_values),
                    }],
                    ..L7Match::default()
                },
                None => return Ok(None),
            },
        };
        Ok(Some(Match::default().with_l7(l7)))
    }

    fn cidrs(
        self,
        field: &str,
        values: Option<&Vec<String>>,
    ) -> Result<Vec<IpNet>, ValidationError> {
        values
            .into_iter()
            .flatten()
            .map(|v| {
                parse_cidr(v).ok_or_else(|| {
                    self.ctx.error(
                        field,
                        Problem::Malformed(format!("{v:?} is not an IP address or CIDR")),
                    )
                })
            })
            .collect()
    }

    fn ports(self, field: &str, values: Option<&Vec<String>>) -> Result<Vec<u16>, ValidationError> {
        values
            .into_iter()
            .flatten()
            .map(|v| {
                let port = v.parse::<u32>().map_err(|_| {
                    self.ctx.error(
                        field,
                        Problem::Malformed(format!("{v:?} is not a port number")),
                    )
                })?;
                self.ctx.port(|| field.to_owned(), port)
            })
            .collect()
    }

    /// `ns/name`, or `name` in the policy's namespace.
    fn accounts(self, values: Option<&Vec<String>>) -> Vec<ServiceAccount> {
        let account = |v: &String| {
            let (namespace, name) = v.split_once('/').unwrap_or((self.namespace, v));
            ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            }
        };
        values.into_iter().flatten().map(account).collect()
    }
}

/// A clause from the matches of a `from`/`to` list; `None` when it constrains nothing (no
/// entries, or an entry with no field).
fn clause_of(matches: Vec<Match>) -> Option<Clause> {
    let unconstrained = matches.is_empty() || matches.iter().any(Match::is_unconstrained);
    (!unconstrained).then_some(Clause { matches })
}

fn wildcards(values: Option<&Vec<String>>) -> Vec<StrMatch> {
    values
        .into_iter()
        .flatten()
        .map(|v| StrMatch::wildcard(v))
        .collect()
}

/// Principals as wildcards, with an optional `spiffe://` removed.
fn principals(values: Option<&Vec<String>>) -> Vec<StrMatch> {
    let strip = |v: &String| StrMatch::wildcard(v.strip_prefix("spiffe://").unwrap_or(v));
    values.into_iter().flatten().map(strip).collect()
}

/// `request.headers[name]` -> `name`.
fn header_key(key: &str) -> Option<&str> {
    key.strip_prefix("request.headers[")?.strip_suffix(']')
}

/// An IP (full-length prefix) or CIDR.
fn parse_cidr(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .ok()
}
