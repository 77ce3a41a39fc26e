//! AuthorizationPolicies and RequestAuthentications attached to a waypoint or gateway with
//! `targetRef`/`targetRefs`: to the Gateway itself (every request through it), to its
//! GatewayClass from the root namespace (every Gateway of that class, e.g. every waypoint
//! with `istio-waypoint`), or, for a waypoint, to a Service or ServiceEntry bound to it
//! (that service's requests).
//!
//! Policies go out in their full wire form (`weft_policy::wire::from_api`, L7 conditions as
//! `weft.l7.request` extensions). A policy that cannot be converted fails closed: an ALLOW
//! becomes allow-nothing, a DENY deny-everything, for what it is attached to. AUDIT is not
//! a decision and is left out; CUSTOM (external authorization) is not supported and denies.

use std::collections::BTreeSet;

use weft_api::gateway::WAYPOINT_CLASS;
use weft_api::istio::{
    Action, AuthorizationPolicy, JwtRule as ApiJwtRule, PolicyTargetReference,
    RequestAuthentication,
};
use weft_api::routes::GATEWAY_GROUP;
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::l7::{JwtHeader, JwtRule, Policy};
use weft_proto::security::{Action as WireAction, Authorization, Rule};

use super::super::context::{Context, Dep, Unit};
use super::super::{Warning, kube_hostname, service_key};

/// What policies may attach to: one Gateway (waypoint or ingress/egress gateway), its
/// class, and the services bound to it (none for a gateway).
pub(crate) struct Target<'t> {
    pub gateway: &'t ObjectRef,
    pub class: &'t str,
    pub services: &'t BTreeSet<String>,
}

/// Where targetRefs attach a policy on a waypoint.
#[derive(Debug, PartialEq, Eq)]
enum Attachment {
    /// Not to this waypoint.
    None,
    /// To every request through it.
    Waypoint,
    /// To these bound services.
    Services(Vec<String>),
}

impl Target<'_> {
    /// Where `refs` (of a policy in `namespace`) attach on this waypoint. A reference to
    /// the Gateway wins over references to its services.
    fn attachment<'r>(
        &self,
        context: &Context<'_>,
        namespace: &str,
        refs: impl Iterator<Item = &'r PolicyTargetReference>,
    ) -> Attachment {
        let mut services = BTreeSet::new();
        for target in refs {
            if target
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != namespace)
            {
                continue;
            }
            let this_gateway = is_gateway_ref(target)
                && self.gateway.namespace.as_deref() == Some(namespace)
                && target.name == self.gateway.name;
            if this_gateway || targets_class(context, namespace, target, self.class) {
                return Attachment::Waypoint;
            }
            let keys = target_service_keys(context, namespace, target);
            services.extend(keys.into_iter().filter(|k| self.services.contains(k)));
        }
        if services.is_empty() {
            Attachment::None
        } else {
            Attachment::Services(services.into_iter().collect())
        }
    }
}

fn is_gateway_ref(target: &PolicyTargetReference) -> bool {
    target.kind == "Gateway" && target.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
}

/// A reference to the GatewayClass `class` from the root namespace: every Gateway of it.
fn targets_class(
    context: &Context<'_>,
    namespace: &str,
    target: &PolicyTargetReference,
    class: &str,
) -> bool {
    target.kind == "GatewayClass"
        && target.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && target.name == class
        && namespace == context.options.root_namespace
}

/// The service keys a Service or ServiceEntry targetRef names.
fn target_service_keys(
    context: &Context<'_>,
    namespace: &str,
    target: &PolicyTargetReference,
) -> Vec<String> {
    let group = target.group.as_deref().unwrap_or_default();
    let found = context
        .snapshot
        .get(Kind::Service, Some(namespace), &target.name)
        .map(|l| &l.object);
    match (group, target.kind.as_str(), found) {
        ("" | "core", "Service", Some(Object::Service(svc))) => {
            vec![service_key(namespace, &kube_hostname(svc, context.options))]
        }
        ("networking.istio.io", "ServiceEntry", _) => {
            let entry = context
                .snapshot
                .get(Kind::ServiceEntry, Some(namespace), &target.name);
            match entry.map(|l| &l.object) {
                Some(Object::ServiceEntry(e)) => e
                    .spec
                    .hosts
                    .iter()
                    .map(|h| service_key(namespace, h))
                    .collect(),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn refs_of<'p>(
    target_ref: Option<&'p PolicyTargetReference>,
    target_refs: Option<&'p Vec<PolicyTargetReference>>,
) -> impl Iterator<Item = &'p PolicyTargetReference> {
    target_ref
        .into_iter()
        .chain(target_refs.into_iter().flatten())
}

fn namespace_of(object: &Object) -> String {
    object.namespace().unwrap_or_default().to_owned()
}

/// Whether a policy object with these `targetRef` / `targetRefs` attaches to `target`:
/// the service keys it is limited to (empty: the whole waypoint) and the object, recorded
/// as a dependency of the unit; `None` when it does not attach.
fn attached(
    context: &Context<'_>,
    target: &Target<'_>,
    policy: &Object,
    (target_ref, target_refs): (
        Option<&PolicyTargetReference>,
        Option<&Vec<PolicyTargetReference>>,
    ),
    unit: &mut Unit,
) -> Option<(Vec<String>, ObjectRef)> {
    let namespace = namespace_of(policy);
    let services = match target.attachment(context, &namespace, refs_of(target_ref, target_refs)) {
        Attachment::None => return None,
        Attachment::Waypoint => Vec::new(),
        Attachment::Services(keys) => keys,
    };
    let object = policy.object_ref();
    unit.deps.push(Dep::Object(object.clone()));
    Some((services, object))
}

/// The AuthorizationPolicies attached to `target`, sorted by key.
pub(crate) fn authorization_policies(
    context: &Context<'_>,
    target: &Target<'_>,
    unit: &mut Unit,
) -> Vec<Policy> {
    let mut out = Vec::new();
    for (policy, loaded) in context.snapshot.authorization_policies() {
        let refs = (
            policy.spec.target_ref.as_ref(),
            policy.spec.target_refs.as_ref(),
        );
        let Some((services, object)) = attached(context, target, &loaded.object, refs, unit) else {
            continue;
        };
        if let Some(wire) = wire_policy(context, policy, &object, unit) {
            out.push(Policy {
                policy: Some(wire),
                services,
            });
        }
    }
    let key = |p: &Policy| {
        p.policy
            .as_ref()
            .map(|a| (a.namespace.clone(), a.name.clone()))
    };
    out.sort_by_key(key);
    out
}

/// The policy's wire form; failing closed when it cannot be converted.
fn wire_policy(
    context: &Context<'_>,
    policy: &AuthorizationPolicy,
    object: &ObjectRef,
    unit: &mut Unit,
) -> Option<Authorization> {
    let mut warn = |message: String| {
        unit.warnings.push(Warning {
            object: object.clone(),
            message,
        });
    };
    let root = &context.options.root_namespace;
    match policy.spec.action {
        Some(Action::Audit) => {
            warn(
                "action AUDIT records nothing at the waypoint and decides nothing; left out".into(),
            );
            None
        }
        Some(Action::Custom) => {
            warn(
                "action CUSTOM (external authorization) is not supported by weft's waypoint; \
                 it denies every request it applies to (fails closed)"
                    .into(),
            );
            Some(fail_closed(object, WireAction::Deny))
        }
        Some(Action::Allow | Action::Deny) | None => {
            match weft_policy::wire::from_api(policy, root) {
                Ok(wire) => {
                    for message in unevaluated_conditions(policy) {
                        warn(message);
                    }
                    Some(wire)
                }
                Err(error) => {
                    let deny = policy.spec.action == Some(Action::Deny);
                    warn(format!(
                        "{error}; enforced as {} at the waypoint (fails closed)",
                        if deny {
                            "deny-everything"
                        } else {
                            "allow-nothing"
                        }
                    ));
                    let action = if deny {
                        WireAction::Deny
                    } else {
                        WireAction::Allow
                    };
                    Some(fail_closed(object, action))
                }
            }
        }
    }
}

/// Warnings for the `when` keys the waypoint has no facts for (they fail safe).
fn unevaluated_conditions(policy: &AuthorizationPolicy) -> Vec<String> {
    let effect = if policy.spec.action == Some(Action::Deny) {
        "ignored in this DENY rule (it denies more)"
    } else {
        "this ALLOW rule matches nothing (it allows less)"
    };
    let rules = policy.spec.rules.iter().flatten().enumerate();
    rules
        .flat_map(|(r, rule)| {
            let conditions = rule.when.iter().flatten().enumerate();
            conditions
                .filter(|(_, c)| !weft_policy::wire::is_evaluated_key(&c.key))
                .map(move |(i, c)| {
                    format!(
                        "spec.rules[{r}].when[{i}]: key {:?} is not evaluated by weft's \
                         waypoint; {effect}",
                        c.key
                    )
                })
        })
        .collect()
}

/// ALLOW with no rule (allows nothing) or DENY with one empty rule (denies everything).
fn fail_closed(object: &ObjectRef, action: WireAction) -> Authorization {
    let rules = match action {
        WireAction::Allow => Vec::new(),
        WireAction::Deny => vec![Rule::default()],
    };
    Authorization {
        name: object.name.clone(),
        namespace: object.namespace.clone().unwrap_or_default(),
        action: action.into(),
        rules,
        ..Authorization::default()
    }
}

/// The RequestAuthentication rules attached to `target`, by source then rule order.
pub(crate) fn jwt_rules(
    context: &Context<'_>,
    target: &Target<'_>,
    unit: &mut Unit,
) -> Vec<JwtRule> {
    let mut out = Vec::new();
    for (authn, loaded) in context.snapshot.request_authentications() {
        let refs = (
            authn.spec.target_ref.as_ref(),
            authn.spec.target_refs.as_ref(),
        );
        let Some((services, object)) = attached(context, target, &loaded.object, refs, unit) else {
            continue;
        };
        out.extend(rules_of(authn, &object, &services, unit));
    }
    out
}

fn rules_of(
    authn: &RequestAuthentication,
    object: &ObjectRef,
    services: &[String],
    unit: &mut Unit,
) -> Vec<JwtRule> {
    let source = format!(
        "{}/{}",
        object.namespace.as_deref().unwrap_or_default(),
        object.name
    );
    let rules = authn.spec.jwt_rules.iter().flatten().enumerate();
    let wire: Vec<JwtRule> = rules
        .map(|(i, rule)| {
            for message in unsupported(i, rule) {
                unit.warnings.push(Warning {
                    object: object.clone(),
                    message,
                });
            }
            JwtRule {
                issuer: rule.issuer.clone(),
                audiences: rule.audiences.clone().unwrap_or_default(),
                jwks: rule.jwks.clone().unwrap_or_default(),
                jwks_uri: rule.jwks_uri.clone().unwrap_or_default(),
                from_headers: rule
                    .from_headers
                    .iter()
                    .flatten()
                    .map(|h| JwtHeader {
                        name: h.name.clone(),
                        prefix: h.prefix.clone().unwrap_or_default(),
                    })
                    .collect(),
                from_params: rule.from_params.clone().unwrap_or_default(),
                forward_original_token: rule.forward_original_token.unwrap_or(false),
                services: services.to_vec(),
                source: source.clone(),
            }
        })
        .collect();
    // What the waypoint's validator would reject (keys it cannot use, bad header names).
    let (_, errors) = weft_l7::jwt::JwtValidator::new_lenient(&wire);
    for error in errors {
        unit.warnings.push(Warning {
            object: object.clone(),
            message: format!("{error}; tokens of this issuer are rejected with 401"),
        });
    }
    wire
}

/// Warnings for the parts of a jwtRule the waypoint does not carry out.
fn unsupported(index: usize, rule: &ApiJwtRule) -> Vec<String> {
    let at = format!("spec.jwtRules[{index}]");
    let mut out = Vec::new();
    if rule.jwks.is_none() && rule.jwks_uri.is_some() {
        out.push(format!(
            "{at}: the waypoint does not fetch keys (jwksUri {:?} is recorded only); tokens of \
             issuer {:?} cannot be verified and are rejected with 401. Give the keys inline in jwks",
            rule.jwks_uri.as_deref().unwrap_or_default(),
            rule.issuer
        ));
    }
    let ignored = [
        (
            "fromCookies",
            rule.from_cookies.as_ref().is_some_and(|c| !c.is_empty()),
        ),
        (
            "outputPayloadToHeader",
            rule.output_payload_to_header.is_some(),
        ),
        (
            "outputClaimToHeaders",
            rule.output_claim_to_headers
                .as_ref()
                .is_some_and(|c| !c.is_empty()),
        ),
    ];
    for (field, set) in ignored {
        if set {
            out.push(format!(
                "{at}.{field} is not supported by weft's waypoint; ignored"
            ));
        }
    }
    out
}

/// The targetRefs of an AuthorizationPolicy or RequestAuthentication (none for another
/// object, or one that no longer exists).
fn policy_refs(context: &Context<'_>, object: &ObjectRef) -> Vec<PolicyTargetReference> {
    let namespace = object.namespace.as_deref().unwrap_or_default();
    match context
        .snapshot
        .get(object.kind, Some(namespace), &object.name)
        .map(|l| &l.object)
    {
        Some(Object::AuthorizationPolicy(p)) => {
            refs_of(p.spec.target_ref.as_ref(), p.spec.target_refs.as_ref())
                .cloned()
                .collect()
        }
        Some(Object::RequestAuthentication(a)) => {
            refs_of(a.spec.target_ref.as_ref(), a.spec.target_refs.as_ref())
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// What a policy's targetRefs name at the Gateway level: Gateways (`<ns>/<name>`, in the
/// policy's namespace) and the GatewayClasses it targets from the root namespace.
pub(crate) fn gateways_of_policy(
    context: &Context<'_>,
    object: &ObjectRef,
) -> (Vec<String>, Vec<String>) {
    let namespace = object.namespace.as_deref().unwrap_or_default();
    let refs = policy_refs(context, object);
    let gateways = refs.iter().filter(|t| is_gateway_ref(t));
    let gateways = gateways
        .map(|t| format!("{namespace}/{}", t.name))
        .collect();
    let classes = refs
        .iter()
        .filter(|t| targets_class(context, namespace, t, &t.name))
        .map(|t| t.name.clone())
        .collect();
    (gateways, classes)
}

/// The waypoints (names) a policy's targetRefs attach it to.
pub(super) fn waypoints_of_policy(context: &Context<'_>, object: &ObjectRef) -> Vec<String> {
    let namespace = object.namespace.as_deref().unwrap_or_default();
    let (gateways, classes) = gateways_of_policy(context, object);
    if classes.iter().any(|c| c == WAYPOINT_CLASS) {
        return super::waypoint_names(context);
    }
    let index = context.waypoint_index();
    let mut out = gateways;
    for target in &policy_refs(context, object) {
        let keys = target_service_keys(context, namespace, target);
        out.extend(
            keys.iter()
                .filter_map(|k| index.waypoint_of(k).map(str::to_owned)),
        );
    }
    out
}
