//! Table tests for policy translation: L4 fields, wildcards, the fail-safe rules for L7
//! fields, scopes, skipped policies, and PeerAuthentication compiled to DENY policies.

use serde_json::{Value, json};
use std::path::Path;
use weft_api::istio::AuthorizationPolicy;
use weft_api::{ConfigSnapshot, parse_manifests};
use weft_control::translate::{
    AUTHORIZATION, Output, TranslateOptions, pod_uid, translate, translate_authorization_policy,
};
use weft_proto::ADDRESS_TYPE_URL;
use weft_proto::workload::{Address, address};

struct Case {
    name: &'static str,
    policy: &'static str,
    /// Expected proto JSON, or `None` when the policy must not be sent.
    expected: Option<Value>,
    /// Fragments that must appear, in order, in the warnings (one fragment per warning).
    warnings: &'static [&'static str],
}

fn policy(yaml: &str) -> AuthorizationPolicy {
    let header = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n";
    weft_api::yaml::from_str(&format!("{header}{yaml}")).expect("test policy parses")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "principal and namespace wildcards become prefix/suffix/presence matches; a spiffe:// principal is kept as written (it never matches, as in Istio)",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  selector: {matchLabels: {app: a}}
  rules:
  - from:
    - source:
        principals: ["*", "cluster.local/ns/web/*", "*/sa/admin", "spiffe://cluster.local/ns/x/sa/y"]
        notNamespaces: ["test-*"]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "WORKLOAD_SELECTOR",
                "rules": [{"clauses": [{"matches": [{
                    "principals": [
                        {"presence": {}}, {"prefix": "cluster.local/ns/web/"},
                        {"suffix": "/sa/admin"}, {"exact": "spiffe://cluster.local/ns/x/sa/y"}],
                    "notNamespaces": [{"prefix": "test-"}]
                }]}]}]
            })),
            warnings: &[],
        },
        Case {
            name: "L4 source, operation and when fields map to matches; each list is a clause",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  action: ALLOW
  rules:
  - from:
    - source: {ipBlocks: ["10.0.0.0/8", "192.0.2.1"], serviceAccounts: ["web", "ops/admin"]}
    - source: {notIpBlocks: ["fd00::/64"]}
    to:
    - operation: {ports: ["80", "443"], notPorts: ["8080"]}
    when:
    - {key: destination.ip, values: ["10.96.0.1"]}
    - {key: source.namespace, notValues: ["legacy"]}
    - {key: destination.port, values: ["9090"]}
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE",
                "rules": [{"clauses": [
                    {"matches": [
                        {"sourceIps": [{"address": "CgAAAA==", "length": 8}, {"address": "wAACAQ==", "length": 32}],
                         "serviceAccounts": [{"namespace": "shop", "serviceAccount": "web"},
                                             {"namespace": "ops", "serviceAccount": "admin"}]},
                        {"notSourceIps": [{"address": "/QAAAAAAAAAAAAAAAAAAAA==", "length": 64}]}]},
                    {"matches": [{"destinationPorts": [80, 443], "notDestinationPorts": [8080]}]},
                    {"matches": [{"destinationIps": [{"address": "CmAAAQ==", "length": 32}]}]},
                    {"matches": [{"notNamespaces": [{"exact": "legacy"}]}]},
                    {"matches": [{"destinationPorts": [9090]}]}
                ]}]
            })),
            warnings: &[],
        },
        Case {
            name: "ALLOW rule with an L7 field is dropped, the other rule stays",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  rules:
  - from: [{source: {namespaces: ["web"]}}]
  - to: [{operation: {methods: ["GET"], ports: ["80"]}}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE",
                "rules": [{"clauses": [{"matches": [{"namespaces": [{"exact": "web"}]}]}]}]
            })),
            warnings: &["ALLOW rule 1 dropped: rules[1].to[0].operation.methods (an L7 attribute)"],
        },
        Case {
            name: "ALLOW policy whose every rule needs L7 becomes allow-nothing (zero rules)",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  selector: {matchLabels: {app: a}}
  rules:
  - from: [{source: {requestPrincipals: ["issuer/subject"]}}]
  - when: [{key: "request.headers[x-user]", values: ["alice"]}]
"#,
            expected: Some(json!({"name": "p", "namespace": "shop", "scope": "WORKLOAD_SELECTOR"})),
            warnings: &[
                "ALLOW rule 0 dropped: rules[0].from[0].source.requestPrincipals (an L7 attribute)",
                "ALLOW rule 1 dropped: rules[1].when[0] (key request.headers[x-user]) (not an L4 attribute)",
                "allows nothing",
            ],
        },
        Case {
            name: "DENY rule with L7 fields is widened to its L4 part",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/web/sa/web"], requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/admin"], ports: ["8080"]}}]
    when: [{key: "request.auth.claims[group]", values: ["guest"]}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE", "action": "DENY",
                "rules": [{"clauses": [
                    {"matches": [{"principals": [{"exact": "cluster.local/ns/web/sa/web"}]}]},
                    {"matches": [{"destinationPorts": [8080]}]}
                ]}]
            })),
            warnings: &[
                "DENY rule 0 widened to its L4 part: ignored rules[0].from[0].source.requestPrincipals (an L7 attribute), rules[0].to[0].operation.paths (an L7 attribute), rules[0].when[0] (key request.auth.claims[group]) (not an L4 attribute)",
            ],
        },
        Case {
            name: "remoteIpBlocks is the original client (L7): an ALLOW rule using it is dropped",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  rules:
  - from: [{source: {remoteIpBlocks: ["192.0.2.1"]}}]
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
    when: [{key: remote.ip, values: ["192.0.2.0/24"]}]
"#,
            expected: Some(json!({"name": "p", "namespace": "shop", "scope": "NAMESPACE"})),
            warnings: &[
                "ALLOW rule 0 dropped: rules[0].from[0].source.remoteIpBlocks (an L7 attribute)",
                "ALLOW rule 1 dropped: rules[1].when[0] (key remote.ip) (not an L4 attribute)",
                "allows nothing",
            ],
        },
        Case {
            name: "a DENY rule loses its notRemoteIpBlocks constraint and keeps the peer ipBlocks",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8"], notRemoteIpBlocks: ["192.0.2.1"]}}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE", "action": "DENY",
                "rules": [{"clauses": [{"matches": [{"sourceIps": [{"address": "CgAAAA==", "length": 8}]}]}]}]
            })),
            warnings: &[
                "DENY rule 0 widened to its L4 part: ignored rules[0].from[0].source.notRemoteIpBlocks (an L7 attribute)",
            ],
        },
        Case {
            name: "DENY rule that is only L7 widens to deny everything (a rule without clauses)",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: ["DELETE"]}}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE", "action": "DENY", "rules": [{}]
            })),
            warnings: &["DENY rule 0 widened"],
        },
        Case {
            name: "unparseable port in an ALLOW rule drops the rule (fail safe)",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  rules:
  - to: [{operation: {ports: ["http"]}}]
"#,
            expected: Some(json!({"name": "p", "namespace": "shop", "scope": "NAMESPACE"})),
            warnings: &["\"http\" is not a port number", "allows nothing"],
        },
        Case {
            name: "root namespace without selector is GLOBAL",
            policy: r#"
metadata: {name: p, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "istio-system", "action": "DENY",
                "rules": [{"clauses": [{"matches": [{"notPrincipals": [{"presence": {}}]}]}]}]
            })),
            warnings: &[],
        },
        Case {
            name: "root namespace with selector is WORKLOAD_SELECTOR",
            policy: r#"
metadata: {name: p, namespace: istio-system}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{}]
"#,
            expected: Some(json!({
                "name": "p", "namespace": "istio-system", "scope": "WORKLOAD_SELECTOR", "rules": [{}]
            })),
            warnings: &[],
        },
        Case {
            name: "empty spec is allow-nothing without warnings",
            policy: "metadata: {name: p, namespace: shop}\nspec: {}\n",
            expected: Some(json!({"name": "p", "namespace": "shop", "scope": "NAMESPACE"})),
            warnings: &[],
        },
        Case {
            name: "dry-run annotation",
            policy: r#"
metadata: {name: p, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
"#,
            expected: Some(json!({
                "name": "p", "namespace": "shop", "scope": "NAMESPACE", "action": "DENY",
                "rules": [{}], "dryRun": true
            })),
            warnings: &[],
        },
        Case {
            name: "AUDIT is skipped",
            policy: "metadata: {name: p, namespace: shop}\nspec: {action: AUDIT, rules: [{}]}\n",
            expected: None,
            warnings: &["action AUDIT is not enforced"],
        },
        Case {
            name: "CUSTOM is skipped",
            policy: "metadata: {name: p, namespace: shop}\nspec: {action: CUSTOM, provider: {name: ext}, rules: [{}]}\n",
            expected: None,
            warnings: &["action CUSTOM"],
        },
        Case {
            name: "targetRefs policies are for waypoints only",
            policy: r#"
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{}]
"#,
            expected: None,
            warnings: &["applies only at the waypoint"],
        },
    ]
}

#[test]
fn authorization_policy_table() {
    let options = TranslateOptions::default();
    for case in cases() {
        let translated = translate_authorization_policy(&policy(case.policy), &options);
        let rendered = translated
            .authorization
            .as_ref()
            .map(|a| weft_proto::to_json("istio.security.Authorization", a).expect("renders"));
        assert_eq!(rendered, case.expected, "case: {}", case.name);
        let messages: Vec<&str> = translated
            .warnings
            .iter()
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(
            messages.len(),
            case.warnings.len(),
            "case: {}: warnings {messages:#?}",
            case.name
        );
        for (message, fragment) in messages.iter().zip(case.warnings) {
            assert!(
                message.contains(fragment),
                "case: {}: {message:?} lacks {fragment:?}",
                case.name
            );
        }
        for warning in &translated.warnings {
            assert_eq!(warning.object.name, "p", "warnings name the policy");
        }
    }
}

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: tool, namespace: tools, labels: {app: tool}}
status: {podIP: 10.0.0.3}
"#;

fn translate_with(extra: &str) -> Output {
    let text = format!("{PODS}\n---\n{extra}");
    let loaded = parse_manifests(&text, Path::new("test.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    translate(
        &ConfigSnapshot::new(loaded.objects),
        &TranslateOptions::default(),
    )
}

fn policies_of(output: &Output, namespace: &str, pod: &str) -> Vec<String> {
    let uid = pod_uid("Kubernetes", namespace, pod);
    let address: Address = output.of_type(ADDRESS_TYPE_URL)[&uid]
        .decode()
        .expect("an Address");
    match address.r#type.as_ref() {
        Some(address::Type::Workload(workload)) => workload.authorization_policies.clone(),
        _ => panic!("{uid} is not a workload"),
    }
}

fn authorization_json(output: &Output, name: &str) -> Value {
    let resource = output
        .of_type(AUTHORIZATION.type_url)
        .get(name)
        .unwrap_or_else(|| panic!("{name} exists"));
    AUTHORIZATION.render(&resource.encoded).expect("renders")
}

fn peer_authn(name: &str, namespace: &str, body: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"
    )
}

#[test]
fn mesh_strict_applies_to_every_workload() {
    let output = translate_with(&peer_authn(
        "mesh",
        "istio-system",
        "  mtls: {mode: STRICT}",
    ));
    for (namespace, pod) in [("shop", "db"), ("shop", "web"), ("tools", "tool")] {
        assert_eq!(
            policies_of(&output, namespace, pod),
            ["istio-system/weft-mtls-strict"]
        );
    }
    assert_eq!(
        authorization_json(&output, "istio-system/weft-mtls-strict"),
        json!({
            "name": "weft-mtls-strict", "namespace": "istio-system", "scope": "WORKLOAD_SELECTOR",
            "action": "DENY",
            "rules": [{"clauses": [{"matches": [{"notPrincipals": [{"presence": {}}]}]}]}]
        })
    );
}

#[test]
fn namespace_permissive_overrides_mesh_strict() {
    let config = [
        peer_authn("mesh", "istio-system", "  mtls: {mode: STRICT}"),
        peer_authn("default", "shop", "  mtls: {mode: PERMISSIVE}"),
    ]
    .join("---\n");
    let output = translate_with(&config);
    assert!(policies_of(&output, "shop", "db").is_empty());
    assert_eq!(
        policies_of(&output, "tools", "tool"),
        ["istio-system/weft-mtls-strict"]
    );
}

#[test]
fn workload_port_level_mtls_makes_port_exceptions() {
    let config = [
        peer_authn("default", "shop", "  mtls: {mode: STRICT}"),
        peer_authn(
            "db-metrics",
            "shop",
            "  selector: {matchLabels: {app: db}}\n  portLevelMtls:\n    9090: {mode: DISABLE}\n    15020: {mode: PERMISSIVE}",
        ),
    ]
    .join("---\n");
    let output = translate_with(&config);
    assert_eq!(
        policies_of(&output, "shop", "db"),
        ["istio-system/weft-mtls-strict-except-9090-15020"]
    );
    assert_eq!(
        policies_of(&output, "shop", "web"),
        ["istio-system/weft-mtls-strict"]
    );
    assert!(
        policies_of(&output, "tools", "tool").is_empty(),
        "no PeerAuthentication reaches tools"
    );
    let except = authorization_json(&output, "istio-system/weft-mtls-strict-except-9090-15020");
    assert_eq!(
        except["rules"],
        json!([{"clauses": [{"matches": [{
            "notPrincipals": [{"presence": {}}], "notDestinationPorts": [9090, 15020]
        }]}]}])
    );
}

#[test]
fn a_disable_port_of_a_workload_inheriting_strict_opens_only_beside_a_permissive_one() {
    // Istio's ambient mode: a workload whose own mode is UNSET under an inherited STRICT
    // gets ports opened only when one entry is PERMISSIVE; DISABLE alone leaves it STRICT.
    let config = [
        peer_authn("default", "shop", "  mtls: {mode: STRICT}"),
        peer_authn(
            "db-metrics",
            "shop",
            "  selector: {matchLabels: {app: db}}\n  portLevelMtls:\n    9090: {mode: DISABLE}",
        ),
        peer_authn(
            "web-metrics",
            "shop",
            "  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    9090: {mode: DISABLE}",
        ),
    ]
    .join("---\n");
    let output = translate_with(&config);
    assert_eq!(
        policies_of(&output, "shop", "db"),
        ["istio-system/weft-mtls-strict"],
        "DISABLE alone under UNSET inherits STRICT"
    );
    assert_eq!(
        policies_of(&output, "shop", "web"),
        ["istio-system/weft-mtls-strict-except-9090"],
        "under a mode of its own, DISABLE is PERMISSIVE"
    );
}

#[test]
fn strict_port_on_permissive_workload_denies_only_that_port() {
    let config = peer_authn(
        "db",
        "shop",
        "  selector: {matchLabels: {app: db}}\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls:\n    5432: {mode: STRICT}",
    );
    let output = translate_with(&config);
    assert_eq!(
        policies_of(&output, "shop", "db"),
        ["istio-system/weft-mtls-strict-only-5432"]
    );
    assert!(policies_of(&output, "shop", "web").is_empty());
    let only = authorization_json(&output, "istio-system/weft-mtls-strict-only-5432");
    assert_eq!(
        only["rules"],
        json!([{"clauses": [{"matches": [{"notPrincipals": [{"presence": {}}], "destinationPorts": [5432]}]}]}])
    );
}

#[test]
fn selector_policies_are_listed_on_selected_workloads_only() {
    let config = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-only, namespace: shop}
spec: {selector: {matchLabels: {app: db}}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: any-tool, namespace: istio-system}
spec: {selector: {matchLabels: {app: tool}}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: whole-namespace, namespace: shop}
spec: {rules: [{}]}
"#;
    let output = translate_with(config);
    assert_eq!(policies_of(&output, "shop", "db"), ["shop/db-only"]);
    assert!(
        policies_of(&output, "shop", "web").is_empty(),
        "namespace policies are not listed"
    );
    assert_eq!(
        policies_of(&output, "tools", "tool"),
        ["istio-system/any-tool"]
    );
}

#[test]
fn port_level_mtls_counts_only_on_selector_policies_outside_the_root_namespace() {
    let config = [
        peer_authn(
            "default",
            "istio-system",
            "  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}",
        ),
        peer_authn(
            "root-selector",
            "istio-system",
            "  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    9090: {mode: DISABLE}",
        ),
        peer_authn(
            "default",
            "tools",
            "  mtls: {mode: STRICT}\n  portLevelMtls:\n    7070: {mode: DISABLE}",
        ),
    ]
    .join("---\n");
    // Istio rejects portLevelMtls without a selector; translation must not open the ports
    // anyway when such objects reach it.
    let loaded = parse_manifests(&format!("{PODS}\n---\n{config}"), Path::new("test.yaml"));
    let output = translate(
        &ConfigSnapshot::new(loaded.objects),
        &TranslateOptions::default(),
    );
    for (namespace, pod) in [("shop", "db"), ("shop", "web"), ("tools", "tool")] {
        assert_eq!(
            policies_of(&output, namespace, pod),
            ["istio-system/weft-mtls-strict"],
            "{namespace}/{pod}"
        );
    }
    let names: Vec<&String> = output.of_type(AUTHORIZATION.type_url).keys().collect();
    assert_eq!(names, ["istio-system/weft-mtls-strict"]);
}

/// Istio's ambient mode ignores a PeerAuthentication with a selector in the root namespace:
/// it must not open plaintext to the workloads it selects there.
#[test]
fn a_selector_peer_authentication_in_the_root_namespace_is_ignored() {
    let exporter = "apiVersion: v1\nkind: Pod\nmetadata: {name: exporter, namespace: istio-system, labels: {app: exporter}}\nstatus: {podIP: 10.0.0.9}\n";
    let config = [
        peer_authn("mesh", "istio-system", "  mtls: {mode: STRICT}"),
        peer_authn(
            "exporter",
            "istio-system",
            "  selector: {matchLabels: {app: exporter}}\n  mtls: {mode: PERMISSIVE}",
        ),
        exporter.to_owned(),
    ]
    .join("---\n");
    let output = translate_with(&config);
    assert_eq!(
        policies_of(&output, "istio-system", "exporter"),
        ["istio-system/weft-mtls-strict"]
    );
}

/// Two namespace-wide PeerAuthentications: the older one applies (as Istio), whatever
/// their names; without timestamps (files), the first by name.
#[test]
fn of_two_namespace_peer_authentications_the_older_one_applies() {
    let dated = |name: &str, created: &str, mode: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\"}}\nspec:\n  mtls: {{mode: {mode}}}\n"
        )
    };
    let config = [
        dated("strict", "2024-01-01T00:00:00Z", "STRICT"),
        dated("allow-plain", "2025-06-01T00:00:00Z", "PERMISSIVE"),
    ]
    .join("---\n");
    let output = translate_with(&config);
    assert_eq!(
        policies_of(&output, "shop", "db"),
        ["istio-system/weft-mtls-strict"],
        "the older STRICT one, although allow-plain sorts first"
    );
}
