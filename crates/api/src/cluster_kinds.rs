//! Kubernetes kinds that are not mesh configuration but sit beside it in an install (what
//! `weft manifest generate` prints): RBAC roles and bindings, PodDisruptionBudgets, Leases.
//! weft does not read them, so they are skipped like any unknown kind, but first they are
//! checked against their k8s-openapi types, so a misspelled field or a wrong type in an
//! install manifest is an error `weft validate` reports (the API server would refuse it).

use crate::finding::Code;
use crate::suggest::{Segment, segments_of, unknown_field_location};
use crate::validate::Problem;
use serde::de::DeserializeOwned;

/// `(apiVersion, kind)` pairs checked here.
pub const CHECKED: &[(&str, &str)] = &[
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
    ("coordination.k8s.io/v1", "Lease"),
];

/// The schema problems of an object of a kind in [`CHECKED`] (empty when it is valid), or
/// None when weft does not check that kind.
#[must_use]
pub fn check(api_version: &str, kind: &str, object: &serde_json::Value) -> Option<Vec<Problem>> {
    use k8s_openapi::api::{coordination, policy, rbac};
    if !CHECKED.contains(&(api_version, kind)) {
        return None;
    }
    Some(match kind {
        "ClusterRole" => problems::<rbac::v1::ClusterRole>(kind, object),
        "ClusterRoleBinding" => problems::<rbac::v1::ClusterRoleBinding>(kind, object),
        "Role" => problems::<rbac::v1::Role>(kind, object),
        "RoleBinding" => problems::<rbac::v1::RoleBinding>(kind, object),
        "PodDisruptionBudget" => problems::<policy::v1::PodDisruptionBudget>(kind, object),
        _ => problems::<coordination::v1::Lease>(kind, object),
    })
}

/// Reads `object` as `T`, collecting unknown fields and the parse error.
fn problems<T: DeserializeOwned>(kind: &str, object: &serde_json::Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(object, |path| {
        let path = segments_of(&path);
        let message = unknown_field_message(kind, &path);
        problems.push(Problem {
            code: Code::UnknownField,
            path,
            message,
        });
    });
    if let Err(error) = parsed {
        let message = format!("{kind}: {error}");
        let code = if message.contains("missing field") {
            Code::MissingField
        } else {
            Code::WrongType
        };
        problems.push(Problem {
            code,
            path: Vec::new(),
            message,
        });
    }
    problems
}

fn unknown_field_message(kind: &str, path: &[Segment]) -> String {
    let (field, _, location) = unknown_field_location(path);
    format!("unknown field \"{field}\" in {location} of {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn install_kinds_are_checked_against_their_schema() {
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        });
        assert_eq!(
            check("rbac.authorization.k8s.io/v1", "ClusterRole", &role),
            Some(vec![])
        );
        let typo = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resource": ["pods"], "verbs": ["get"]}],
        });
        let problems = check("rbac.authorization.k8s.io/v1", "ClusterRole", &typo).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, Code::UnknownField);
        assert!(
            problems[0].message.contains("\"resource\" in rules[0]"),
            "{}",
            problems[0].message
        );
        let wrong_type = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r"}, "rules": "all",
        });
        let problems = check("rbac.authorization.k8s.io/v1", "Role", &wrong_type).unwrap();
        assert_eq!(problems[0].code, Code::WrongType, "{problems:?}");
        let pdb = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "p"}, "spec": {"minAvailable": "many"},
        });
        assert!(check("policy/v1", "PodDisruptionBudget", &pdb).is_some());
        assert_eq!(check("example.com/v1", "Widget", &pdb), None);
    }
}
