//! `weft analyze` says which proxy enforces each AuthorizationPolicy and RequestAuthentication
//! (an info finding `policy-enforcement` per object).

use std::collections::BTreeMap;
use std::path::Path;
use weft_api::{Code, ConfigSnapshot, Severity, analyze, parse_manifests};

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {ports: [{port: 80}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l4, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {namespaces: [shop]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-waypoint, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-service, namespace: shop}
spec:
  targetRefs: [{group: '', kind: Service, name: reviews}]
  rules: [{to: [{operation: {paths: [/api/*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-ingress, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: ingress}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: shop}
spec:
  gatewayClassName: someone-else
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-foreign, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: foreign}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-legacy, namespace: shop}
spec:
  targetRefs: [{group: '', kind: Service, name: legacy}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: every-waypoint, namespace: istio-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{group: '', kind: Service, name: reviews}]
  jwtRules: [{issuer: example, jwks: '{"keys": []}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-selector, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: example}]
"#;

#[test]
fn each_policy_says_which_proxy_enforces_it() {
    let loaded = parse_manifests(MESH, Path::new("mesh.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let findings = analyze(&ConfigSnapshot::new(loaded.objects));
    let said: BTreeMap<String, String> = findings
        .iter()
        .filter(|f| f.code == Code::PolicyEnforcement)
        .map(|f| {
            assert_eq!(f.severity, Severity::Info);
            (f.object.as_ref().unwrap().name.clone(), f.message.clone())
        })
        .collect();
    let expect = [
        (
            "l4",
            "enforced by node proxies (L4) on workloads labelled app=reviews in shop",
        ),
        (
            "at-waypoint",
            "enforced by waypoint shop/waypoint (L7, as written)",
        ),
        (
            "at-service",
            "enforced by waypoint shop/waypoint for Service shop/reviews (L7, as written)",
        ),
        (
            "at-ingress",
            "enforced by gateway shop/ingress (L7, as written)",
        ),
        (
            "at-foreign",
            "not enforced: Gateway shop/foreign is of class \"someone-else\", which weft does not run",
        ),
        (
            "at-legacy",
            "not enforced: Service shop/legacy has no waypoint",
        ),
        (
            "jwt",
            "JWT rules enforced by waypoint shop/waypoint for Service shop/reviews",
        ),
        (
            "jwt-selector",
            "not enforced: weft checks JWTs only at waypoints",
        ),
        (
            "every-waypoint",
            "enforced by every waypoint if istio-system is the root",
        ),
    ];
    for (name, start) in expect {
        let message = &said[name];
        assert!(message.starts_with(start), "{name}: {message}");
    }
    // A policy attached to a waypoint is not reported as losing its L7 rules, and the
    // built-in waypoint class needs no GatewayClass object.
    let problems: Vec<_> = findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .filter(|f| f.object.as_ref().is_some_and(|o| o.name != "at-legacy"))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_dry_run_policy_says_it_never_decides() {
    let text = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: trial
  namespace: shop
  annotations: {istio.io/dry-run: "True"}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{from: [{source: {namespaces: [legacy]}}]}]
"#;
    let loaded = parse_manifests(text, Path::new("trial.yaml"));
    let findings = analyze(&ConfigSnapshot::new(loaded.objects));
    let said = findings
        .iter()
        .find(|f| f.code == Code::PolicyEnforcement)
        .expect("an enforcement finding");
    assert!(
        said.message.starts_with("enforced by node proxies (L4)")
            && said.message.contains("dry run (istio.io/dry-run)"),
        "{}",
        said.message
    );
}
