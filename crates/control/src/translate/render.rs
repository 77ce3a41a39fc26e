//! Text form of an [`Output`] for people and golden tests: each resource in the proto JSON
//! mapping (camelCase field names), grouped by type, with its name, version and aliases.

use super::{Output, Versioned};
use serde_json::{Value, json};
use weft_proto::JsonError;

/// Protobuf full name of the workload API resource.
pub const ADDRESS_MESSAGE: &str = "istio.workload.Address";
/// Protobuf full name of the L4 policy resource.
pub const AUTHORIZATION_MESSAGE: &str = "istio.security.Authorization";

/// A resource that could not be rendered (only possible if the descriptors and generated code
/// disagree, which is a build bug).
#[derive(Debug, thiserror::Error)]
#[error("rendering resource {name} as proto JSON failed: {source}")]
pub struct RenderError {
    name: String,
    #[source]
    source: JsonError,
}

fn entry<M: prost::Message>(
    full_name: &str,
    resource: &Versioned<M>,
) -> Result<Value, RenderError> {
    let rendered =
        weft_proto::to_json(full_name, &resource.message).map_err(|source| RenderError {
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

/// `{addresses: [...], authorizations: [...]}`, each list in resource-name order.
///
/// # Errors
/// Fails only if a resource does not re-decode with weft's descriptors (a build bug).
pub fn render_resources(output: &Output) -> Result<Value, RenderError> {
    let addresses = output
        .addresses
        .values()
        .map(|r| entry(ADDRESS_MESSAGE, r))
        .collect::<Result<Vec<_>, _>>()?;
    let authorizations = output
        .authorizations
        .values()
        .map(|r| entry(AUTHORIZATION_MESSAGE, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "addresses": addresses, "authorizations": authorizations }))
}

/// Every warning as one line (`Kind/ns/name: message`), in resource order.
#[must_use]
pub fn warning_lines(output: &Output) -> Vec<String> {
    let mut lines: Vec<String> = output.all_warnings().map(ToString::to_string).collect();
    lines.dedup();
    lines
}
