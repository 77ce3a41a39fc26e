//! Which proxy enforces each AuthorizationPolicy and RequestAuthentication: one info finding
//! (`policy-enforcement`) per object, saying "node proxies (L4)", "waypoint NS/NAME", or
//! "not enforced" and why.

use super::Context;
use crate::finding::{Code, Finding};
use crate::gateway::WAYPOINT_CLASS;
use crate::gateway_status::gateway_controller;
use crate::istio::{Action, AuthorizationPolicy, PolicyTargetReference, WorkloadSelector};
use crate::object::{Kind, LoadedObject, Object};

pub(super) fn report_enforcement(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (policy, loaded) in context.snapshot.authorization_policies() {
        let mut message = authorization_enforcement(context, policy, loaded);
        if policy.is_dry_run() {
            message.push_str(
                "; dry run (istio.io/dry-run): evaluated and reported in logs and metrics, \
                 never allowing or denying anything",
            );
        }
        findings.push(info(loaded, message));
    }
    for (authn, loaded) in context.snapshot.request_authentications() {
        let refs = targets(
            authn.spec.target_ref.as_ref(),
            authn.spec.target_refs.as_ref(),
        );
        let message = if refs.is_empty() {
            "not enforced: weft checks JWTs only at waypoints, attached with targetRefs \
             (node proxies do not read requests)"
                .to_owned()
        } else {
            format!("JWT rules {}", describe_targets(context, loaded, &refs))
        };
        findings.push(info(loaded, message));
    }
}

fn info(loaded: &LoadedObject, message: String) -> Finding {
    Finding::new(
        Code::PolicyEnforcement,
        Some(loaded.object.object_ref()),
        loaded.source.clone(),
        message,
    )
}

fn targets<'p>(
    single: Option<&'p PolicyTargetReference>,
    list: Option<&'p Vec<PolicyTargetReference>>,
) -> Vec<&'p PolicyTargetReference> {
    single
        .into_iter()
        .chain(list.into_iter().flatten())
        .collect()
}

fn authorization_enforcement(
    context: &Context<'_>,
    policy: &AuthorizationPolicy,
    loaded: &LoadedObject,
) -> String {
    let spec = &policy.spec;
    let refs = targets(spec.target_ref.as_ref(), spec.target_refs.as_ref());
    match spec.action {
        Some(Action::Audit) => {
            return "not enforced: action AUDIT decides nothing and weft records no audit".into();
        }
        Some(Action::Custom) if refs.is_empty() => {
            return "not enforced: action CUSTOM (external authorization) is skipped by node \
                    proxies"
                .into();
        }
        _ => {}
    }
    if refs.is_empty() {
        return format!(
            "enforced by node proxies (L4) {}",
            l4_scope(spec.selector.as_ref(), loaded)
        );
    }
    let described = describe_targets(context, loaded, &refs);
    if spec.action == Some(Action::Custom) {
        format!("{described}; CUSTOM is not supported there, so it denies what it applies to")
    } else {
        described
    }
}

fn l4_scope(selector: Option<&WorkloadSelector>, loaded: &LoadedObject) -> String {
    let namespace = loaded.object.namespace().unwrap_or_default();
    match selector.filter(|s| !s.match_labels.is_empty()) {
        Some(s) => {
            let labels: Vec<String> = s
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("on workloads labelled {} in {namespace}", labels.join(","))
        }
        None => format!(
            "on every workload of namespace {namespace} (of the mesh, if it is the root namespace)"
        ),
    }
}

/// "enforced by waypoint a/b; not enforced for Service x/y: ..." for a list of targetRefs.
fn describe_targets(
    context: &Context<'_>,
    loaded: &LoadedObject,
    refs: &[&PolicyTargetReference],
) -> String {
    let namespace = loaded.object.namespace().unwrap_or_default();
    let parts: Vec<String> = refs
        .iter()
        .map(|target| describe_target(context, namespace, target))
        .collect();
    parts.join("; ")
}

fn describe_target(
    context: &Context<'_>,
    namespace: &str,
    target: &PolicyTargetReference,
) -> String {
    let ns = target.namespace.as_deref().unwrap_or(namespace);
    let name = &target.name;
    match target.kind.as_str() {
        "Gateway" => match context
            .snapshot
            .get(Kind::Gateway, Some(ns), name)
            .map(|l| &l.object)
        {
            Some(Object::Gateway(g)) if g.spec.gateway_class_name == WAYPOINT_CLASS => {
                format!("enforced by waypoint {ns}/{name} (L7, as written)")
            }
            Some(Object::Gateway(g))
                if gateway_controller(context.snapshot, &g.spec.gateway_class_name).is_some() =>
            {
                format!("enforced by gateway {ns}/{name} (L7, as written)")
            }
            Some(Object::Gateway(g)) => format!(
                "not enforced: Gateway {ns}/{name} is of class {:?}, which weft does not run",
                g.spec.gateway_class_name
            ),
            _ => format!("not enforced: Gateway {ns}/{name} does not exist"),
        },
        kind @ ("Service" | "ServiceEntry") => {
            let object_kind = if kind == "Service" {
                Kind::Service
            } else {
                Kind::ServiceEntry
            };
            if !context.snapshot.contains(object_kind, Some(ns), name) {
                return format!("not enforced: {kind} {ns}/{name} does not exist");
            }
            match context.target_waypoint(object_kind, ns, name) {
                Some((wns, wname)) if context.is_waypoint(&wns, &wname) => {
                    format!(
                        "enforced by waypoint {wns}/{wname} for {kind} {ns}/{name} (L7, as written)"
                    )
                }
                Some((wns, wname)) => format!(
                    "not enforced: the waypoint of {kind} {ns}/{name}, {wns}/{wname}, does not exist"
                ),
                None => format!("not enforced: {kind} {ns}/{name} has no waypoint"),
            }
        }
        "GatewayClass" if name == WAYPOINT_CLASS => format!(
            "enforced by every waypoint if {namespace} is the root namespace (GatewayClass \
             {WAYPOINT_CLASS}), else not enforced"
        ),
        other => format!("not enforced: targetRef {other} {name} is not supported"),
    }
}
