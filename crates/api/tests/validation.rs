//! `weft validate` on single objects: the upstream CRD bounds (ranges, list sizes, lengths,
//! patterns), findings on the line of the field they are about, misspelled top-level keys,
//! and the optional spec of an AuthorizationPolicy.

use std::path::Path;
use weft_api::{Code, Object, parse_manifests};

/// (code, line) of every finding for `text`.
fn findings(text: &str) -> Vec<(Code, usize)> {
    let result = parse_manifests(text, Path::new("t.yaml"));
    result
        .findings
        .iter()
        .map(|f| (f.code, f.source.line))
        .collect()
}

#[test]
fn a_negative_backend_weight_is_out_of_range_at_its_line() {
    let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - backendRefs:
    - {name: a, port: 80, weight: 2}
  - backendRefs:
    - name: b
      weight: -1
";
    let result = parse_manifests(text, Path::new("r.yaml"));
    let [finding] = result.findings.as_slice() else {
        panic!("{:#?}", result.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::OutOfRange, 10));
    assert_eq!(
        finding.message,
        "spec.rules[1].backendRefs[0].weight is -1; allowed: 0 to 1000000"
    );
}

/// One mistake per kind: a manifest and the (code, line) it must produce.
const MISTAKES: &[(&str, Code, usize)] = &[
    (
        "kind: HTTPRoute\nspec:\n  hostnames: [Shop.example.com]\n",
        Code::BadFormat,
        3,
    ),
    (
        "kind: HTTPRoute\nspec:\n  rules:\n  - matches:\n    - headers:\n      - {name: 'x:y', value: v}\n",
        Code::BadFormat,
        6,
    ),
    (
        "kind: GRPCRoute\nspec:\n  rules:\n  - backendRefs:\n    - {name: a, port: 0}\n",
        Code::PortOutOfRange,
        5,
    ),
    (
        "kind: TLSRoute\nspec:\n  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: a, port: 443}]\n  - backendRefs: [{name: b, port: 443}]\n",
        Code::BadItemCount,
        4,
    ),
    (
        "kind: TCPRoute\nspec:\n  rules:\n  - backendRefs: []\n",
        Code::BadItemCount,
        4,
    ),
    (
        "kind: Gateway\nspec:\n  gatewayClassName: weft\n  listeners:\n  - {name: Web, port: 80, protocol: HTTP}\n",
        Code::BadFormat,
        5,
    ),
    (
        "kind: Gateway\nspec:\n  gatewayClassName: weft\n  listeners:\n  - name: web\n    port: 80\n    protocol: 'HTTP 2'\n",
        Code::BadFormat,
        7,
    ),
    (
        "kind: ReferenceGrant\nspec:\n  from:\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: Front}\n  to:\n  - {group: '', kind: Service}\n",
        Code::BadFormat,
        4,
    ),
    (
        "kind: AuthorizationPolicy\nspec:\n  targetRefs:\n  - kind: Gateway\n    name: ''\n",
        Code::BadLength,
        5,
    ),
    (
        "kind: PeerAuthentication\nspec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    70000: {mode: DISABLE}\n",
        Code::PortOutOfRange,
        6,
    ),
    (
        "kind: ServiceEntry\nspec:\n  hosts: [api.example.com]\n  ports:\n  - {number: 443, name: https, protocol: TLS, targetPort: 0}\n",
        Code::PortOutOfRange,
        5,
    ),
    (
        "kind: WorkloadEntry\nspec:\n  address: 10.0.0.1\n  ports:\n    http_web: 8080\n",
        Code::BadFormat,
        5,
    ),
];

/// `apiVersion` and `metadata` for a kind's snippet.
fn manifest(snippet: &str) -> String {
    let kind = snippet
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("kind: "))
        .unwrap();
    let api_version = match kind {
        "AuthorizationPolicy" | "PeerAuthentication" => "security.istio.io/v1",
        "ServiceEntry" | "WorkloadEntry" => "networking.istio.io/v1",
        "TCPRoute" => "gateway.networking.k8s.io/v1alpha2",
        "ReferenceGrant" => "gateway.networking.k8s.io/v1beta1",
        _ => "gateway.networking.k8s.io/v1",
    };
    format!("apiVersion: {api_version}\nmetadata: {{name: x, namespace: ns}}\n{snippet}")
}

#[test]
fn upstream_bounds_of_every_gateway_api_and_istio_kind_are_applied() {
    for (snippet, code, line) in MISTAKES {
        let text = manifest(snippet);
        // Two header lines come first.
        assert_eq!(findings(&text), [(*code, line + 2)], "{text}");
    }
}

#[test]
fn values_within_the_bounds_pass() {
    let text = manifest(
        "kind: HTTPRoute\nspec:\n  parentRefs: [{name: gw, sectionName: web, port: 80}]\n  hostnames: ['*.example.com']\n  rules:\n  - timeouts: {request: 1s500ms}\n    matches: [{headers: [{name: X-User, value: a}]}]\n    backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 1000000}]\n",
    );
    assert_eq!(findings(&text), []);
    // rules is optional upstream: an empty list is as valid as none
    let empty = manifest("kind: HTTPRoute\nspec:\n  parentRefs: [{name: gw}]\n  rules: []\n");
    assert_eq!(findings(&empty), []);
}

#[test]
fn a_misspelled_top_level_key_is_reported_at_its_line_with_a_hint() {
    let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
sepc:
  rules: []
";
    let result = parse_manifests(text, Path::new("r.yaml"));
    let [finding] = result.findings.as_slice() else {
        panic!("{:#?}", result.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::UnknownField, 5));
    assert!(
        finding
            .message
            .contains("unknown field \"sepc\" in top level of HTTPRoute; did you mean \"spec\"?"),
        "{}",
        finding.message
    );
    assert_eq!(
        finding.object.as_ref().map(ToString::to_string).as_deref(),
        Some("HTTPRoute/default/r")
    );
}

#[test]
fn an_authorization_policy_without_spec_loads_as_an_empty_policy() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: shop\n";
    let result = parse_manifests(text, Path::new("p.yaml"));
    assert!(result.findings.is_empty(), "{:#?}", result.findings);
    let [loaded] = result.objects.as_slice() else {
        panic!("{:#?}", result.objects)
    };
    let Object::AuthorizationPolicy(policy) = &loaded.object else {
        panic!("{:?}", loaded.object)
    };
    assert_eq!(
        policy.spec,
        weft_api::istio::AuthorizationPolicySpec::default()
    );
    // With the typo, the policy still loads, and the typo is an error.
    let typo = format!("{text}sepc: {{action: DENY}}\n");
    assert_eq!(findings(&typo), [(Code::UnknownField, 6)]);
}

#[test]
fn problems_in_list_items_point_into_the_item() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: a}
  spec:
    parentRefs:
    - name: gw
      port: 0
";
    assert_eq!(findings(text), [(Code::PortOutOfRange, 10)]);
}

#[test]
fn l4_routes_are_read_at_every_served_version_with_that_versions_bounds() {
    let route = |api_version: &str, kind: &str, spec: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/{api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"
        )
    };
    let one_rule = "  rules:\n  - backendRefs: [{name: db, port: 5432}]\n";
    let two_rules =
        "  rules:\n  - backendRefs: [{name: a, port: 1}]\n  - backendRefs: [{name: b, port: 2}]\n";
    for (version, kind) in [
        ("v1", "TCPRoute"),
        ("v1", "UDPRoute"),
        ("v1alpha2", "TCPRoute"),
    ] {
        let text = route(version, kind, one_rule);
        assert_eq!(findings(&text), [], "{text}");
    }
    // v1 TCPRoute has one rule; v1alpha2 had up to 16.
    assert_eq!(
        findings(&route("v1", "TCPRoute", two_rules)),
        [(Code::BadItemCount, 5)]
    );
    assert_eq!(findings(&route("v1alpha2", "TCPRoute", two_rules)), []);
    // v1alpha3 TLSRoute requires hostnames (v1alpha2 did not).
    let no_hostnames = "  rules:\n  - backendRefs: [{name: a, port: 443}]\n";
    assert_eq!(
        findings(&route("v1alpha3", "TLSRoute", no_hostnames)),
        [(Code::MissingField, 5)]
    );
    assert_eq!(findings(&route("v1alpha2", "TLSRoute", no_hostnames)), []);
}
