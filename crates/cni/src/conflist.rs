//! Network configuration edits: `weft-cni` chained last in a configuration list, or taken
//! out of it. Pure functions on JSON values; [`crate::install`] reads and writes files.
//!
//! A configuration list (`.conflist`) has `name`, `cniVersion` and `plugins`; a single
//! configuration (`.conf`) is one plugin with `name` and `cniVersion` at its top, and
//! becomes a list of that one plugin before `weft-cni` is appended.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::PLUGIN_TYPE;

/// Why a configuration cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfError(String);

impl ConfError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// `weft-cni`'s entry in a list.
#[must_use]
pub fn plugin_entry(socket: &Path, exclude_namespaces: &[String]) -> Value {
    json!({
        "type": PLUGIN_TYPE,
        "socket": socket,
        "excludeNamespaces": exclude_namespaces,
    })
}

/// The configuration as a list: a list as it is, a single plugin wrapped in one.
///
/// # Errors
/// It is not a JSON object, its `plugins` is not an array, or a single configuration has
/// no `type`.
pub fn as_list(conf: &Value) -> Result<Value, ConfError> {
    let object = conf
        .as_object()
        .ok_or_else(|| ConfError::new("the network configuration is not a JSON object"))?;
    if let Some(plugins) = object.get("plugins") {
        if !plugins.is_array() {
            return Err(ConfError::new("`plugins` is not an array"));
        }
        return Ok(conf.clone());
    }
    if !object.get("type").is_some_and(Value::is_string) {
        return Err(ConfError::new(
            "the network configuration has neither `plugins` nor a `type`",
        ));
    }
    let mut plugin = object.clone();
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(value) = plugin.remove(key) {
            list.insert(key.into(), value);
        }
    }
    list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
    Ok(Value::Object(list))
}

fn is_weft(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

fn plugins_mut(list: &mut Value) -> &mut Vec<Value> {
    // `as_list` made sure `plugins` is an array.
    match list.get_mut("plugins") {
        Some(Value::Array(plugins)) => plugins,
        _ => unreachable!("as_list returns a list with a plugins array"),
    }
}

/// The configuration as a list whose last plugin is `entry` (any other `weft-cni`
/// entry removed).
///
/// # Errors
/// See [`as_list`].
pub fn with_plugin(conf: &Value, entry: &Value) -> Result<Value, ConfError> {
    let mut list = as_list(conf)?;
    let plugins = plugins_mut(&mut list);
    plugins.retain(|p| !is_weft(p));
    plugins.push(entry.clone());
    Ok(list)
}

/// The configuration without `weft-cni`, or `None` when it has no such entry (or is not
/// a list).
#[must_use]
pub fn without_plugin(conf: &Value) -> Option<Value> {
    let plugins = conf.get("plugins")?.as_array()?;
    if !plugins.iter().any(is_weft) {
        return None;
    }
    let mut list = conf.clone();
    plugins_mut(&mut list).retain(|p| !is_weft(p));
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge_list() -> Value {
        json!({
            "cniVersion": "1.0.0", "name": "pods",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    fn entry() -> Value {
        plugin_entry(Path::new("/var/run/weft/cni.sock"), &["kube-system".into()])
    }

    #[test]
    fn adding_appends_once_and_is_idempotent() {
        let once = with_plugin(&bridge_list(), &entry()).unwrap();
        let plugins = once["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 3);
        assert_eq!(plugins[2], entry());
        assert_eq!(
            plugins[..2],
            bridge_list()["plugins"].as_array().unwrap()[..]
        );
        assert_eq!(with_plugin(&once, &entry()).unwrap(), once);
    }

    #[test]
    fn adding_moves_an_older_entry_to_the_end_with_the_new_settings() {
        let mut list = bridge_list();
        list["plugins"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"type": "weft-cni", "socket": "/old.sock"}));
        let updated = with_plugin(&list, &entry()).unwrap();
        let types: Vec<&str> = updated["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "weft-cni"]);
        assert_eq!(updated["plugins"][2]["socket"], "/var/run/weft/cni.sock");
    }

    #[test]
    fn a_single_configuration_becomes_a_list() {
        let single = json!({
            "cniVersion": "0.4.0", "name": "pods", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}
        });
        let list = with_plugin(&single, &entry()).unwrap();
        assert_eq!(list["cniVersion"], "0.4.0");
        assert_eq!(list["name"], "pods");
        assert_eq!(
            list["plugins"][0],
            json!({"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}})
        );
        assert_eq!(list["plugins"][1], entry());
    }

    #[test]
    fn removing_restores_the_list_and_is_idempotent() {
        let added = with_plugin(&bridge_list(), &entry()).unwrap();
        let removed = without_plugin(&added).unwrap();
        assert_eq!(removed, bridge_list());
        assert_eq!(without_plugin(&removed), None);
    }

    #[test]
    fn configurations_that_are_no_network_config_are_refused_with_the_reason() {
        assert!(
            with_plugin(&json!([1]), &entry())
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
        assert!(
            with_plugin(&json!({"plugins": {}}), &entry())
                .unwrap_err()
                .to_string()
                .contains("`plugins` is not an array")
        );
        assert!(
            with_plugin(&json!({"name": "x"}), &entry())
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
    }
}
