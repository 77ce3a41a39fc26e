//! Status and attachment tests: one small manifest per condition reason.

mod gateway_tls;
mod listener_sets;
mod listeners;
mod routes;

use super::{ObjectStatus, Status, statuses};
use crate::{ConfigSnapshot, parse_manifests};
use std::path::Path;

/// Namespaces `infra` and `apps` (labelled `team: a`), a Service `web` on 8080 in each.
pub(super) const BASE: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {team: a}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: infra}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{name: http, port: 8080}]}
";

pub(super) fn snapshot(yaml: &str) -> ConfigSnapshot {
    let text = format!("{BASE}\n---\n{yaml}");
    let loaded = parse_manifests(&text, Path::new("test.yaml"));
    assert_eq!(loaded.findings, vec![], "manifest findings");
    ConfigSnapshot::new(loaded.objects)
}

pub(super) fn status_of<'a>(all: &'a [ObjectStatus], kind: &str, name: &str) -> &'a Status {
    &all.iter()
        .find(|s| s.kind == kind && s.metadata.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {all:#?}"))
        .status
}

/// `(status, reason)` of condition `type_` among `conditions`.
pub(super) fn condition(conditions: &[super::Condition], type_: &str) -> (String, String) {
    let found = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions:#?}"));
    (found.status.clone(), found.reason.clone())
}

/// `(status, reason)` of a route's condition for its parentRef `index`.
pub(super) fn route_condition(
    yaml: &str,
    route: &str,
    index: usize,
    type_: &str,
) -> (String, String) {
    let all = statuses(&snapshot(yaml));
    let kind = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute"]
        .into_iter()
        .find(|k| all.iter().any(|s| s.kind == *k && s.metadata.name == route))
        .unwrap_or_else(|| panic!("no route status {route}: {all:#?}"));
    let Status::Route(status) = status_of(&all, kind, route) else {
        panic!("not a route status");
    };
    let parent = status
        .parents
        .iter()
        .find(|p| p.parent_index == index)
        .unwrap_or_else(|| panic!("no parent {index}: {status:#?}"));
    condition(&parent.conditions, type_)
}

/// `(status, reason)` of a listener's condition.
pub(super) fn listener_condition(
    yaml: &str,
    gateway: &str,
    listener: &str,
    type_: &str,
) -> (String, String) {
    let all = statuses(&snapshot(yaml));
    let Status::Gateway(status) = status_of(&all, "Gateway", gateway) else {
        panic!("not a gateway status");
    };
    let listener = status
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("no listener {listener}: {status:#?}"));
    condition(&listener.conditions, type_)
}

pub(super) fn is(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}
