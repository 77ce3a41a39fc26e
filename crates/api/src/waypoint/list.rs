//! `weft waypoint list`: the waypoint Gateways of a directory and what uses each of them.

use super::{WAYPOINT_FOR_LABEL, WaypointError, load_dir, points_at};
use crate::gateway::WAYPOINT_CLASS;
use crate::object::{LoadedObject, Object};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One waypoint Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `istio.io/waypoint-for` (`service` when unset).
    #[serde(rename = "for")]
    pub traffic: String,
    /// Objects whose `istio.io/use-waypoint` labels point at it, as `kind/namespace/name`
    /// (`Namespace/-/shop` for a namespace).
    pub enrolled: Vec<String>,
    /// The file it is written in.
    pub file: PathBuf,
    /// Its line there.
    pub line: usize,
}

/// The labels an object enrolls through: its own, or its pod template's for workloads.
pub(super) fn enrollment_labels(object: &Object) -> Option<&BTreeMap<String, String>> {
    match object {
        Object::Namespace(_) | Object::Service(_) | Object::Pod(_) => {
            object.metadata().labels.as_ref()
        }
        Object::Deployment(d) => template(d.spec.as_ref().map(|s| &s.template)),
        Object::StatefulSet(s) => template(s.spec.as_ref().map(|s| &s.template)),
        Object::DaemonSet(d) => template(d.spec.as_ref().map(|s| &s.template)),
        _ => None,
    }
}

fn template(spec: Option<&PodTemplateSpec>) -> Option<&BTreeMap<String, String>> {
    spec.and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
}

/// Waypoints in `dir` (all namespaces, or only `namespace`), sorted by namespace and name.
pub fn list(dir: &Path, namespace: Option<&str>) -> Result<Vec<WaypointEntry>, WaypointError> {
    let objects = load_dir(dir)?;
    let mut entries: Vec<WaypointEntry> = objects
        .iter()
        .filter(|o| matches!(&o.object, Object::Gateway(g) if g.spec.gateway_class_name == WAYPOINT_CLASS))
        .filter(|o| namespace.is_none_or(|ns| o.object.namespace() == Some(ns)))
        .map(|gateway| entry(gateway, &objects))
        .collect();
    entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(entries)
}

fn entry(gateway: &LoadedObject, objects: &[LoadedObject]) -> WaypointEntry {
    let namespace = gateway.object.namespace().unwrap_or_default().to_owned();
    let name = gateway.object.name().to_owned();
    let wanted = (namespace.clone(), name.clone());
    let enrolled = objects
        .iter()
        .filter(|o| {
            let own_namespace = o.object.namespace().unwrap_or(o.object.name());
            enrollment_labels(&o.object)
                .and_then(|labels| points_at(labels, own_namespace))
                .is_some_and(|target| target == wanted)
        })
        .map(|o| o.object.object_ref().to_string())
        .collect();
    WaypointEntry {
        traffic: gateway
            .object
            .label(WAYPOINT_FOR_LABEL)
            .unwrap_or("service")
            .to_owned(),
        namespace,
        name,
        enrolled,
        file: gateway.source.file.clone(),
        line: gateway.source.line,
    }
}
