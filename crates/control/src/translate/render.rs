//! Text form of an [`Output`] for people and golden tests: each resource in the proto JSON
//! mapping (camelCase field names), grouped by type, with its name, version and aliases.

use super::{Output, RESOURCE_TYPES, Resource, ResourceKey, ResourceType};
use serde_json::{Map, Value, json};
use weft_proto::JsonError;

/// A resource that could not be rendered (only possible if the descriptors and generated code
/// disagree, which is a build bug).
#[derive(Debug, thiserror::Error)]
#[error("rendering resource {name} as proto JSON failed: {source}")]
pub struct RenderError {
    name: String,
    #[source]
    source: JsonError,
}

fn entry(resource_type: &ResourceType, resource: &Resource) -> Result<Value, RenderError> {
    let rendered = resource_type
        .render(&resource.encoded)
        .map_err(|source| RenderError {
            name: resource.name.clone(),
            source,
        })?;
    let mut value = json!({ "name": resource.name, "version": resource.version });
    if !resource.aliases.is_empty() {
        value["aliases"] = json!(resource.aliases);
    }
    value["resource"] = rendered;
    Ok(value)
}

/// Every resource of `output`, one list per registered type under its section name
/// (`{addresses: [...], authorizations: [...]}`), each in resource-name order.
///
/// # Errors
/// Fails only if a resource does not re-decode with weft's descriptors (a build bug).
pub fn render_resources(output: &Output) -> Result<Value, RenderError> {
    let mut sections = Map::new();
    for resource_type in RESOURCE_TYPES {
        let entries = output
            .of_type(resource_type.type_url)
            .values()
            .map(|r| entry(resource_type, r))
            .collect::<Result<Vec<_>, _>>()?;
        sections.insert(resource_type.section.to_owned(), Value::Array(entries));
    }
    Ok(Value::Object(sections))
}

/// The resources under `keys` in the layout of [`render_resources`], with only the
/// sections of their types (what one proxy receives, e.g. one waypoint's resource).
///
/// # Errors
/// As [`render_resources`].
pub fn render_selected(output: &Output, keys: &[ResourceKey]) -> Result<Value, RenderError> {
    let mut sections = Map::new();
    for resource_type in RESOURCE_TYPES {
        let selected = keys.iter().filter(|k| k.type_url == resource_type.type_url);
        let entries = selected
            .filter_map(|key| output.get(key))
            .map(|r| entry(resource_type, r))
            .collect::<Result<Vec<_>, _>>()?;
        if !entries.is_empty() {
            sections.insert(resource_type.section.to_owned(), Value::Array(entries));
        }
    }
    Ok(Value::Object(sections))
}

/// Every warning as one line (`Kind/ns/name: message`), in resource order.
#[must_use]
pub fn warning_lines(output: &Output) -> Vec<String> {
    let mut lines: Vec<String> = output.all_warnings().map(ToString::to_string).collect();
    lines.dedup();
    lines
}
