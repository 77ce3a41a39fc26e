//! Route attachment and route status: `Accepted` per parentRef, `ResolvedRefs` per route.

use super::super::{
    MESH_CONTROLLER, Status, WEFT_CONTROLLER, attach, gateway_controller, statuses,
};
use super::{is, route_condition, snapshot, status_of};
use crate::object::{Kind, ObjectRef};

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra, generation: 3}
spec:
  gatewayClassName: weft
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: all, port: 8000, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: team
    port: 9000
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}
"#;

/// The Gateway plus an HTTPRoute `r` in `namespace` with one parentRef and one backendRef.
fn route(namespace: &str, parent: &str, hostnames: &str, backend: &str) -> String {
    format!(
        r"{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: {namespace}}}
spec:
  parentRefs: [{parent}]
  hostnames: {hostnames}
  rules: [{{backendRefs: [{backend}]}}]
"
    )
}

const TO_HTTP: &str = "{name: gw, namespace: infra, sectionName: http}";
const HOSTS: &str = "[a.example.com]";
const WEB: &str = "{name: web, port: 8080}";

#[test]
fn builtin_and_explicit_classes_name_their_controller() {
    let snapshot = snapshot(
        r"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: edge}
spec: {controllerName: weft.dev/gateway}
",
    );
    assert_eq!(gateway_controller(&snapshot, "weft"), Some(WEFT_CONTROLLER));
    assert_eq!(gateway_controller(&snapshot, "edge"), Some(WEFT_CONTROLLER));
    // An explicit class named `istio` replaces the built-in one.
    assert_eq!(gateway_controller(&snapshot, "istio"), None);
    assert_eq!(gateway_controller(&snapshot, "istio-waypoint"), None);
    let all = statuses(&snapshot);
    let Status::GatewayClass(class) = status_of(&all, "GatewayClass", "edge") else {
        panic!("not a class status");
    };
    assert!(class.conditions[0].is_true());
    assert!(!all.iter().any(|s| s.metadata.name == "istio"));
}

#[test]
fn a_route_attaches_with_intersected_hostnames_and_is_accepted() {
    let yaml = route("infra", TO_HTTP, HOSTS, WEB);
    assert_eq!(
        route_condition(&yaml, "r", 0, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        route_condition(&yaml, "r", 0, "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let snapshot = snapshot(&yaml);
    let gateway = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some("infra".to_owned()),
        name: "gw".to_owned(),
    };
    let attachment = attach(&snapshot, &gateway).expect("weft runs gw");
    let http = &attachment.listeners[0];
    assert!(http.accepted);
    assert_eq!(http.routes.len(), 1);
    assert_eq!(http.routes[0].hostnames, ["a.example.com"]);
    assert!(attachment.listeners[1].routes.is_empty());
    let all = statuses(&snapshot);
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    assert_eq!(status.listeners[0].attached_routes, 1);
    assert_eq!(status.listeners[1].attached_routes, 0);
    assert_eq!(status.conditions[0].observed_generation, 3);
}

#[test]
fn a_parent_ref_naming_no_listener_or_gateway_is_no_matching_parent() {
    for parent in [
        "{name: gw, namespace: infra, sectionName: nope}",
        "{name: gw, namespace: infra, port: 81}",
        "{name: gw, namespace: infra, sectionName: http, port: 8000}",
        "{name: missing, namespace: infra}",
    ] {
        let yaml = route("infra", parent, HOSTS, WEB);
        assert_eq!(
            route_condition(&yaml, "r", 0, "Accepted"),
            is("False", "NoMatchingParent"),
            "{parent}"
        );
    }
}

#[test]
fn listeners_allow_routes_by_namespace_and_kind() {
    let from_apps =
        |parent: &str| route_condition(&route("apps", parent, "[]", WEB), "r", 0, "Accepted");
    // `Same` by default.
    assert_eq!(from_apps(TO_HTTP), is("False", "NotAllowedByListeners"));
    assert_eq!(
        from_apps("{name: gw, namespace: infra, sectionName: all}"),
        is("True", "Accepted")
    );
    // `apps` is labelled team=a; `kubernetes.io/metadata.name` is implied.
    assert_eq!(
        from_apps("{name: gw, namespace: infra, sectionName: team}"),
        is("True", "Accepted")
    );
    let named = GATEWAY.replace("{team: a}", "{kubernetes.io/metadata.name: apps}");
    let yaml = route(
        "apps",
        "{name: gw, namespace: infra, sectionName: team}",
        "[]",
        WEB,
    )
    .replace(GATEWAY, &named);
    assert_eq!(
        route_condition(&yaml, "r", 0, "Accepted"),
        is("True", "Accepted")
    );
    let tcp = format!(
        r"{GATEWAY}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: t, namespace: infra}}
spec:
  parentRefs: [{TO_HTTP}]
  rules: [{{backendRefs: [{WEB}]}}]
"
    );
    assert_eq!(
        route_condition(&tcp, "t", 0, "Accepted"),
        is("False", "NotAllowedByListeners")
    );
}

#[test]
fn hostnames_that_do_not_intersect_are_no_matching_listener_hostname() {
    let yaml = route("infra", TO_HTTP, "[a.example.org, example.com]", WEB);
    assert_eq!(
        route_condition(&yaml, "r", 0, "Accepted"),
        is("False", "NoMatchingListenerHostname")
    );
    // Without a sectionName the listeners without hostname accept it.
    let yaml = route(
        "infra",
        "{name: gw, namespace: infra}",
        "[a.example.org]",
        WEB,
    );
    assert_eq!(
        route_condition(&yaml, "r", 0, "Accepted"),
        is("True", "Accepted")
    );
}

#[test]
fn unresolved_backends_give_their_reason() {
    let cases = [
        ("{name: nope, port: 8080}", "BackendNotFound"),
        ("{name: web, port: 9999}", "BackendNotFound"),
        (
            "{name: web, namespace: apps, port: 8080}",
            "RefNotPermitted",
        ),
        ("{group: '', kind: ConfigMap, name: web}", "InvalidKind"),
    ];
    for (backend, reason) in cases {
        let yaml = route("infra", TO_HTTP, HOSTS, backend);
        assert_eq!(
            route_condition(&yaml, "r", 0, "ResolvedRefs"),
            is("False", reason),
            "{backend}"
        );
        // The route is still accepted by its parent.
        assert_eq!(
            route_condition(&yaml, "r", 0, "Accepted"),
            is("True", "Accepted")
        );
    }
    let granted = format!(
        r"{}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: infra-to-web, namespace: apps}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}}]
  to: [{{group: '', kind: Service, name: web}}]
",
        route(
            "infra",
            TO_HTTP,
            HOSTS,
            "{name: web, namespace: apps, port: 8080}"
        )
    );
    assert_eq!(
        route_condition(&granted, "r", 0, "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

#[test]
fn a_route_on_a_waypoint_is_accepted_by_the_mesh() {
    let yaml = r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: apps}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: waypoint}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
";
    assert_eq!(
        route_condition(yaml, "r", 0, "Accepted"),
        is("True", "Accepted")
    );
    let all = statuses(&snapshot(yaml));
    let Status::Route(route) = status_of(&all, "HTTPRoute", "r") else {
        panic!("not a route status");
    };
    assert_eq!(route.parents[0].controller_name, MESH_CONTROLLER);
    // The parentRef is echoed with its defaults filled in.
    let echoed = &route.parents[0].parent_ref;
    assert_eq!(echoed.group.as_deref(), Some("gateway.networking.k8s.io"));
    assert_eq!(echoed.kind.as_deref(), Some("Gateway"));
    assert_eq!(echoed.namespace.as_deref(), Some("apps"));
    assert_eq!(echoed.section_name, None);
    // Waypoints are not gateways: no Gateway status.
    assert!(!all.iter().any(|s| s.kind == "Gateway"));
}

#[test]
fn a_route_on_a_service_with_a_waypoint_is_accepted_by_the_mesh() {
    let yaml = r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: apps}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: apps, labels: {istio.io/use-waypoint: waypoint}}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{group: '', kind: Service, name: api}, {group: '', kind: Service, name: web}]
  rules: [{backendRefs: [{name: api, port: 80}]}]
";
    assert_eq!(
        route_condition(yaml, "r", 0, "Accepted"),
        is("True", "Accepted")
    );
    let all = statuses(&snapshot(yaml));
    let Status::Route(route) = status_of(&all, "HTTPRoute", "r") else {
        panic!("not a route status");
    };
    assert_eq!(route.parents.len(), 1, "web has no waypoint: not reported");
    assert_eq!(route.parents[0].controller_name, MESH_CONTROLLER);
}

#[test]
fn a_route_the_data_plane_rejects_is_unsupported_value_and_not_attached() {
    let yaml = route("infra", TO_HTTP, HOSTS, WEB);
    let snapshot = snapshot(&yaml);
    let rejected = |_: &crate::LoadedObject| Err("rules[0]: no such filter".to_owned());
    let all = super::super::statuses_with(&snapshot, &rejected);
    let Status::Route(route) = status_of(&all, "HTTPRoute", "r") else {
        panic!("not a route status");
    };
    let accepted = &route.parents[0].conditions[0];
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "UnsupportedValue")
    );
    assert!(accepted.message.contains("no such filter"), "{accepted:?}");
    let Status::Gateway(gateway) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    assert_eq!(gateway.listeners[0].attached_routes, 0);
}

#[test]
fn tls_and_tcp_routes_attach_to_listeners_of_their_protocol() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: infra}
spec:
  gatewayClassName: weft
  listeners:
  - {name: tls, port: 443, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}}
  - {name: tcp, port: 5432, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure, namespace: infra}
spec:
  parentRefs: [{name: l4}]
  hostnames: [db.example.com]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: raw, namespace: infra}
spec:
  parentRefs: [{name: l4, sectionName: tcp}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: misplaced, namespace: infra}
spec:
  parentRefs: [{name: l4, sectionName: tcp}]
  hostnames: [db.example.com]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#;
    assert_eq!(
        route_condition(yaml, "secure", 0, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        route_condition(yaml, "raw", 0, "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        route_condition(yaml, "misplaced", 0, "Accepted"),
        is("False", "NotAllowedByListeners")
    );
    let gateway = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some("infra".to_owned()),
        name: "l4".to_owned(),
    };
    let attachment = attach(&snapshot(yaml), &gateway).expect("weft runs l4");
    assert_eq!(attachment.listeners[0].kinds, [Kind::TlsRoute]);
    assert_eq!(
        attachment.listeners[0].routes[0].hostnames,
        ["db.example.com"]
    );
    assert_eq!(attachment.listeners[1].routes[0].route.name, "raw");
}

#[test]
fn a_request_mirror_to_a_missing_service_is_backend_not_found() {
    let mirror = |target: &str| {
        route("infra", TO_HTTP, HOSTS, WEB).replace(
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]",
            &format!(
                "  rules:\n  - backendRefs: [{{name: web, port: 8080}}]\n    filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: {target}, port: 8080}}}}}}]"
            ),
        )
    };
    assert_eq!(
        route_condition(&mirror("web"), "r", 0, "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    assert_eq!(
        route_condition(&mirror("shadow"), "r", 0, "ResolvedRefs"),
        is("False", "BackendNotFound")
    );
    let findings = crate::analyze(&snapshot(&mirror("shadow")));
    assert!(
        findings.iter().any(|f| f.message.starts_with(
            "spec.rules[0].filters[0].requestMirror.backendRef: Service infra/shadow does not exist"
        )),
        "{findings:#?}"
    );
}
