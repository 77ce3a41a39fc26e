//! Label selector matching shared by validation, analysis and the control plane.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether every `selector` label is on `labels` (an empty selector matches everything).
#[must_use]
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Whether a Kubernetes `LabelSelector` (matchLabels and matchExpressions) matches `labels`.
/// Unknown operators match nothing.
#[must_use]
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector
        .match_labels
        .as_ref()
        .is_none_or(|wanted| labels_match(wanted, labels));
    match_labels
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|expression| {
                let value = labels.get(&expression.key);
                let values = expression.values.as_deref().unwrap_or_default();
                match expression.operator.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
}
