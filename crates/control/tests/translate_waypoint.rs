//! The `weft.l7.v1.Waypoint` resource: bound services with their ports and attached
//! routes (backends resolved or `unresolved` with the Gateway API reason), policies and
//! JWT rules attached with targetRefs, bound workloads; and incremental edits that keep it
//! equal to a full translation.

use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderMap;
use weft_api::{ConfigSnapshot, Kind, LoadedObject, Object, ObjectRef, load_paths};
use weft_control::translate::{ResourceKey, TranslateOptions, Translator, translate};
use weft_policy::{CompiledPolicy, ConnectionFacts, PolicySet, RequestFacts, Transport, Verdict};
use weft_proto::WAYPOINT_TYPE_URL;
use weft_proto::l7::{Protocol, Service, Waypoint, route};

const REVIEWS: &str = "shop/reviews.shop.svc.cluster.local";
const RATINGS: &str = "shop/ratings.shop.svc.cluster.local";

fn service<'w>(waypoint: &'w Waypoint, key: &str) -> &'w Service {
    let found = waypoint.services.iter().find(|s| s.key == key);
    found.unwrap_or_else(|| panic!("{key} in {:?}", waypoint.services))
}

fn objects() -> Vec<LoadedObject> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/waypoint-mesh");
    let loaded = load_paths(&[dir]);
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    loaded.objects
}

fn waypoint_of(objects: Vec<LoadedObject>) -> (Waypoint, Vec<String>) {
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    let key = ResourceKey::waypoint("shop/waypoint");
    let waypoint = output
        .get(&key)
        .expect("the waypoint resource")
        .decode()
        .unwrap();
    let warnings = output.warnings.get(&key).into_iter().flatten();
    (waypoint, warnings.map(ToString::to_string).collect())
}

#[test]
fn services_of_the_waypoint_carry_ports_and_protocols() {
    let (waypoint, _) = waypoint_of(objects());
    let keys: Vec<&str> = waypoint.services.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            RATINGS,
            "shop/reviews-v1.shop.svc.cluster.local",
            "shop/reviews-v2.shop.svc.cluster.local",
            REVIEWS,
        ]
    );
    let reviews = service(&waypoint, REVIEWS);
    let ports: Vec<(u32, u32, Protocol)> = reviews
        .ports
        .iter()
        .map(|p| (p.port, p.target_port, p.protocol()))
        .collect();
    assert_eq!(
        ports,
        [
            (9080, 9080, Protocol::Http),
            (9090, 9090, Protocol::Tcp),
            (8080, 18080, Protocol::Detect),
        ]
    );
    let ratings = service(&waypoint, RATINGS);
    assert_eq!(ratings.ports[0].protocol(), Protocol::Http2);
    assert_eq!(waypoint.workloads, ["Kubernetes//Pod/shop/reviews-v1-0"]);
}

#[test]
fn routes_are_attached_with_resolved_and_unresolved_backends() {
    let (waypoint, warnings) = waypoint_of(objects());
    assert!(
        warnings.iter().any(|w| w.contains("jwksUri")),
        "{warnings:?}"
    );
    let reviews = service(&waypoint, REVIEWS);
    let [route] = reviews.routes.as_slice() else {
        panic!("{:?}", reviews.routes)
    };
    assert_eq!((route.name.as_str(), route.port), ("reviews-split", 9080));
    let split: Vec<(&str, u32)> = route.rules[0]
        .backends
        .iter()
        .map(|b| (b.service.as_str(), b.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("shop/reviews-v1.shop.svc.cluster.local", 90),
            ("shop/reviews-v2.shop.svc.cluster.local", 10),
        ]
    );
    let reasons: Vec<&str> = route.rules[1]
        .backends
        .iter()
        .map(|b| b.unresolved.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        ["BackendNotFound", "RefNotPermitted", "InvalidKind"]
    );
    let ratings = &waypoint.services[0].routes;
    assert_eq!(ratings[0].kind(), route::Kind::Grpc);
    assert_eq!(
        ratings[0].rules[0].backends[0].service,
        waypoint.services[0].key
    );
}

#[test]
fn a_reference_grant_opens_the_cross_namespace_backend() {
    let grant = r"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-to-vault, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: '', kind: Service}]
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(grant, "grant.yaml".as_ref()).objects);
    let (waypoint, _) = waypoint_of(objects);
    let backend = &service(&waypoint, REVIEWS).routes[0].rules[1].backends[1];
    assert_eq!(backend.service, "other/vault.other.svc.cluster.local");
    assert_eq!(backend.unresolved, "");
}

#[test]
fn a_consumer_route_without_backend_refs_sends_to_its_parent_service_on_each_port() {
    let route = r"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: add-header, namespace: front}
spec:
  parentRefs: [{kind: Service, group: '', name: reviews, namespace: shop}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Header-Set, value: set}]}
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(route, "consumer.yaml".as_ref()).objects);
    let (waypoint, warnings) = waypoint_of(objects);
    assert!(
        !warnings.iter().any(|w| w.contains("add-header")),
        "{warnings:?}"
    );
    let copies: Vec<(u32, Vec<(String, u32)>)> = service(&waypoint, REVIEWS)
        .routes
        .iter()
        .filter(|r| r.namespace == "front")
        .map(|r| {
            let backends = r.rules[0].backends.iter();
            (
                r.port,
                backends.map(|b| (b.service.clone(), b.port)).collect(),
            )
        })
        .collect();
    let to_reviews = |port: u32| (port, vec![(REVIEWS.to_owned(), port)]);
    assert_eq!(
        copies,
        [to_reviews(8080), to_reviews(9080), to_reviews(9090)]
    );
}

fn facts() -> ConnectionFacts {
    ConnectionFacts {
        source_identity: weft_identity::SpiffeId::parse_uri_or_principal(
            "cluster.local/ns/shop/sa/web",
        )
        .ok(),
        source_ip: "10.244.1.9".parse().unwrap(),
        destination: "10.244.1.5:9080".parse().unwrap(),
        transport: Transport::Hbone,
    }
}

#[test]
fn policies_attach_to_the_waypoint_or_a_service_and_keep_their_l7_rules() {
    let (waypoint, _) = waypoint_of(objects());
    let attached: Vec<(String, Vec<String>)> = waypoint
        .policies
        .iter()
        .map(|p| (p.policy.as_ref().unwrap().name.clone(), p.services.clone()))
        .collect();
    assert_eq!(
        attached,
        [
            ("deny-admin".to_owned(), vec![]),
            ("reviews-get".to_owned(), vec![REVIEWS.to_owned()]),
        ]
    );
    let compiled = waypoint.policies.iter().map(|p| {
        let wire = p.policy.as_ref().unwrap();
        let name = format!("{}/{}", wire.namespace, wire.name);
        Arc::new(CompiledPolicy::compile(Some(&name), wire).unwrap())
    });
    let set = PolicySet::new(compiled, vec![]);
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    let request = |method: &'static str, path: &'static str| RequestFacts {
        method,
        host: "reviews.shop.svc.cluster.local",
        path,
        headers: &headers,
        request_principal: None,
        remote_ip: "10.244.1.9".parse().unwrap(),
    };
    let verdict = |r: RequestFacts<'_>| set.evaluate_with(&facts(), Some(&r)).outcome.verdict;
    assert_eq!(verdict(request("GET", "/api/1")), Verdict::Allow);
    assert_eq!(verdict(request("POST", "/api/1")), Verdict::Deny);
    assert_eq!(verdict(request("GET", "/admin/users")), Verdict::Deny);
}

#[test]
fn jwt_rules_attach_to_the_service_with_their_keys() {
    let (waypoint, _) = waypoint_of(objects());
    let rules: Vec<(&str, &str, &[String])> = waypoint
        .jwt_rules
        .iter()
        .map(|r| (r.issuer.as_str(), r.jwks.as_str(), r.services.as_slice()))
        .collect();
    let reviews = [REVIEWS.to_owned()];
    assert_eq!(
        rules,
        [
            (
                "https://issuer.example.com",
                r#"{"keys": []}"#,
                &reviews[..]
            ),
            ("https://remote.example.com", "", &reviews[..]),
        ]
    );
    assert_eq!(waypoint.jwt_rules[0].from_headers[0].name, "x-token");
    assert_eq!(waypoint.jwt_rules[0].source, "shop/reviews-jwt");
}

/// Edits an object in place; `false` removes it.
type Edit = dyn Fn(&mut Object) -> bool;

/// A copy of `objects` with `target` edited (or removed when `edit` returns false).
fn edited(
    objects: &[LoadedObject],
    target: &ObjectRef,
    edit: impl Fn(&mut Object) -> bool,
) -> Vec<LoadedObject> {
    let out: Vec<LoadedObject> = objects
        .iter()
        .filter_map(|loaded| {
            let mut copy = loaded.clone();
            let keep = loaded.object.object_ref() != *target || edit(&mut copy.object);
            keep.then_some(copy)
        })
        .collect();
    out
}

fn object(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some("shop".to_owned()),
        name: name.to_owned(),
    }
}

#[test]
fn edits_update_the_waypoint_as_a_full_translation_would() {
    let options = TranslateOptions::default();
    let key = ResourceKey::waypoint("shop/waypoint");
    let mut current = objects();
    let mut translator = Translator::new(options.clone());
    translator.full(&ConfigSnapshot::new(current.clone()));
    let unlabel = |o: &mut Object| {
        o.metadata_mut().labels = Some([("istio.io/use-waypoint".into(), "none".into())].into());
        true
    };
    let edits: Vec<(&str, ObjectRef, Box<Edit>)> = vec![
        (
            "route removed",
            object(Kind::HttpRoute, "reviews-split"),
            Box::new(|_| false),
        ),
        (
            "policy removed",
            object(Kind::AuthorizationPolicy, "deny-admin"),
            Box::new(|_| false),
        ),
        (
            "jwt removed",
            object(Kind::RequestAuthentication, "reviews-jwt"),
            Box::new(|_| false),
        ),
        (
            "service opted out",
            object(Kind::Service, "reviews-v2"),
            Box::new(unlabel),
        ),
        (
            "pod removed",
            object(Kind::Pod, "reviews-v1-0"),
            Box::new(|_| false),
        ),
    ];
    for (what, target, edit) in edits {
        let next = edited(&current, &target, edit);
        let change = translator.update(
            &ConfigSnapshot::new(current.clone()),
            &ConfigSnapshot::new(next.clone()),
        );
        assert!(change.updated.contains(&key), "{what}: {change:?}");
        let full = translate(&ConfigSnapshot::new(next.clone()), &options);
        assert_eq!(translator.output().get(&key), full.get(&key), "{what}");
        assert_eq!(
            translator.output().of_type(WAYPOINT_TYPE_URL).len(),
            1,
            "{what}"
        );
        current = next;
    }
    let waypoint: Waypoint = translator.output().get(&key).unwrap().decode().unwrap();
    assert!(waypoint.policies.iter().all(|p| p.services == [REVIEWS]));
    assert!(waypoint.jwt_rules.is_empty() && waypoint.workloads.is_empty());
    assert!(waypoint.services.iter().all(|s| s.routes.len() <= 1));
}

#[test]
fn adding_a_route_or_policy_later_reaches_the_waypoint() {
    let options = TranslateOptions::default();
    let key = ResourceKey::waypoint("shop/waypoint");
    let before: Vec<LoadedObject> = objects()
        .into_iter()
        .filter(|o| !matches!(o.object.kind(), Kind::HttpRoute | Kind::AuthorizationPolicy))
        .collect();
    let mut translator = Translator::new(options.clone());
    translator.full(&ConfigSnapshot::new(before.clone()));
    let after = objects();
    let change = translator.update(
        &ConfigSnapshot::new(before),
        &ConfigSnapshot::new(after.clone()),
    );
    assert!(change.updated.contains(&key), "{change:?}");
    let full = translate(&ConfigSnapshot::new(after), &options);
    assert_eq!(translator.output().get(&key), full.get(&key));
}

#[test]
fn a_gateway_of_another_class_is_no_waypoint() {
    let mut objects = objects();
    for loaded in &mut objects {
        if let Object::Gateway(gateway) = &mut loaded.object {
            gateway.spec.gateway_class_name = "istio".into();
        }
    }
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    assert!(output.of_type(WAYPOINT_TYPE_URL).is_empty());
}

fn with_gateway_annotation(value: &str) -> Vec<LoadedObject> {
    let mut objects = objects();
    for loaded in &mut objects {
        if let Object::Gateway(gateway) = &mut loaded.object {
            let annotations = [("proxy.istio.io/config".to_owned(), value.to_owned())];
            gateway.metadata.annotations = Some(annotations.into());
        }
    }
    objects
}

#[test]
fn trusted_proxies_come_from_the_gateway_proxy_config() {
    let (waypoint, _) = waypoint_of(objects());
    assert_eq!(waypoint.trusted_hops, 0);
    let annotated = with_gateway_annotation("gatewayTopology:\n  numTrustedProxies: 2\n");
    assert_eq!(waypoint_of(annotated).0.trusted_hops, 2);
    let (waypoint, warnings) = waypoint_of(with_gateway_annotation("{gatewayTopology: [}"));
    assert_eq!(waypoint.trusted_hops, 0);
    assert!(
        warnings.iter().any(|w| w.contains("proxy.istio.io/config")),
        "{warnings:?}"
    );
}

#[test]
fn conditions_the_waypoint_cannot_evaluate_are_warned_about() {
    let extra = r"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: claims, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: '', name: reviews}]
  rules: [{when: [{key: 'request.auth.claims[group]', values: [admin]}]}]
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(extra, "claims.yaml".as_ref()).objects);
    let (_, warnings) = waypoint_of(objects);
    let warned: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("request.auth.claims[group]"))
        .collect();
    assert_eq!(warned.len(), 1, "{warnings:?}");
    assert!(warned[0].contains("matches nothing"), "{warned:?}");
}

#[test]
fn a_rejected_route_is_left_out_with_a_warning_naming_its_field() {
    let bad = r"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: reviews-v2}]
  rules:
  - matches: [{path: {type: RegularExpression, value: '('}}]
    backendRefs: [{name: reviews-v2, port: 9080}]
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(bad, "bad.yaml".as_ref()).objects);
    let (waypoint, warnings) = waypoint_of(objects);
    let v2 = service(&waypoint, "shop/reviews-v2.shop.svc.cluster.local");
    assert!(v2.routes.is_empty(), "{:?}", v2.routes);
    let warned: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("bad-regex"))
        .collect();
    assert_eq!(warned.len(), 1, "{warnings:?}");
    assert!(
        warned[0].contains("spec.rules[0].matches[0].path"),
        "{warned:?}"
    );
}

#[test]
fn a_root_namespace_policy_on_the_waypoint_class_applies_to_every_waypoint() {
    let mesh_wide = r"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-trace, namespace: istio-system}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint}]
  action: DENY
  rules: [{to: [{operation: {methods: [TRACE]}}]}]
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(mesh_wide, "mesh.yaml".as_ref()).objects);
    let (waypoint, _) = waypoint_of(objects);
    let policy = waypoint
        .policies
        .iter()
        .find(|p| p.policy.as_ref().is_some_and(|a| a.name == "no-trace"))
        .expect("the mesh-wide policy");
    assert!(policy.services.is_empty());
}

#[test]
fn jwt_rules_the_waypoint_would_reject_are_warned_about() {
    let broken = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: broken-keys, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  jwtRules:
  - issuer: https://broken.example.com
    jwks: '{"keys": [{"kty": "RSA", "n": "!", "e": "AQAB"}]}'
"#;
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(broken, "broken.yaml".as_ref()).objects);
    let (waypoint, warnings) = waypoint_of(objects);
    assert!(
        waypoint
            .jwt_rules
            .iter()
            .any(|r| r.source == "shop/broken-keys" && r.services.is_empty())
    );
    let warned: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("broken-keys"))
        .collect();
    assert_eq!(warned.len(), 1, "{warnings:?}");
    assert!(warned[0].contains("rejected with 401"), "{warned:?}");
}

#[test]
fn a_service_entry_in_the_namespace_is_bound_with_its_ports() {
    let entry = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  addresses: [240.0.0.10]
  ports: [{number: 443, name: https, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
";
    let mut objects = objects();
    objects.extend(weft_api::parse_manifests(entry, "entry.yaml".as_ref()).objects);
    let (waypoint, _) = waypoint_of(objects);
    let payments = service(&waypoint, "shop/payments.example.com");
    assert_eq!(payments.name, "payments");
    let ports: Vec<(u32, Protocol)> = payments
        .ports
        .iter()
        .map(|p| (p.port, p.protocol()))
        .collect();
    assert_eq!(ports, [(443, Protocol::Tcp), (80, Protocol::Http)]);
}
