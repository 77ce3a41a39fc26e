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

/// `listener_set` written as the experimental channel's `XListenerSet`.
fn x_listener_set(namespace: &str, name: &str, listeners: &str) -> String {
    listener_set(namespace, name, listeners).replace(
        "gateway.networking.k8s.io/v1\nkind: ListenerSet",
        "gateway.networking.x-k8s.io/v1alpha1\nkind: XListenerSet",
    )
}

#[test]
fn an_experimental_x_listener_set_is_read_like_a_listener_set() {
    let yaml = gateway("{namespaces: {from: All}}")
        + &x_listener_set(
            "apps",
            "team-x",
            "{name: extra, port: 8080, protocol: HTTP}",
        )
        + &route(
            "apps",
            "through-x",
            "{group: gateway.networking.x-k8s.io, kind: XListenerSet, name: team-x, sectionName: extra}",
        )
        + &route("apps", "wrong-kind", "{kind: ListenerSet, name: team-x}");
    let all = statuses(&snapshot(&yaml));
    let set = object_status(&all, "XListenerSet", "team-x");
    assert_eq!(
        condition(&set.conditions, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(set.listeners[0].attached_routes, 1, "{set:#?}");
    let document = all.iter().find(|s| s.kind == "XListenerSet").unwrap();
    assert_eq!(document.api_version, "gateway.networking.x-k8s.io/v1alpha1");
    let gateway = object_status(&all, "Gateway", "gw");
    assert_eq!(gateway.attached_listener_sets, Some(1));
    assert_eq!(
        route_condition(&yaml, "through-x", 0, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        route_condition(&yaml, "wrong-kind", 0, "Accepted"),
        is("False", "NoMatchingParent"),
        "a ListenerSet parent does not name an XListenerSet"
    );
}

/// A ReferenceGrant in `certs` for Secrets, from `kind` (group `group`) of namespace `apps`.
fn grant(group: &str, kind: &str) -> String {
    format!(
        r"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: from-{kind}, namespace: certs}}
spec:
  from: [{{group: {group}, kind: {kind}, namespace: apps}}]
  to: [{{group: '', kind: Secret}}]
"
    )
}

/// GEP-1713: a listener of a ListenerSet uses a Secret of another namespace only when a
/// ReferenceGrant there names the ListenerSet's own kind (a grant to Gateways does not
/// reach ListenerSets, one to ListenerSets not XListenerSets).
#[test]
fn a_listener_set_certificate_across_namespaces_needs_a_grant_to_its_kind() {
    let listeners = "{name: tls, port: 443, protocol: HTTPS, hostname: a.example.com, \
        tls: {certificateRefs: [{name: cert, namespace: certs}]}}";
    let base = gateway("{namespaces: {from: All}}")
        + "---\n"
        + &super::listeners::secret("certs", "kubernetes.io/tls")
        + &listener_set("apps", "team-a", listeners)
        + &x_listener_set("apps", "team-x", listeners.replace("443", "8443").as_str());
    let gateway_api = "gateway.networking.k8s.io";
    for (grants, standard, experimental) in [
        (grant(gateway_api, "Gateway"), "False", "False"),
        (grant(gateway_api, "ListenerSet"), "True", "False"),
        (
            grant("gateway.networking.x-k8s.io", "XListenerSet"),
            "False",
            "True",
        ),
    ] {
        let all = statuses(&snapshot(&(base.clone() + &grants)));
        for (kind, name, expected) in [
            ("ListenerSet", "team-a", standard),
            ("XListenerSet", "team-x", experimental),
        ] {
            let set = object_status(&all, kind, name);
            let resolved = condition(&set.listeners[0].conditions, "ResolvedRefs");
            let reason = if expected == "True" {
                "ResolvedRefs"
            } else {
                "RefNotPermitted"
            };
            assert_eq!(resolved, is(expected, reason), "{kind} with {grants}");
        }
    }
}
