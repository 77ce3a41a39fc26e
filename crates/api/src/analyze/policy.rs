//! Security policy analysis: where each AuthorizationPolicy is enforced and whether it can be
//! enforced as written; PeerAuthentication scope and ports.

use super::Context;
use crate::finding::{Code, Finding};
use crate::istio::{Action, AuthorizationPolicy, Operation, PolicyTargetReference, Rule, Source};
use crate::object::{Kind, LoadedObject};
use crate::suggest::Segment;
use std::collections::{BTreeMap, BTreeSet};

/// Names of the L7-only attributes a rule uses (empty: the rule is pure L4).
fn l7_fields(rule: &Rule) -> BTreeSet<String> {
    let sources = rule.from.iter().flatten().filter_map(|f| f.source.as_ref());
    let operations = rule
        .to
        .iter()
        .flatten()
        .filter_map(|t| t.operation.as_ref());
    let mut fields: BTreeSet<String> = sources
        .flat_map(Source::l7_fields)
        .chain(operations.flat_map(Operation::l7_fields))
        .map(str::to_owned)
        .collect();
    let conditions = rule.when.iter().flatten().filter(|c| !c.is_l4());
    fields.extend(conditions.map(|c| format!("when: {}", c.key)));
    fields
}

pub(super) fn check_authorization_policies(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (policy, loaded) in context.snapshot.authorization_policies() {
        let listed = policy.spec.target_refs.iter().flatten().enumerate();
        let targets: Vec<(Vec<Segment>, &PolicyTargetReference)> = listed
            .map(|(i, target)| (spec_path(&["targetRefs"], Some(i)), target))
            .chain(
                (policy.spec.target_ref.as_ref())
                    .map(|target| (spec_path(&["targetRef"], None), target)),
            )
            .collect();
        check_principal_scheme(policy, loaded, findings);
        if targets.is_empty() {
            check_l4_enforceable(policy, loaded, findings);
        } else {
            for (at, target) in targets {
                check_policy_target(context, &loaded.source_at(&at), loaded, target, findings);
            }
        }
    }
}

/// `spec.<keys...>[index]`, to place a finding on the line of that field.
fn spec_path(keys: &[&str], index: Option<usize>) -> Vec<Segment> {
    std::iter::once("spec")
        .chain(keys.iter().copied())
        .map(|key| Segment::Key(key.to_owned()))
        .chain(index.map(Segment::Index))
        .collect()
}

/// Principals written with the `spiffe://` scheme. Istio compares principals without it
/// (ztunnel strips it from the peer's identity, Envoy prefixes it to the pattern), and so
/// does weft: such a value equals no peer's principal, in `principals`, `notPrincipals` and
/// `when: source.principal` alike.
fn check_principal_scheme(
    policy: &AuthorizationPolicy,
    loaded: &LoadedObject,
    findings: &mut Vec<Finding>,
) {
    for (r, rule) in policy.spec.rules.iter().flatten().enumerate() {
        let rule_at = |rest: &[Segment]| {
            let mut path = spec_path(&["rules"], Some(r));
            path.extend_from_slice(rest);
            path
        };
        let mut written: Vec<(Vec<Segment>, &str)> = Vec::new();
        for (f, from) in rule.from.iter().flatten().enumerate() {
            let Some(source) = &from.source else {
                continue;
            };
            for (field, values) in [
                ("principals", &source.principals),
                ("notPrincipals", &source.not_principals),
            ] {
                for (i, value) in values.iter().flatten().enumerate() {
                    let at = [
                        "from".into(),
                        f.into(),
                        "source".into(),
                        field.into(),
                        i.into(),
                    ];
                    written.push((rule_at(&at), value));
                }
            }
        }
        let principal_conditions = rule.when.iter().flatten().enumerate();
        for (w, condition) in principal_conditions.filter(|(_, c)| c.key == "source.principal") {
            for (field, values) in [
                ("values", &condition.values),
                ("notValues", &condition.not_values),
            ] {
                for (i, value) in values.iter().flatten().enumerate() {
                    let at = ["when".into(), w.into(), field.into(), i.into()];
                    written.push((rule_at(&at), value));
                }
            }
        }
        for (at, value) in written {
            let Some(principal) = value.strip_prefix("spiffe://") else {
                continue;
            };
            let message = format!(
                "principal \"{value}\" matches no peer: principals are compared without the spiffe:// \
                 scheme (as in Istio); write \"{principal}\""
            );
            findings.push(Finding::new(
                Code::PolicyPrincipalScheme,
                Some(loaded.object.object_ref()),
                loaded.source_at(&at),
                message,
            ));
        }
    }
}

/// A selector (or namespace/mesh-wide) policy is enforced by the node proxy, at L4 only.
fn check_l4_enforceable(
    policy: &AuthorizationPolicy,
    loaded: &LoadedObject,
    findings: &mut Vec<Finding>,
) {
    let action = policy.spec.action.unwrap_or(Action::Allow);
    for (index, rule) in policy.spec.rules.iter().flatten().enumerate() {
        let fields = l7_fields(rule);
        if fields.is_empty() {
            continue;
        }
        let effect = match action {
            Action::Allow => {
                "this ALLOW rule is dropped (it matches nothing), so the policy allows LESS than written"
            }
            Action::Deny => {
                "this DENY rule is widened to its L4 part (the L7 conditions are ignored), so it denies MORE than written"
            }
            Action::Audit => "this AUDIT rule never matches at L4, so nothing is audited",
            Action::Custom => {
                "CUSTOM authorization of L7 attributes needs an L7 proxy; the node proxy cannot evaluate it"
            }
        };
        let message = format!(
            "rule {index} uses L7 fields ({}) but the policy is enforced by the node proxy at L4 (it has a selector or no \
             targetRefs, and no waypoint enforces it); fail-safe: {effect}. To enforce it as written, send the traffic \
             through a waypoint (label istio.io/use-waypoint) and attach the policy to it with targetRefs \
             (kind: Service or Gateway) instead of selector",
            fields.into_iter().collect::<Vec<_>>().join(", ")
        );
        findings.push(Finding::new(
            Code::PolicyL7WithoutWaypoint,
            Some(loaded.object.object_ref()),
            loaded.source_at(&spec_path(&["rules"], Some(index))),
            message,
        ));
    }
}

/// A targetRefs policy is enforced by the referenced Gateway/waypoint, or by the waypoint of
/// the referenced Service/ServiceEntry.
fn check_policy_target(
    context: &Context<'_>,
    at: &crate::object::Source,
    loaded: &LoadedObject,
    target: &PolicyTargetReference,
    findings: &mut Vec<Finding>,
) {
    let namespace = loaded.object.namespace().unwrap_or_default();
    let target_namespace = target.namespace.as_deref().unwrap_or(namespace);
    let kind = match target.kind.as_str() {
        "Gateway" => Kind::Gateway,
        "Service" => Kind::Service,
        "ServiceEntry" => Kind::ServiceEntry,
        "GatewayClass" => Kind::GatewayClass,
        other => {
            let message = format!(
                "targetRefs kind \"{other}\" is not supported (use Gateway, Service or ServiceEntry)"
            );
            findings.push(Finding::new(
                Code::PolicyTargetNotFound,
                Some(loaded.object.object_ref()),
                at.clone(),
                message,
            ));
            return;
        }
    };
    if kind == Kind::GatewayClass && target.name == crate::gateway::WAYPOINT_CLASS {
        // Built in: every waypoint (from the root namespace).
        return;
    }
    let lookup_namespace = kind.is_namespaced().then_some(target_namespace);
    if !context
        .snapshot
        .contains(kind, lookup_namespace, &target.name)
    {
        let message = format!(
            "targetRefs names {kind} {target_namespace}/{} which does not exist; the policy applies to nothing",
            target.name
        );
        findings.push(Finding::new(
            Code::PolicyTargetNotFound,
            Some(loaded.object.object_ref()),
            at.clone(),
            message,
        ));
        return;
    }
    if matches!(kind, Kind::Service | Kind::ServiceEntry)
        && context
            .service_waypoint(target_namespace, &target.name)
            .is_none()
    {
        let message = format!(
            "targetRefs names {kind} {target_namespace}/{} which has no waypoint (label istio.io/use-waypoint on it or its \
             namespace); a targetRefs policy is only enforced by a waypoint, so it has no effect",
            target.name
        );
        findings.push(Finding::new(
            Code::PolicyTargetNoWaypoint,
            Some(loaded.object.object_ref()),
            at.clone(),
            message,
        ));
    }
}

pub(super) fn check_peer_authentications(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let mut namespace_wide: BTreeMap<&str, &LoadedObject> = BTreeMap::new();
    for (peer, loaded) in context.snapshot.peer_authentications() {
        let namespace = loaded.object.namespace().unwrap_or_default();
        let selector = peer
            .spec
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .filter(|l| !l.is_empty());
        if selector.is_none() {
            if let Some(first) = namespace_wide.get(namespace) {
                let message = format!(
                    "namespace {namespace} already has a namespace-wide PeerAuthentication ({} at {}); only the \
                     oldest applies (creationTimestamp; without one, the first by name), the others are ignored. \
                     Keep one, or give this one a selector",
                    first.object.name(),
                    first.source
                );
                findings.push(Finding::new(
                    Code::PeerAuthNamespaceConflict,
                    Some(loaded.object.object_ref()),
                    loaded.source.clone(),
                    message,
                ));
            } else {
                namespace_wide.insert(namespace, loaded);
            }
        }
        let Some(ports) = peer.spec.port_level_mtls.as_ref().filter(|p| !p.is_empty()) else {
            continue;
        };
        // Without a selector, portLevelMtls is ignored, not merely unexposed: validation
        // reports it as an error ("portLevelMtls requires a selector").
        let Some(selector) = selector else {
            continue;
        };
        let exposed = exposed_ports(context, namespace, &selector);
        for port in ports.keys().filter(|p| !exposed.contains(p)) {
            let listed: Vec<String> = exposed.iter().map(ToString::to_string).collect();
            let message = format!(
                "portLevelMtls port {port} is not exposed by any selected workload (their ports: {}); the setting has no \
                 effect. portLevelMtls keys are workload (target) ports, not service ports",
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            );
            findings.push(Finding::new(
                Code::PeerAuthPortNotExposed,
                Some(loaded.object.object_ref()),
                loaded.source.clone(),
                message,
            ));
        }
    }
}

/// Container ports of the selected pods, plus numeric target ports of services selecting them.
fn exposed_ports(
    context: &Context<'_>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> BTreeSet<u32> {
    let mut ports = BTreeSet::new();
    for pod in context.pods_matching(namespace, selector) {
        let containers = pod.pod.spec.iter().flat_map(|s| &s.containers);
        ports.extend(
            containers
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| u32::try_from(p.container_port).ok()),
        );
        let labels = pod.labels();
        for (service, loaded) in context.snapshot.services() {
            let Some(spec) = service.spec.as_ref() else {
                continue;
            };
            let selects = spec
                .selector
                .as_ref()
                .is_some_and(|s| !s.is_empty() && crate::selector::labels_match(s, &labels));
            if loaded.object.namespace() != Some(namespace) || !selects {
                continue;
            }
            for port in spec.ports.iter().flatten() {
                let target = match &port.target_port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => *n,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_)) => {
                        continue;
                    }
                    None => port.port,
                };
                ports.extend(u32::try_from(target).ok());
            }
        }
    }
    ports
}
