//! ListenerSets: admission by `allowedListeners`, merged listeners and their conflicts,
//! routes with a ListenerSet parent, and the status of both objects.

use super::super::{GatewayStatus, Status, attach, statuses};
use super::{condition, is, route_condition, snapshot, status_of};
use crate::object::{Kind, ObjectRef};

/// Gateway `infra/gw` (HTTP `web` on 80 for `example.com`) with `allowed` as its
/// `allowedListeners` (YAML flow mapping; empty: not set).
fn gateway(allowed: &str) -> String {
    let allowed = if allowed.is_empty() {
        String::new()
    } else {
        format!("  allowedListeners: {allowed}\n")
    };
    format!(
        r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: istio
{allowed}  listeners:
  - {{name: web, port: 80, protocol: HTTP, hostname: example.com}}
"
    )
}

/// ListenerSet `namespace/name` on `infra/gw` with `listeners` (YAML flow list items).
fn listener_set(namespace: &str, name: &str, listeners: &str) -> String {
    format!(
        r"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRef: {{name: gw, namespace: infra}}
  listeners: [{listeners}]
"
    )
}

/// HTTPRoute `namespace/name` with one parentRef `parent` (YAML flow mapping).
fn route(namespace: &str, name: &str, parent: &str) -> String {
    format!(
        r"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRefs: [{parent}]
  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]
"
    )
}

fn object_status<'a>(
    all: &'a [super::super::ObjectStatus],
    kind: &str,
    name: &str,
) -> &'a GatewayStatus {
    let Status::Gateway(status) = status_of(all, kind, name) else {
        panic!("{kind} {name}: not a gateway-shaped status");
    };
    status
}

#[test]
fn an_admitted_listener_set_adds_listeners_routes_attach_to_through_it() {
    let yaml = gateway("{namespaces: {from: All}}")
        + &listener_set(
            "apps",
            "team-a",
            "{name: extra, port: 8080, protocol: HTTP}",
        )
        + &route(
            "apps",
            "through-set",
            "{kind: ListenerSet, name: team-a, sectionName: extra}",
        )
        + &route(
            "apps",
            "through-gateway",
            "{name: gw, namespace: infra, sectionName: extra}",
        );
    let all = statuses(&snapshot(&yaml));
    let set = object_status(&all, "ListenerSet", "team-a");
    assert_eq!(
        condition(&set.conditions, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(set.listeners.len(), 1);
    assert_eq!(set.listeners[0].name, "extra");
    assert_eq!(set.listeners[0].attached_routes, 1, "{set:#?}");
    let gateway = object_status(&all, "Gateway", "gw");
    assert_eq!(
        condition(&gateway.conditions, "AttachedListenerSets"),
        is("True", "ListenerSetsAttached")
    );
    assert_eq!(gateway.attached_listener_sets, Some(1));
    assert_eq!(
        gateway.listeners.len(),
        1,
        "the Gateway lists only its own listeners"
    );
    // allowedRoutes Same is the ListenerSet's namespace, and the parent is the ListenerSet
    assert_eq!(
        route_condition(&yaml, "through-set", 0, "Accepted"),
        is("True", "Accepted")
    );
    // a parentRef to the Gateway does not reach the ListenerSet's listeners
    assert_eq!(
        route_condition(&yaml, "through-gateway", 0, "Accepted"),
        is("False", "NoMatchingParent")
    );
    let gateway_ref = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some("infra".into()),
        name: "gw".into(),
    };
    let attachment = attach(&snapshot(&yaml), &gateway_ref).unwrap();
    let merged = &attachment.listeners[1];
    assert_eq!((merged.name.as_str(), merged.index), ("extra", 0));
    assert_eq!(
        merged.listener_set.as_ref().map(|s| s.name.as_str()),
        Some("team-a")
    );
    assert_eq!(merged.routes.len(), 1);
}

#[test]
fn allowed_listeners_admit_none_by_default_then_by_namespace() {
    let sets = listener_set(
        "apps",
        "team-a",
        "{name: extra, port: 8080, protocol: HTTP}",
    ) + &route("apps", "r", "{kind: ListenerSet, name: team-a}");
    for (allowed, admitted) in [
        ("", false),
        ("{namespaces: {from: None}}", false),
        ("{namespaces: {from: Same}}", false),
        (
            "{namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}",
            true,
        ),
        (
            "{namespaces: {from: Selector, selector: {matchLabels: {team: b}}}}",
            false,
        ),
        ("{namespaces: {from: All}}", true),
    ] {
        let yaml = gateway(allowed) + &sets;
        let all = statuses(&snapshot(&yaml));
        let set = object_status(&all, "ListenerSet", "team-a");
        let gateway = object_status(&all, "Gateway", "gw");
        let route = route_condition(&yaml, "r", 0, "Accepted");
        if admitted {
            assert_eq!(
                condition(&set.conditions, "Accepted"),
                is("True", "Accepted"),
                "{allowed}"
            );
            assert_eq!(route, is("True", "Accepted"), "{allowed}");
        } else {
            assert_eq!(
                condition(&set.conditions, "Accepted"),
                is("False", "NotAllowed"),
                "{allowed}"
            );
            assert_eq!(
                condition(&gateway.conditions, "AttachedListenerSets"),
                is("False", "ListenerSetsNotAllowed"),
                "{allowed}"
            );
            assert_eq!(route, is("False", "NoMatchingParent"), "{allowed}");
        }
    }
}

#[test]
fn a_listener_set_listener_conflicting_with_the_gateways_loses() {
    let yaml = gateway("{namespaces: {from: Same}}")
        + &listener_set(
            "infra",
            "more",
            "{name: same-host, port: 80, protocol: HTTP, hostname: example.com}, \
             {name: other-host, port: 80, protocol: HTTP, hostname: other.example.com}",
        );
    let all = statuses(&snapshot(&yaml));
    let set = object_status(&all, "ListenerSet", "more");
    let conflicted = |index: usize| condition(&set.listeners[index].conditions, "Conflicted");
    assert_eq!(conflicted(0), is("True", "HostnameConflict"));
    assert_eq!(conflicted(1), is("False", "NoConflicts"));
    assert_eq!(
        condition(&set.conditions, "Accepted"),
        is("True", "Accepted")
    );
    let gateway = object_status(&all, "Gateway", "gw");
    let own = condition(&gateway.listeners[0].conditions, "Conflicted");
    assert_eq!(own, is("False", "NoConflicts"));
}

#[test]
fn a_route_to_a_missing_listener_set_has_no_matching_parent() {
    let yaml = gateway("{namespaces: {from: All}}")
        + &route("apps", "r", "{kind: ListenerSet, name: nowhere}");
    assert_eq!(
        route_condition(&yaml, "r", 0, "Accepted"),
        is("False", "NoMatchingParent")
    );
}
