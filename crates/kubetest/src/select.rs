//! `labelSelector` and `fieldSelector` query parameters: comma-separated requirements that
//! all must hold. Labels: `key=value`, `key==value`, `key!=value`, `key`, `!key`. Fields:
//! `metadata.name` and `metadata.namespace` with `=`, `==` or `!=` (what watchers of
//! single objects use).

use serde_json::Value;

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// Why a selector was refused (the API answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported {what} selector requirement \"{requirement}\"")]
pub struct SelectorError {
    what: &'static str,
    requirement: String,
}

/// The label and field requirements of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    /// Parses the two query parameters (either may be absent).
    ///
    /// # Errors
    /// [`SelectorError`] for set-based label requirements (`in`, `notin`) and fields other
    /// than `metadata.name` / `metadata.namespace`.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, SelectorError> {
        let fields = parse_requirements(fields.unwrap_or(""), "field")?;
        for requirement in &fields {
            let (Requirement::Equals(key, _) | Requirement::NotEquals(key, _)) = requirement else {
                return Err(unsupported("field", requirement));
            };
            if key != "metadata.name" && key != "metadata.namespace" {
                return Err(unsupported("field", requirement));
            }
        }
        Ok(Selector {
            labels: parse_requirements(labels.unwrap_or(""), "label")?,
            fields,
        })
    }

    /// Whether `object` satisfies every requirement.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let label = |key: &str| metadata["labels"][key].as_str();
        let field = |key: &str| match key {
            "metadata.name" => metadata["name"].as_str(),
            _ => metadata["namespace"].as_str(),
        };
        self.labels.iter().all(|r| holds(r, label)) && self.fields.iter().all(|r| holds(r, field))
    }
}

fn holds<'a>(requirement: &Requirement, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
    match requirement {
        Requirement::Equals(key, value) => value_of(key) == Some(value.as_str()),
        Requirement::NotEquals(key, value) => value_of(key) != Some(value.as_str()),
        Requirement::Exists(key) => value_of(key).is_some(),
        Requirement::Absent(key) => value_of(key).is_none(),
    }
}

fn parse_requirements(text: &str, what: &'static str) -> Result<Vec<Requirement>, SelectorError> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                let value = value.strip_prefix('=').unwrap_or(value);
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::Absent(key.trim().to_owned())
            } else if part.contains(' ') {
                return Err(SelectorError {
                    what,
                    requirement: part.to_owned(),
                });
            } else {
                Requirement::Exists(part.to_owned())
            };
            Ok(requirement)
        })
        .collect()
}

fn unsupported(what: &'static str, requirement: &Requirement) -> SelectorError {
    SelectorError {
        what,
        requirement: format!("{requirement:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Selector;
    use serde_json::json;

    #[test]
    fn label_and_field_requirements_all_must_hold() {
        let pod =
            json!({"metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}}});
        let matching =
            Selector::parse(Some("app=web,!canary"), Some("metadata.name=web-0")).unwrap();
        assert!(matching.matches(&pod));
        let other_name = Selector::parse(None, Some("metadata.name==web-1")).unwrap();
        assert!(!other_name.matches(&pod));
        let other_label = Selector::parse(Some("app!=web"), None).unwrap();
        assert!(!other_label.matches(&pod));
        assert!(Selector::parse(Some("app in (web)"), None).is_err());
        assert!(Selector::parse(None, Some("spec.nodeName=a")).is_err());
    }
}
