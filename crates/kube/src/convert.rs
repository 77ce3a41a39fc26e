//! One API object into weft's typed model, exactly as the file loader reads a manifest:
//! the object's JSON (which is YAML) goes through [`weft_api::parse_manifests`], so the
//! same unknown-field, schema and validation checks apply and every finding names the
//! object and the field. Findings point at `kubernetes:<Kind>/<namespace>/<name>` and the
//! line of the field in the object's JSON as weft printed it.

use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;
use std::path::PathBuf;
use weft_api::{Kind, LoadResult, ObjectRef};

/// The identity of `object` (a `kind` object from the API).
#[must_use]
pub fn object_ref(kind: Kind, object: &DynamicObject) -> ObjectRef {
    let namespace = object
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| weft_api::object::DEFAULT_NAMESPACE.to_owned());
    ObjectRef {
        kind,
        namespace: kind.is_namespaced().then_some(namespace),
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}

/// Parses `object` (of `kind`, served as `resource`) into weft's model.
#[must_use]
pub fn parse(
    kind: Kind,
    resource: &ApiResource,
    object: &DynamicObject,
) -> (ObjectRef, LoadResult) {
    let object_ref = object_ref(kind, object);
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        // list items come without their type; bookkeeping of writers is no configuration
        fields.insert("apiVersion".into(), resource.api_version.clone().into());
        fields.insert("kind".into(), resource.kind.clone().into());
        if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
            metadata.remove("managedFields");
        }
    }
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let source = PathBuf::from(format!("kubernetes:{object_ref}"));
    (object_ref, weft_api::parse_manifests(&text, &source))
}
