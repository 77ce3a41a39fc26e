//! What is wrong with the live configuration, from the control plane's point of view:
//! `weft analyze`'s findings (`/debug/analyzez`), objects it could not use
//! (`/debug/config_errors`), translation warnings (in `/debug/configz`), and Gateway API
//! status conditions that are not as they should be (`/debug/gatewayz`).

use serde::Serialize;
use serde_json::Value;

/// One line of the findings table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingView {
    /// `error`, `warning` or `info`.
    pub severity: String,
    /// Where it comes from: `analyze`, `config`, `translation` or `status`.
    pub origin: &'static str,
    /// The finding code or condition type.
    pub code: String,
    /// `Kind/namespace/name`, when known.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// Findings of `weft analyze` as `/debug/analyzez` renders them.
#[must_use]
pub fn from_analyze(findings: &Value) -> Vec<FindingView> {
    list(findings)
        .map(|f| FindingView {
            severity: text(&f["severity"]).to_lowercase(),
            origin: "analyze",
            code: text(&f["code"]),
            object: object_ref(&f["object"]),
            message: text(&f["message"]),
        })
        .collect()
}

/// Configuration errors (`/debug/config_errors`) and translation warnings (`warnings`
/// of `/debug/configz`): one line each.
#[must_use]
pub fn from_lines(lines: &Value, origin: &'static str, severity: &str) -> Vec<FindingView> {
    list(lines)
        .map(|line| FindingView {
            severity: severity.to_owned(),
            origin,
            code: String::new(),
            object: String::new(),
            message: text(line),
        })
        .collect()
}

/// Every condition of `/debug/gatewayz` that is not in its good state (`False` for the
/// positive conditions weft computes: Accepted, Programmed, ResolvedRefs...), for the
/// object and each listener and route parent.
#[must_use]
pub fn from_gatewayz(statuses: &Value) -> Vec<FindingView> {
    let mut out = Vec::new();
    for status in list(statuses) {
        let object = format!(
            "{}/{}/{}",
            text(&status["kind"]),
            text(&status["metadata"]["namespace"]),
            text(&status["metadata"]["name"])
        );
        collect_conditions(&status["status"], &object, &mut out);
    }
    out
}

/// Walks a status object, reporting every `conditions` entry whose status is `False`.
fn collect_conditions(value: &Value, object: &str, out: &mut Vec<FindingView>) {
    match value {
        Value::Object(map) => {
            if let Some(conditions) = map.get("conditions") {
                for condition in list(conditions) {
                    if condition["status"] == "False" {
                        out.push(FindingView {
                            severity: "warning".into(),
                            origin: "status",
                            code: format!(
                                "{}={}",
                                text(&condition["type"]),
                                text(&condition["reason"])
                            ),
                            object: object.to_owned(),
                            message: text(&condition["message"]),
                        });
                    }
                }
            }
            for (key, child) in map {
                if key != "conditions" {
                    collect_conditions(child, object, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_conditions(item, object, out);
            }
        }
        _ => {}
    }
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn object_ref(value: &Value) -> String {
    if value.is_null() {
        return String::new();
    }
    let parts: Vec<String> = ["kind", "namespace", "name"]
        .iter()
        .map(|key| text(&value[*key]))
        .filter(|part| !part.is_empty())
        .collect();
    parts.join("/")
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
