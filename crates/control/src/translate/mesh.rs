//! `weft.mesh.v1.MeshConfig`: the mesh-wide settings node proxies apply, one resource named
//! `mesh`, read the way Istio reads its mesh config: the ConfigMap `istio` in the root
//! namespace, key `mesh`, a YAML document of which weft uses `outboundTrafficPolicy.mode`
//! (`ALLOW_ANY`, the default, or `REGISTRY_ONLY`).
//!
//! When the mesh config sets no mode, `weft control --outbound-traffic-policy` (default
//! `ALLOW_ANY`) decides. When neither says anything but the default, there is no resource,
//! and node proxies apply the defaults, as under a control plane that does not serve the
//! type.
//! **Fails closed**: a `mesh` value that is not YAML, or a mode weft does not know, gives
//! `REGISTRY_ONLY` with a warning naming the ConfigMap and field, so a typo never opens
//! egress that the operator meant to restrict.
//!
//! Dependencies: the ConfigMap (present or not), so creating, editing or deleting it
//! re-translates the resource.

use super::context::{Context, Dep, Unit};
use super::{Resource, Warning};
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::MESH_CONFIG_NAME;
use weft_proto::mesh::MeshConfig;
use weft_proto::mesh::mesh_config::OutboundTrafficPolicy;

/// Name of Istio's mesh config ConfigMap (in the root namespace).
pub const MESH_CONFIG_MAP: &str = "istio";
/// Key of the mesh config YAML in that ConfigMap.
pub const MESH_CONFIG_KEY: &str = "mesh";

/// The ConfigMap holding the mesh config.
fn config_map_ref(context: &Context<'_>) -> ObjectRef {
    ObjectRef {
        kind: Kind::ConfigMap,
        namespace: Some(context.options.root_namespace.clone()),
        name: MESH_CONFIG_MAP.to_owned(),
    }
}

/// The mesh config text, when the ConfigMap and its key exist.
fn mesh_text<'c>(context: &Context<'c>) -> Option<&'c str> {
    let object = config_map_ref(context);
    let found = (context.snapshot).get(Kind::ConfigMap, object.namespace.as_deref(), &object.name);
    let Some(Object::ConfigMap(map)) = found.map(|l| &l.object) else {
        return None;
    };
    map.data.as_ref()?.get(MESH_CONFIG_KEY).map(String::as_str)
}

/// Names of MeshConfig units: always `mesh` (its unit records the dependency on the
/// ConfigMap even while there is none, so creating it is noticed).
pub(crate) fn mesh_names(_: &Context<'_>) -> Vec<String> {
    vec![MESH_CONFIG_NAME.to_owned()]
}

/// The MeshConfig unit (only the name `mesh` exists).
pub(crate) fn translate_mesh(context: &Context<'_>, name: &str) -> Unit {
    let mut unit = Unit::default();
    if name != MESH_CONFIG_NAME {
        return unit;
    }
    let object = config_map_ref(context);
    unit.deps.push(Dep::Object(object.clone()));
    let default = context.options.outbound_traffic_policy;
    let text = mesh_text(context);
    if text.is_none() && default == OutboundTrafficPolicy::AllowAny {
        return unit;
    }
    let configured = text.map_or(Ok(None), outbound_traffic_policy);
    let policy = configured
        .map(|p| p.unwrap_or(default))
        .unwrap_or_else(|reason| {
            unit.warnings.push(Warning {
                object,
                message: format!(
                    "data.{MESH_CONFIG_KEY}: {reason}; node proxies apply REGISTRY_ONLY until it \
                 is fixed"
                ),
            });
            OutboundTrafficPolicy::RegistryOnly
        });
    let message = MeshConfig {
        outbound_traffic_policy: policy.into(),
    };
    unit.resource = Some(Resource::encode(name.to_owned(), Vec::new(), &message));
    unit
}

/// `outboundTrafficPolicy.mode` of a mesh config document (`None` when unset), or why it
/// cannot be read.
pub fn outbound_traffic_policy(text: &str) -> Result<Option<OutboundTrafficPolicy>, String> {
    let config = weft_api::yaml::parse(text).map_err(|e| format!("not YAML ({e})"))?;
    let Some(mode) = config
        .as_ref()
        .and_then(|c| c.get("outboundTrafficPolicy")?.get("mode"))
    else {
        return Ok(None);
    };
    if mode.is_null() {
        return Ok(None);
    }
    match mode.as_str() {
        Some("ALLOW_ANY") => Ok(Some(OutboundTrafficPolicy::AllowAny)),
        Some("REGISTRY_ONLY") => Ok(Some(OutboundTrafficPolicy::RegistryOnly)),
        _ => Err(format!(
            "outboundTrafficPolicy.mode: {} is not ALLOW_ANY or REGISTRY_ONLY",
            mode.scalar_text().unwrap_or("a mapping or sequence")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_read_and_unknown_values_are_errors() {
        let allow = Some(OutboundTrafficPolicy::AllowAny);
        let registry = Some(OutboundTrafficPolicy::RegistryOnly);
        assert_eq!(outbound_traffic_policy(""), Ok(None));
        let unset = outbound_traffic_policy("accessLogFile: /dev/stdout");
        assert_eq!(unset, Ok(None));
        let text = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n";
        assert_eq!(outbound_traffic_policy(text), Ok(registry));
        let text = "outboundTrafficPolicy: {mode: ALLOW_ANY}";
        assert_eq!(outbound_traffic_policy(text), Ok(allow));
        let error = outbound_traffic_policy("outboundTrafficPolicy: {mode: REGISTRY}");
        assert!(error.unwrap_err().contains("REGISTRY is not"));
        assert!(
            outbound_traffic_policy("a: [")
                .unwrap_err()
                .contains("not YAML")
        );
    }
}
