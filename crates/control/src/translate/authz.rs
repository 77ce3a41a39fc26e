//! `AuthorizationPolicy` -> `istio.security.Authorization`, keeping only what a node proxy
//! can check at L4, with the fail-safe rules of `docs/policy.md`: an ALLOW rule that needs an
//! L7 attribute is dropped (it can only allow less), a DENY rule is widened to its L4 part (it
//! can only deny more). Every such change is reported as a [`Warning`].

use super::context::{Context, Dep, Unit};
use super::{Resource, TranslateOptions, Warning};
use std::collections::BTreeMap;
use weft_api::istio::{Action, AuthorizationPolicy, Condition, Operation, Rule, Source};
use weft_api::{Kind, ObjectRef};
use weft_proto::security::{
    Action as WireAction, Address, Authorization, Clause, Match, Rule as WireRule, Scope,
    ServiceAccountMatch, StringMatch,
};

pub use weft_policy::wire::DRY_RUN_ANNOTATION;
use weft_policy::wire::{parse_cidr, parse_port, service_account, wildcard as wildcard_match};

/// Result of translating one policy on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTranslation {
    /// The L4 policy, or `None` when node proxies must not receive it at all.
    pub authorization: Option<Authorization>,
    /// What was dropped, widened or skipped.
    pub warnings: Vec<Warning>,
}

/// `<namespace>/<name>` of a policy: its Authorization resource name.
#[must_use]
pub fn policy_key(policy: &AuthorizationPolicy) -> String {
    format!(
        "{}/{}",
        policy_namespace(policy),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

fn policy_namespace(policy: &AuthorizationPolicy) -> &str {
    policy
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(weft_api::object::DEFAULT_NAMESPACE)
}

fn policy_ref(policy: &AuthorizationPolicy) -> ObjectRef {
    ObjectRef {
        kind: Kind::AuthorizationPolicy,
        namespace: Some(policy_namespace(policy).to_owned()),
        name: policy.metadata.name.clone().unwrap_or_default(),
    }
}

/// Why a policy is not sent to node proxies at all, if it is not.
fn skip_reason(policy: &AuthorizationPolicy) -> Option<&'static str> {
    let spec = &policy.spec;
    if spec
        .target_refs
        .as_ref()
        .is_some_and(|refs| !refs.is_empty())
        || spec.target_ref.is_some()
    {
        return Some(
            "policy has targetRefs, so it applies only at the waypoint or gateway it targets; not sent to node proxies",
        );
    }
    match spec.action {
        Some(Action::Audit) => Some("action AUDIT is not enforced by node proxies; policy skipped"),
        Some(Action::Custom) => Some(
            "action CUSTOM (extension authorization) is not enforced at L4; policy skipped (use a waypoint)",
        ),
        Some(Action::Allow | Action::Deny) | None => None,
    }
}

/// The labels a translated policy selects workloads by, when it is selector-scoped (the
/// workloads it selects list it in `authorization_policies`).
pub(crate) fn selection(policy: &AuthorizationPolicy) -> Option<&BTreeMap<String, String>> {
    if skip_reason(policy).is_some() {
        return None;
    }
    policy
        .spec
        .selector
        .as_ref()
        .map(|s| &s.match_labels)
        .filter(|labels| !labels.is_empty())
}

/// Translates one policy (see the module doc for the L4 and fail-safe rules).
#[must_use]
pub fn translate_authorization_policy(
    policy: &AuthorizationPolicy,
    options: &TranslateOptions,
) -> PolicyTranslation {
    let object = policy_ref(policy);
    if let Some(reason) = skip_reason(policy) {
        return PolicyTranslation {
            authorization: None,
            warnings: vec![Warning {
                object,
                message: reason.to_owned(),
            }],
        };
    }
    let namespace = policy_namespace(policy);
    let deny = policy.spec.action == Some(Action::Deny);
    let scope = if selection(policy).is_some() {
        Scope::WorkloadSelector
    } else if namespace == options.root_namespace {
        Scope::Global
    } else {
        Scope::Namespace
    };
    let mut warnings = Vec::new();
    let written = policy.spec.rules.as_deref().unwrap_or_default();
    let mut rules = Vec::new();
    for (index, rule) in written.iter().enumerate() {
        let mut builder = RuleBuilder {
            namespace,
            path: format!("rules[{index}]"),
            dropped: Vec::new(),
        };
        let wire = builder.rule(rule);
        if builder.dropped.is_empty() {
            rules.push(wire);
        } else if deny {
            warnings.push(Warning {
                object: object.clone(),
                message: widened_message(index, &builder.dropped),
            });
            rules.push(wire);
        } else {
            warnings.push(Warning {
                object: object.clone(),
                message: dropped_message(index, &builder.dropped),
            });
        }
    }
    if !deny && !written.is_empty() && rules.is_empty() {
        let message = "every rule was dropped, so at L4 this ALLOW policy allows nothing for the workloads it applies to";
        warnings.push(Warning {
            object: object.clone(),
            message: message.to_owned(),
        });
    }
    let dry_run = policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let authorization = Authorization {
        name: object.name.clone(),
        namespace: namespace.to_owned(),
        scope: scope.into(),
        action: if deny {
            WireAction::Deny
        } else {
            WireAction::Allow
        }
        .into(),
        rules,
        dry_run,
        extensions: Vec::new(),
    };
    PolicyTranslation {
        authorization: Some(authorization),
        warnings,
    }
}

fn describe(dropped: &[Dropped]) -> String {
    dropped
        .iter()
        .map(|d| format!("{} ({})", d.field, d.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dropped_message(index: usize, dropped: &[Dropped]) -> String {
    format!(
        "ALLOW rule {index} dropped: {}; a node proxy cannot check it, so the rule matches nothing (allows less). \
         Attach the policy to a waypoint with targetRefs to enforce it",
        describe(dropped)
    )
}

fn widened_message(index: usize, dropped: &[Dropped]) -> String {
    format!(
        "DENY rule {index} widened to its L4 part: ignored {}; the node proxy denies on the remaining conditions \
         (denies more). Attach the policy to a waypoint with targetRefs for exact matching",
        describe(dropped)
    )
}

/// The Authorization resource unit for a policy key.
pub(crate) fn translate_policy_unit(
    context: &Context<'_>,
    name: &str,
    policy: &AuthorizationPolicy,
) -> Unit {
    let translation = translate_authorization_policy(policy, context.options);
    let resource = translation
        .authorization
        .map(|authorization| Resource::encode(name.to_owned(), Vec::new(), &authorization));
    Unit {
        resource,
        warnings: translation.warnings,
        deps: vec![Dep::Object(policy_ref(policy))],
    }
}

/// A field that could not be translated to L4.
struct Dropped {
    field: String,
    reason: String,
}

const L7_ONLY: &str = "an L7 attribute";

struct RuleBuilder<'a> {
    namespace: &'a str,
    path: String,
    dropped: Vec<Dropped>,
}

impl RuleBuilder<'_> {
    fn drop_field(&mut self, field: String, reason: impl Into<String>) {
        self.dropped.push(Dropped {
            field,
            reason: reason.into(),
        });
    }

    fn rule(&mut self, rule: &Rule) -> WireRule {
        let mut clauses = Vec::new();
        if let Some(from) = rule.from.as_deref().filter(|f| !f.is_empty()) {
            let matches = from
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    self.source(
                        f.source.as_ref(),
                        &format!("{}.from[{i}].source", self.path),
                    )
                })
                .collect();
            clauses.extend(clause_of(matches));
        }
        if let Some(to) = rule.to.as_deref().filter(|t| !t.is_empty()) {
            let matches = to
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    self.operation(
                        t.operation.as_ref(),
                        &format!("{}.to[{i}].operation", self.path),
                    )
                })
                .collect();
            clauses.extend(clause_of(matches));
        }
        for (i, condition) in rule.when.iter().flatten().enumerate() {
            let path = format!("{}.when[{i}]", self.path);
            if let Some(matched) = self.condition(condition, &path) {
                clauses.extend(clause_of(vec![matched]));
            }
        }
        WireRule { clauses }
    }

    fn source(&mut self, source: Option<&Source>, path: &str) -> Match {
        let Some(source) = source else {
            return Match::default();
        };
        for field in source.l7_fields() {
            self.drop_field(format!("{path}.{field}"), L7_ONLY);
        }
        Match {
            principals: strings(&source.principals, wildcard_match),
            not_principals: strings(&source.not_principals, wildcard_match),
            namespaces: strings(&source.namespaces, wildcard_match),
            not_namespaces: strings(&source.not_namespaces, wildcard_match),
            service_accounts: self
                .service_accounts(&source.service_accounts, &format!("{path}.serviceAccounts")),
            not_service_accounts: self.service_accounts(
                &source.not_service_accounts,
                &format!("{path}.notServiceAccounts"),
            ),
            source_ips: self.cidrs(&source.ip_blocks, &format!("{path}.ipBlocks")),
            not_source_ips: self.cidrs(&source.not_ip_blocks, &format!("{path}.notIpBlocks")),
            ..Match::default()
        }
    }

    fn operation(&mut self, operation: Option<&Operation>, path: &str) -> Match {
        let Some(operation) = operation else {
            return Match::default();
        };
        for field in operation.l7_fields() {
            self.drop_field(format!("{path}.{field}"), L7_ONLY);
        }
        Match {
            destination_ports: self.ports(&operation.ports, &format!("{path}.ports")),
            not_destination_ports: self.ports(&operation.not_ports, &format!("{path}.notPorts")),
            ..Match::default()
        }
    }

    /// A `when` condition on an L4 key, or `None` (recorded as dropped) otherwise.
    fn condition(&mut self, condition: &Condition, path: &str) -> Option<Match> {
        let field = format!("{path} (key {})", condition.key);
        let (values, not_values) = (&condition.values, &condition.not_values);
        let matched = match condition.key.as_str() {
            "source.ip" => Match {
                source_ips: self.cidrs(values, &field),
                not_source_ips: self.cidrs(not_values, &field),
                ..Match::default()
            },
            "destination.ip" => Match {
                destination_ips: self.cidrs(values, &field),
                not_destination_ips: self.cidrs(not_values, &field),
                ..Match::default()
            },
            "source.namespace" => Match {
                namespaces: strings(values, wildcard_match),
                not_namespaces: strings(not_values, wildcard_match),
                ..Match::default()
            },
            "source.principal" => Match {
                principals: strings(values, wildcard_match),
                not_principals: strings(not_values, wildcard_match),
                ..Match::default()
            },
            "destination.port" => Match {
                destination_ports: self.ports(values, &field),
                not_destination_ports: self.ports(not_values, &field),
                ..Match::default()
            },
            _ => {
                self.drop_field(field, "not an L4 attribute");
                return None;
            }
        };
        Some(matched)
    }

    fn cidrs(&mut self, values: &Option<Vec<String>>, field: &str) -> Vec<Address> {
        self.usable(values, field, |v| {
            parse_cidr(v).ok_or("is not an IP address or CIDR")
        })
    }

    fn ports(&mut self, values: &Option<Vec<String>>, field: &str) -> Vec<u32> {
        self.usable(values, field, |v| parse_port(v).map(u32::from))
    }

    fn service_accounts(
        &mut self,
        values: &Option<Vec<String>>,
        field: &str,
    ) -> Vec<ServiceAccountMatch> {
        let namespace = self.namespace;
        self.usable(values, field, |v| service_account(v, namespace))
    }

    /// The values `parse` accepts, with the node proxy's checks; each other value is dropped
    /// (the rule is dropped or widened) with `parse`'s reason.
    fn usable<T>(
        &mut self,
        values: &Option<Vec<String>>,
        field: &str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for value in values.iter().flatten() {
            match parse(value) {
                Ok(parsed) => out.push(parsed),
                Err(reason) => self.drop_field(field.to_owned(), format!("{value:?} {reason}")),
            }
        }
        out
    }
}

/// A clause from the matches of one `from`/`to` list. A match with no fields matches
/// anything, which makes the whole clause no constraint at all (`None`).
fn clause_of(matches: Vec<Match>) -> Option<Clause> {
    let unconstrained = matches.is_empty() || matches.iter().any(|m| *m == Match::default());
    (!unconstrained).then_some(Clause { matches })
}

fn strings(values: &Option<Vec<String>>, convert: fn(&str) -> StringMatch) -> Vec<StringMatch> {
    values.iter().flatten().map(|v| convert(v)).collect()
}
