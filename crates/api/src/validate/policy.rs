//! Checks of `AuthorizationPolicy` and `PeerAuthentication` beyond their schema: the values
//! a node proxy or waypoint must be able to use (CIDRs, ports 1-65535, service accounts with
//! both parts), field combinations Istio rejects (`selector` with `targetRefs`, CUSTOM
//! without a provider, `portLevelMtls` without a selector).

use super::{Problems, check_workload_selector};
use crate::finding::Code;
use crate::istio::{AuthorizationPolicy, Condition, Operation, PeerAuthentication, Source};
use crate::suggest::Segment;
use std::collections::BTreeMap;

/// Name prefix weft gives the policies it compiles from PeerAuthentication (STRICT mTLS);
/// an AuthorizationPolicy may not use it.
pub const RESERVED_POLICY_PREFIX: &str = "weft-mtls-strict";

pub(super) fn check_authorization_policy(policy: &AuthorizationPolicy, problems: &mut Problems) {
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    if name.starts_with(RESERVED_POLICY_PREFIX) {
        let message = format!(
            "names starting with {RESERVED_POLICY_PREFIX:?} are reserved for the policies weft \
             compiles from PeerAuthentication (STRICT mTLS); this policy would take one's place"
        );
        problems.push(Code::InvalidValue, path!("metadata", "name"), message);
    }
    let spec = &policy.spec;
    check_workload_selector(spec.selector.as_ref(), problems);
    let has_targets =
        spec.target_ref.is_some() || spec.target_refs.as_ref().is_some_and(|t| !t.is_empty());
    if spec.selector.is_some() && has_targets {
        let message = "selector and targetRefs are mutually exclusive: use selector for node-proxy (L4) \
                       enforcement on workloads, or targetRefs for a waypoint/gateway, not both";
        problems.push(
            Code::PolicySelectorAndTargetRefs,
            path!("spec", "targetRefs"),
            message,
        );
    }
    if spec.action == Some(crate::istio::Action::Custom) && spec.provider.is_none() {
        problems.push(
            Code::MissingField,
            path!("spec", "action"),
            "action CUSTOM requires spec.provider",
        );
    }
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        for (f, from) in rule.from.iter().flatten().enumerate() {
            if let Some(source) = &from.source {
                check_source(
                    source,
                    &at!("spec", "rules", r, "from", f, "source"),
                    problems,
                );
            }
        }
        for (t, to) in rule.to.iter().flatten().enumerate() {
            if let Some(operation) = &to.operation {
                let at = at!("spec", "rules", r, "to", t, "operation");
                check_operation(operation, &at, problems);
            }
        }
        for (w, condition) in rule.when.iter().flatten().enumerate() {
            check_condition(condition, &at!("spec", "rules", r, "when", w), problems);
        }
    }
}

/// `at` + `field` + `i`.
fn item(at: &[Segment], field: &str, i: usize) -> Vec<Segment> {
    let mut path = at.to_vec();
    path.extend(path!(field, i));
    path
}

fn check_source(source: &Source, at: &[Segment], problems: &mut Problems) {
    let blocks = [
        ("ipBlocks", &source.ip_blocks),
        ("notIpBlocks", &source.not_ip_blocks),
        ("remoteIpBlocks", &source.remote_ip_blocks),
        ("notRemoteIpBlocks", &source.not_remote_ip_blocks),
    ];
    for (field, values) in blocks {
        for (i, value) in values.iter().flatten().enumerate() {
            problems.cidr(value, item(at, field, i));
        }
    }
    let accounts = [
        ("serviceAccounts", &source.service_accounts),
        ("notServiceAccounts", &source.not_service_accounts),
    ];
    for (field, values) in accounts {
        for (i, value) in values.iter().flatten().enumerate() {
            if let Some(reason) = service_account_problem(value) {
                let message = format!("service account \"{value}\" {reason}");
                problems.push(Code::InvalidValue, item(at, field, i), message);
            }
        }
    }
}

/// Why a `serviceAccounts` entry (`NAMESPACE/NAME` or `NAME`) names no service account.
fn service_account_problem(value: &str) -> Option<&'static str> {
    let (namespace, name) = value.split_once('/').unwrap_or(("-", value));
    if namespace.is_empty() {
        Some("has an empty namespace (write NAMESPACE/NAME or NAME)")
    } else if name.is_empty() {
        Some("has an empty name (write NAMESPACE/NAME or NAME)")
    } else {
        None
    }
}

fn check_operation(operation: &Operation, at: &[Segment], problems: &mut Problems) {
    for (field, values) in [
        ("ports", &operation.ports),
        ("notPorts", &operation.not_ports),
    ] {
        for (i, value) in values.iter().flatten().enumerate() {
            port_value(value, item(at, field, i), problems);
        }
    }
}

/// The values of `when` keys whose values have a syntax: addresses and ports.
fn check_condition(condition: &Condition, at: &[Segment], problems: &mut Problems) {
    let lists = [
        ("values", &condition.values),
        ("notValues", &condition.not_values),
    ];
    for (field, values) in lists {
        for (i, value) in values.iter().flatten().enumerate() {
            let path = item(at, field, i);
            match condition.key.as_str() {
                "source.ip" | "destination.ip" | "remote.ip" => problems.cidr(value, path),
                "destination.port" => port_value(value, path, problems),
                _ => {}
            }
        }
    }
}

fn port_value(value: &str, path: Vec<Segment>, problems: &mut Problems) {
    match value.parse::<i64>() {
        Ok(port) => problems.port(port, path),
        Err(_) => problems.push(
            Code::InvalidValue,
            path,
            format!("port \"{value}\" is not a number"),
        ),
    }
}

/// Istio rejects `portLevelMtls` on a PeerAuthentication without a non-empty selector: a
/// port number means nothing for a whole namespace or mesh. (Port ranges are schema bounds.)
pub(super) fn check_peer_authentication(peer: &PeerAuthentication, problems: &mut Problems) {
    let spec = &peer.spec;
    check_workload_selector(spec.selector.as_ref(), problems);
    if spec.port_level_mtls.as_ref().is_none_or(BTreeMap::is_empty) {
        return;
    }
    let selected = spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if !selected {
        let message = "portLevelMtls requires a selector with matchLabels: ports are a workload's, so a \
                       namespace- or mesh-wide PeerAuthentication cannot set them (Istio rejects it and \
                       weft ignores them)";
        problems.push(Code::MissingField, path!("spec", "portLevelMtls"), message);
    }
}
