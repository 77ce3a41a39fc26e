//! The user's `AuthorizationPolicy` (weft's config model) -> the `istio.security.Authorization`
//! wire form, L7 fields included: each match's L7 conditions travel as a
//! `weft.l7.request` extension (a packed `weft.l7.v1.RequestMatch`). The control plane sends
//! this form to waypoints, and [`CompiledPolicy::from_api`] compiles it with the one wire
//! compiler ([`CompiledPolicy::compile`]), so there is a single compiler.
//!
//! Shape: `from`, `to` and each `when` condition become one clause; a `from`/`to` entry
//! with no field makes its clause no condition. A `when` key this engine has no facts for
//! (`request.auth.claims[...]`, `connection.sni`, ...) becomes a `RequestMatch` flagged
//! `unsupported`, which fails safe when compiled (ALLOW: matches nothing; DENY: no
//! condition). Values that do not parse (ports, addresses, header names) are errors naming
//! the user's field.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_api::istio::{self, AuthorizationPolicy, Condition, Operation, Source};
use weft_proto::l7::{HeaderCondition, RequestMatch};
use weft_proto::security::{
    self, Authorization, Clause, Extension, Match, Rule, ServiceAccountMatch, StringMatch,
    string_match::MatchType,
};
use weft_proto::{REQUEST_MATCH_EXTENSION, REQUEST_MATCH_TYPE_URL, pack_any};

use crate::request_match::header_name;
use crate::validation::{Ctx, Problem, ValidationError};
use crate::{Action, CompiledPolicy, Scope};

pub use weft_api::istio::DRY_RUN_ANNOTATION;

impl CompiledPolicy {
    /// Compiles `policy` with its L7 clauses: [`from_api`] then [`CompiledPolicy::compile`].
    ///
    /// # Errors
    /// As [`from_api`].
    pub fn from_api(
        policy: &AuthorizationPolicy,
        root_namespace: &str,
    ) -> Result<Self, ValidationError> {
        let wire = from_api(policy, root_namespace)?;
        Self::compile(None, &wire)
    }
}

/// Converts `policy` to its wire form with L7 extensions. `root_namespace` (usually
/// `istio-system`) makes a selector-less policy mesh-wide ([`Scope::Global`]).
///
/// # Errors
/// A [`ValidationError`] naming the first malformed field (`spec.rules[0].to[0]...`), or
/// the action for AUDIT and CUSTOM, which this engine does not decide.
pub fn from_api(
    policy: &AuthorizationPolicy,
    root_namespace: &str,
) -> Result<Authorization, ValidationError> {
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
    let converter = Converter { ctx, namespace };
    let rules = policy.spec.rules.iter().flatten().enumerate();
    let rules = rules
        .map(|(r, rule)| converter.rule(&format!("spec.rules[{r}]"), rule))
        .collect::<Result<_, _>>()?;
    Ok(Authorization {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        scope: scope(policy, namespace, root_namespace).into(),
        action: action.into(),
        rules,
        dry_run: policy.is_dry_run(),
        extensions: Vec::new(),
    })
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

#[derive(Clone, Copy)]
struct Converter<'a> {
    ctx: Ctx<'a>,
    namespace: &'a str,
}

impl Converter<'_> {
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
            let m = self.condition(&format!("{path}.when[{i}]"), condition)?;
            clauses.push(Clause { matches: vec![m] });
        }
        Ok(Rule { clauses })
    }

    fn source(self, path: &str, source: Option<&Source>) -> Result<Match, ValidationError> {
        let Some(s) = source else {
            return Ok(Match::default());
        };
        let request = RequestMatch {
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
            ..RequestMatch::default()
        };
        let m = Match {
            principals: wildcards(s.principals.as_ref()),
            not_principals: wildcards(s.not_principals.as_ref()),
            namespaces: wildcards(s.namespaces.as_ref()),
            not_namespaces: wildcards(s.not_namespaces.as_ref()),
            service_accounts: self.accounts(
                &format!("{path}.serviceAccounts"),
                s.service_accounts.as_ref(),
            )?,
            not_service_accounts: self.accounts(
                &format!("{path}.notServiceAccounts"),
                s.not_service_accounts.as_ref(),
            )?,
            source_ips: self.cidrs(&format!("{path}.ipBlocks"), s.ip_blocks.as_ref())?,
            not_source_ips: self.cidrs(&format!("{path}.notIpBlocks"), s.not_ip_blocks.as_ref())?,
            ..Match::default()
        };
        Ok(with_request(m, &request))
    }

    fn operation(
        self,
        path: &str,
        operation: Option<&Operation>,
    ) -> Result<Match, ValidationError> {
        let Some(o) = operation else {
            return Ok(Match::default());
        };
        let request = RequestMatch {
            hosts: wildcards(o.hosts.as_ref()),
            not_hosts: wildcards(o.not_hosts.as_ref()),
            methods: wildcards(o.methods.as_ref()),
            not_methods: wildcards(o.not_methods.as_ref()),
            paths: wildcards(o.paths.as_ref()),
            not_paths: wildcards(o.not_paths.as_ref()),
            ..RequestMatch::default()
        };
        let m = Match {
            destination_ports: self.ports(&format!("{path}.ports"), o.ports.as_ref())?,
            not_destination_ports: self.ports(&format!("{path}.notPorts"), o.not_ports.as_ref())?,
            ..Match::default()
        };
        Ok(with_request(m, &request))
    }

    /// The match of one `when` condition.
    fn condition(self, path: &str, c: &Condition) -> Result<Match, ValidationError> {
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
                principals: wildcards(values),
                not_principals: wildcards(not_values),
                ..Match::default()
            },
            "destination.port" => Match {
                destination_ports: self.ports(&field, values)?,
                not_destination_ports: self.ports(&field, not_values)?,
                ..Match::default()
            },
            key => {
                let request = self.l7_condition(&field, key, values, not_values)?;
                with_request(Match::default(), &request)
            }
        };
        Ok(m)
    }

    /// A `when` condition on an L7 key; a key without facts is `unsupported`.
    fn l7_condition(
        self,
        field: &str,
        key: &str,
        values: Option<&Vec<String>>,
        not_values: Option<&Vec<String>>,
    ) -> Result<RequestMatch, ValidationError> {
        let request = match key {
            "remote.ip" => RequestMatch {
                remote_ips: self.cidrs(field, values)?,
                not_remote_ips: self.cidrs(field, not_values)?,
                ..RequestMatch::default()
            },
            "request.auth.principal" => RequestMatch {
                request_principals: wildcards(values),
                not_request_principals: wildcards(not_values),
                ..RequestMatch::default()
            },
            _ => match header_key(key) {
                Some(name) => RequestMatch {
                    headers: vec![HeaderCondition {
                        name: header_name(self.ctx, field, name)?.as_str().to_owned(),
                        values: wildcards(values),
                        not_values: wildcards(not_values),
                    }],
                    ..RequestMatch::default()
                },
                None => RequestMatch {
                    unsupported: true,
                    ..RequestMatch::default()
                },
            },
        };
        Ok(request)
    }

    fn cidrs(
        self,
        field: &str,
        values: Option<&Vec<String>>,
    ) -> Result<Vec<security::Address>, ValidationError> {
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

    fn ports(self, field: &str, values: Option<&Vec<String>>) -> Result<Vec<u32>, ValidationError> {
        values
            .into_iter()
            .flatten()
            .map(|v| {
                parse_port(v).map(u32::from).map_err(|reason| {
                    self.ctx
                        .error(field, Problem::Malformed(format!("{v:?} {reason}")))
                })
            })
            .collect()
    }

    /// `ns/name`, or `name` in the policy's namespace (see [`service_account`]).
    fn accounts(
        self,
        field: &str,
        values: Option<&Vec<String>>,
    ) -> Result<Vec<ServiceAccountMatch>, ValidationError> {
        values
            .into_iter()
            .flatten()
            .map(|v| {
                service_account(v, self.namespace).map_err(|reason| {
                    self.ctx
                        .error(field, Problem::Malformed(format!("{v:?} {reason}")))
                })
            })
            .collect()
    }
}

/// A port of a policy (`ports`, `notPorts`, `when` key `destination.port`): a number in
/// 1-65535, as the node proxy's compiler requires.
///
/// # Errors
/// Why the value is not such a port (completes a sentence starting with the value).
pub fn parse_port(value: &str) -> Result<u16, &'static str> {
    match value.parse::<u16>() {
        Ok(0) => Err("is not a port: ports are 1-65535"),
        Ok(port) => Ok(port),
        Err(_) => Err("is not a port number"),
    }
}

/// A `serviceAccounts` entry: `ns/name`, or `name` in `namespace` (the policy's).
///
/// # Errors
/// Why the value names no service account (an empty namespace or name; completes a
/// sentence starting with the value).
pub fn service_account(value: &str, namespace: &str) -> Result<ServiceAccountMatch, &'static str> {
    let (namespace, name) = value.split_once('/').unwrap_or((namespace, value));
    if namespace.is_empty() {
        return Err("has an empty namespace (write NAMESPACE/NAME or NAME)");
    }
    if name.is_empty() {
        return Err("has an empty service account name (write NAMESPACE/NAME or NAME)");
    }
    Ok(ServiceAccountMatch {
        namespace: namespace.to_owned(),
        service_account: name.to_owned(),
    })
}

/// `m` with `request` as its `weft.l7.request` extension, unless `request` is empty.
fn with_request(mut m: Match, request: &RequestMatch) -> Match {
    if *request != RequestMatch::default() {
        m.extensions.push(Extension {
            name: REQUEST_MATCH_EXTENSION.to_owned(),
            config: Some(pack_any(REQUEST_MATCH_TYPE_URL, request)),
        });
    }
    m
}

/// A clause from the matches of a `from`/`to` list; `None` when it constrains nothing (no
/// entries, or an entry with no field).
fn clause_of(matches: Vec<Match>) -> Option<Clause> {
    let unconstrained = matches.is_empty() || matches.iter().any(|m| *m == Match::default());
    (!unconstrained).then_some(Clause { matches })
}

/// `*` -> presence, `*x` -> suffix, `x*` -> prefix, otherwise exact.
#[must_use]
pub fn wildcard(value: &str) -> StringMatch {
    let match_type = if value == "*" {
        MatchType::Presence(())
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchType::Suffix(suffix.to_owned())
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchType::Prefix(prefix.to_owned())
    } else {
        MatchType::Exact(value.to_owned())
    };
    StringMatch {
        match_type: Some(match_type),
    }
}

fn wildcards(values: Option<&Vec<String>>) -> Vec<StringMatch> {
    values.into_iter().flatten().map(|v| wildcard(v)).collect()
}

/// The `when` keys an L7 proxy has facts for (L4 keys, `remote.ip`,
/// `request.auth.principal` and `request.headers[...]`); others become `unsupported`.
const EVALUATED_KEYS: &[&str] = &[
    "source.ip",
    "destination.ip",
    "source.namespace",
    "source.principal",
    "destination.port",
    "remote.ip",
    "request.auth.principal",
];

/// Whether weft's engine evaluates the `when` key `key` when it has the request's facts.
#[must_use]
pub fn is_evaluated_key(key: &str) -> bool {
    EVALUATED_KEYS.contains(&key) || header_key(key).is_some()
}

/// `request.headers[name]` -> `name`.
fn header_key(key: &str) -> Option<&str> {
    key.strip_prefix("request.headers[")?.strip_suffix(']')
}

/// An IP (full-length prefix) or CIDR, as a wire address.
#[must_use]
pub fn parse_cidr(value: &str) -> Option<security::Address> {
    let net = value
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .ok()?;
    let address = match net.network() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    Some(security::Address {
        address,
        length: u32::from(net.prefix_len()),
    })
}
