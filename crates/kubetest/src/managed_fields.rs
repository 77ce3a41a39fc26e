//! Server-side apply as the test API server does it: which field manager owns which fields
//! (kept in `metadata.managedFields` in the API's `FieldsV1` form), conflicts when an apply
//! changes a field another manager owns (409 unless `force`), and the merge itself.
//!
//! Simplifications, each on the safe side of the real API's behaviour: objects are merged
//! key by key, every list is one atomic field (the real API merges lists declared as maps
//! by their keys), and a manager that writes the same value as another becomes co-owner
//! without a conflict, as the real API does.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A field's path from the object's root, one key per level.
pub type FieldPath = Vec<String>;

/// The fields one manager set through one endpoint (the object or its `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// `fieldManager` of the request.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `status` for the status subresource, empty for the object itself.
    pub subresource: String,
    /// The fields it owns.
    pub fields: BTreeSet<FieldPath>,
}

/// An apply request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// `fieldManager` (required for apply).
    pub manager: &'a str,
    /// `force=true`: take the conflicting fields over instead of failing.
    pub force: bool,
    /// `status` when applied to the status subresource, else empty.
    pub subresource: &'a str,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owner.
    pub manager: String,
    /// The field, in the API's `.a.b` notation.
    pub field: String,
}

/// Metadata fields no manager owns (the server sets them, or they name the object).
const SERVER_OWNED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// Applies `patch` onto `current` (the stored object; `None` creates it) for `request`.
/// Returns the merged object with its `metadata.managedFields` updated, or the conflicts.
///
/// # Errors
/// The fields other managers own with another value, when `request.force` is false.
pub fn apply(
    current: Option<&Value>,
    patch: &Value,
    request: ApplyRequest<'_>,
) -> Result<Value, Vec<Conflict>> {
    let mut merged = current.cloned().unwrap_or_else(|| skeleton(patch));
    let mut entries = read_entries(&merged);
    let applied = applied_fields(patch, request.subresource);
    let conflicts = conflicts(&entries, &merged, patch, &applied, request.manager);
    if !conflicts.is_empty() && !request.force {
        return Err(conflicts);
    }
    for entry in &mut entries {
        if entry.manager != request.manager {
            entry.fields.retain(|field| {
                !conflicts
                    .iter()
                    .any(|c| c.manager == entry.manager && c.field == dotted(field))
            });
        }
    }
    let previous = take_entry(&mut entries, request.manager, "Apply", request.subresource);
    for field in previous.difference(&applied) {
        let still_owned = entries.iter().any(|e| e.fields.contains(field));
        if !still_owned {
            remove_path(&mut merged, field);
        }
    }
    for field in &applied {
        if let Some(value) = get_path(patch, field) {
            set_path(&mut merged, field, value.clone());
        }
    }
    entries.push(ManagedEntry {
        manager: request.manager.to_owned(),
        operation: "Apply".into(),
        subresource: request.subresource.to_owned(),
        fields: applied,
    });
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Records that `manager` set every field of `object` that differs from `previous` through
/// an update (PUT or create), as the real API does for non-apply writes; those fields leave
/// other managers.
pub fn record_update(
    previous: Option<&Value>,
    object: &mut Value,
    manager: &str,
    subresource: &str,
) {
    let mut entries = previous.map(read_entries).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = applied_fields(object, subresource)
        .into_iter()
        .filter(|field| previous.and_then(|p| get_path(p, field)) != get_path(object, field))
        .collect();
    if changed.is_empty() {
        write_entries(object, &entries);
        return;
    }
    for entry in &mut entries {
        entry.fields.retain(|field| !changed.contains(field));
    }
    let mut owned = take_entry(&mut entries, manager, "Update", subresource);
    owned.extend(changed);
    entries.push(ManagedEntry {
        manager: manager.to_owned(),
        operation: "Update".into(),
        subresource: subresource.to_owned(),
        fields: owned,
    });
    write_entries(object, &entries);
}

/// Renders conflicts as the API's message: `Apply failed with N conflicts: conflict with "m": .f`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let listed: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        listed.join("; ")
    )
}

fn skeleton(patch: &Value) -> Value {
    let metadata = &patch["metadata"];
    let mut meta = Map::new();
    for key in ["name", "namespace"] {
        if let Some(value) = metadata.get(key) {
            meta.insert(key.into(), value.clone());
        }
    }
    json!({
        "apiVersion": patch["apiVersion"],
        "kind": patch["kind"],
        "metadata": meta,
    })
}

/// The leaf fields of `object` a write through `subresource` sets: under `status` for the
/// status subresource, everything else for the object itself.
fn applied_fields(object: &Value, subresource: &str) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(fields) = object.as_object() else {
        return out;
    };
    for (key, value) in fields {
        let in_scope = if subresource == "status" {
            key == "status"
        } else {
            key != "status" && key != "apiVersion" && key != "kind"
        };
        if !in_scope {
            continue;
        }
        if key == "metadata" {
            metadata_fields(value, &mut out);
        } else {
            leaves(value, vec![key.clone()], &mut out);
        }
    }
    out
}

fn metadata_fields(metadata: &Value, out: &mut BTreeSet<FieldPath>) {
    let Some(fields) = metadata.as_object() else {
        return;
    };
    for (key, value) in fields {
        if !SERVER_OWNED_METADATA.contains(&key.as_str()) {
            leaves(value, vec!["metadata".into(), key.clone()], out);
        }
    }
}

fn leaves(value: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, child) in fields {
                let mut child_path = path.clone();
                child_path.push(key.clone());
                leaves(child, child_path, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn conflicts(
    entries: &[ManagedEntry],
    current: &Value,
    patch: &Value,
    applied: &BTreeSet<FieldPath>,
    manager: &str,
) -> Vec<Conflict> {
    let mut found = Vec::new();
    for entry in entries.iter().filter(|e| e.manager != manager) {
        for owned in &entry.fields {
            let overlapping = applied
                .iter()
                .any(|field| field.starts_with(owned) || owned.starts_with(field));
            if overlapping && get_path(current, owned) != get_path(patch, owned) {
                found.push(Conflict {
                    manager: entry.manager.clone(),
                    field: dotted(owned),
                });
            }
        }
    }
    found
}

fn take_entry(
    entries: &mut Vec<ManagedEntry>,
    manager: &str,
    operation: &str,
    subresource: &str,
) -> BTreeSet<FieldPath> {
    let mut taken = BTreeSet::new();
    entries.retain_mut(|entry| {
        let same = entry.manager == manager
            && entry.operation == operation
            && entry.subresource == subresource;
        if same {
            taken.append(&mut entry.fields);
        }
        !same
    });
    taken
}

fn dotted(path: &FieldPath) -> String {
    path.iter().map(|key| format!(".{key}")).collect()
}

fn get_path<'v>(value: &'v Value, path: &FieldPath) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, key| node.get(key))
}

fn set_path(value: &mut Value, path: &FieldPath, leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        if !node.get(key).is_some_and(Value::is_object) {
            node[key.as_str()] = Value::Object(Map::new());
        }
        node = &mut node[key.as_str()];
    }
    node[last.as_str()] = leaf;
}

fn remove_path(value: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(fields) = node.as_object_mut() {
        fields.remove(last);
    }
}

/// Reads `metadata.managedFields` back into entries (entries of another shape are dropped).
fn read_entries(object: &Value) -> Vec<ManagedEntry> {
    let Some(list) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let mut fields = BTreeSet::new();
            fields_v1_paths(&entry["fieldsV1"], Vec::new(), &mut fields);
            Some(ManagedEntry {
                manager: entry["manager"].as_str()?.to_owned(),
                operation: entry["operation"].as_str().unwrap_or("Update").to_owned(),
                subresource: entry["subresource"].as_str().unwrap_or("").to_owned(),
                fields,
            })
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let api_version = object["apiVersion"].clone();
    let list: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            let mut rendered = json!({
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(&entry.fields),
            });
            if !entry.subresource.is_empty() {
                rendered["subresource"] = Value::String(entry.subresource.clone());
            }
            rendered
        })
        .collect();
    if !object["metadata"].is_object() {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"]["managedFields"] = Value::Array(list);
}

/// The `FieldsV1` form: `{"f:status": {"f:conditions": {}}}`.
fn fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let mut node = &mut root;
        for key in path {
            node = node
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn fields_v1_paths(node: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(children) = node.as_object() else {
        return;
    };
    let mut leaf = true;
    for (key, child) in children {
        if let Some(name) = key.strip_prefix("f:") {
            leaf = false;
            let mut child_path = path.clone();
            child_path.push(name.to_owned());
            fields_v1_paths(child, child_path, out);
        }
    }
    if leaf && !path.is_empty() {
        out.insert(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(manager: &str, force: bool) -> ApplyRequest<'_> {
        ApplyRequest {
            manager,
            force,
            subresource: "",
        }
    }

    fn config(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "n"}, "data": data})
    }

    #[test]
    fn a_manager_owns_what_it_applied_and_removes_what_it_stops_applying() {
        let first = apply(
            None,
            &config(json!({"a": "1", "b": "2"})),
            request("m", false),
        )
        .expect("apply");
        let second = apply(
            Some(&first),
            &config(json!({"a": "1"})),
            request("m", false),
        )
        .expect("apply");
        assert_eq!(second["data"], json!({"a": "1"}));
        assert_eq!(
            second["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn changing_another_managers_field_conflicts_unless_forced() {
        let first = apply(None, &config(json!({"a": "1"})), request("one", false)).expect("apply");
        let same = apply(
            Some(&first),
            &config(json!({"a": "1"})),
            request("two", false),
        );
        assert!(same.is_ok(), "the same value makes a co-owner");
        let refused = apply(
            Some(&first),
            &config(json!({"a": "2"})),
            request("two", false),
        )
        .expect_err("conflict");
        assert_eq!(
            refused,
            vec![Conflict {
                manager: "one".into(),
                field: ".data.a".into()
            }]
        );
        assert!(conflict_message(&refused).contains("conflict with \"one\": .data.a"));
        let forced = apply(
            Some(&first),
            &config(json!({"a": "2"})),
            request("two", true),
        )
        .expect("forced");
        assert_eq!(forced["data"]["a"], "2");
        let owners: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(owners, ["two"], "the forced field left its old owner");
    }

    #[test]
    fn status_applies_touch_only_status() {
        let object = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"},
                            "spec": {"a": 1}});
        let patch = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"},
                           "spec": {"a": 2}, "status": {"ok": true}});
        let status = ApplyRequest {
            manager: "weft",
            force: false,
            subresource: "status",
        };
        let merged = apply(Some(&object), &patch, status).expect("apply");
        assert_eq!(merged["spec"]["a"], 1);
        assert_eq!(merged["status"]["ok"], true);
        assert_eq!(
            merged["metadata"]["managedFields"][0]["subresource"],
            "status"
        );
    }

    #[test]
    fn updates_take_fields_from_appliers() {
        let first = apply(None, &config(json!({"a": "1"})), request("one", false)).expect("apply");
        let mut updated = config(json!({"a": "9"}));
        updated["metadata"]["managedFields"] = first["metadata"]["managedFields"].clone();
        record_update(Some(&first), &mut updated, "kubectl", "");
        let entries = read_entries(&updated);
        let managers: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
        assert_eq!(managers, ["kubectl"], "the updated field left the applier");
        let refused = apply(
            Some(&updated),
            &config(json!({"a": "1"})),
            request("one", false),
        );
        assert!(refused.is_err());
    }
}
