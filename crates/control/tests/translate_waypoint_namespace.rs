//! A waypoint of another namespace (`istio.io/use-waypoint-namespace`) serves a namespace only
//! if its HBONE listener's `allowedRoutes.namespaces` allows it (Same by default), as in
//! Istio; a refused binding leaves the service without a waypoint, with a translation
//! warning and an analyze finding.

use weft_api::{Code, ConfigSnapshot, LoadedObject, analyze, parse_manifests};
use weft_control::translate::{Output, ResourceKey, TranslateOptions, translate};
use weft_proto::workload::{Address, address};

/// Namespace `a` sends its services to waypoint `b/waypoint`; Service `a/api`.
const USER: &str = r"
apiVersion: v1
kind: Namespace
metadata:
  name: a
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: waypoint
    istio.io/use-waypoint-namespace: b
    team: shop
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  clusterIP: 10.96.7.7
  selector: {app: api}
  ports: [{name: http, port: 80}]
";

/// Waypoint `b/waypoint` whose HBONE listener has `allowed_routes` (YAML, may be empty).
fn waypoint(allowed_routes: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: b}}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
{allowed_routes}"
    )
}

const ALLOW_ALL: &str = "    allowedRoutes: {namespaces: {from: All}}";
const ALLOW_SELECTED: &str =
    "    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: shop}}}}";

fn objects(allowed_routes: &str) -> Vec<LoadedObject> {
    [USER, &waypoint(allowed_routes)]
        .iter()
        .flat_map(|text| {
            let parsed = parse_manifests(text, "waypoint-namespace.yaml".as_ref());
            assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
            parsed.objects
        })
        .collect()
}

/// The waypoint namespace of service `a/api`, if bound, and its warnings.
fn api_waypoint(output: &Output) -> (Option<String>, Vec<String>) {
    let key = ResourceKey::address("a/api.a.svc.cluster.local");
    let address: Address = output.get(&key).expect("service a/api").decode().unwrap();
    let Some(address::Type::Service(service)) = address.r#type else {
        panic!("not a service: {address:?}");
    };
    let waypoint = service.waypoint.map(|w| format!("{w:?}"));
    let warnings = output.warnings.get(&key).into_iter().flatten();
    (waypoint, warnings.map(ToString::to_string).collect())
}

#[test]
fn a_waypoint_of_another_namespace_without_allowed_routes_is_not_used() {
    let snapshot = ConfigSnapshot::new(objects(""));
    let (waypoint, warnings) = api_waypoint(&translate(&snapshot, &TranslateOptions::default()));
    assert_eq!(waypoint, None);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("b/waypoint") && w.contains("does not allow namespace a")),
        "{warnings:#?}"
    );
    let findings = analyze(&snapshot);
    let refused: Vec<_> = findings
        .iter()
        .filter(|f| f.code == Code::WaypointNamespaceNotAllowed)
        .collect();
    assert_eq!(refused.len(), 1, "{findings:#?}");
    assert_eq!(refused[0].object.as_ref().unwrap().name, "a");
}

#[test]
fn a_waypoint_allowing_all_or_selected_namespaces_is_used() {
    for allowed_routes in [ALLOW_ALL, ALLOW_SELECTED] {
        let snapshot = ConfigSnapshot::new(objects(allowed_routes));
        let (bound, warnings) = api_waypoint(&translate(&snapshot, &TranslateOptions::default()));
        let bound = bound.expect("bound to the waypoint");
        assert!(bound.contains("waypoint.b.svc.cluster.local"), "{bound}");
        assert!(warnings.is_empty(), "{warnings:#?}");
        let findings = analyze(&snapshot);
        assert!(
            findings
                .iter()
                .all(|f| f.code != Code::WaypointNamespaceNotAllowed),
            "{findings:#?}"
        );
    }
}
