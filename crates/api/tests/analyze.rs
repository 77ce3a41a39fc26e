//! `weft analyze` / `weft validate` findings on the bundled examples and on the deliberate
//! mistakes in `examples/broken/`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use weft_api::{Code, Severity, analyze_paths, validate_paths};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

#[test]
fn bundled_examples_analyze_clean_and_spread_pods_over_both_nodes() {
    let report = analyze_paths(&[repo_path("examples")]);
    let problems: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(!report.has_errors());
    assert!(report.objects >= 20, "{} objects", report.objects);
    // broken/ is skipped because examples/.weftignore lists it, and that is said.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == Code::IgnoredPath && f.message.contains("broken"))
    );

    let loaded = weft_api::load_paths(&[repo_path("examples")]);
    let pods = weft_api::ConfigSnapshot::new(loaded.objects).pods();
    let nodes: BTreeSet<_> = pods.iter().filter_map(|p| p.node_name()).collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["node-a", "node-b"]);
    assert!(
        pods.iter().all(|p| p.ip().is_some()),
        "every example pod has an IP"
    );
}

/// Every file of examples/broken/ and the one finding (code, line) it must produce.
const BROKEN: &[(&str, Code, usize)] = &[
    ("yaml-syntax.yaml", Code::YamlSyntax, 7),
    ("wrong-type.yaml", Code::WrongType, 9),
    ("missing-field.yaml", Code::MissingField, 8),
    ("missing-container-name.yaml", Code::MissingField, 9),
    ("invalid-enum.yaml", Code::InvalidEnum, 9),
    ("port-out-of-range.yaml", Code::PortOutOfRange, 10),
    ("bad-cidr.yaml", Code::BadCidr, 12),
    ("bad-label-selector.yaml", Code::BadLabelSelector, 10),
    ("duplicate.yaml", Code::DuplicateObject, 8),
    ("unknown-field.yaml", Code::UnknownField, 8),
    ("misspelled-spec.yaml", Code::UnknownField, 7),
    ("out-of-range.yaml", Code::OutOfRange, 12),
    ("bad-item-count.yaml", Code::BadItemCount, 9),
    ("bad-length.yaml", Code::BadLength, 15),
    ("bad-format.yaml", Code::BadFormat, 10),
    (
        "policy-selector-and-targetrefs.yaml",
        Code::PolicySelectorAndTargetRefs,
        11,
    ),
    (
        "policy-l7-without-waypoint.yaml",
        Code::PolicyL7WithoutWaypoint,
        14,
    ),
    (
        "policy-principal-spiffe-scheme.yaml",
        Code::PolicyPrincipalScheme,
        17,
    ),
    (
        "peerauth-port-not-exposed.yaml",
        Code::PeerAuthPortNotExposed,
        2,
    ),
    (
        "peerauth-namespace-conflict.yaml",
        Code::PeerAuthNamespaceConflict,
        11,
    ),
    // Reference findings point at the reference (parentRefs[0], backendRefs[0]).
    ("route-parent-not-found.yaml", Code::RouteParentNotFound, 9),
    (
        "route-backend-not-found.yaml",
        Code::RouteBackendNotFound,
        12,
    ),
    (
        "route-cross-namespace-no-grant.yaml",
        Code::RouteCrossNamespaceNoGrant,
        12,
    ),
    (
        "service-selects-no-pods.yaml",
        Code::ServiceSelectsNoPods,
        2,
    ),
    ("waypoint-not-found.yaml", Code::WaypointNotFound, 2),
    (
        "service-address-conflict.yaml",
        Code::ServiceAddressConflict,
        2,
    ),
    (
        "workload-address-conflict.yaml",
        Code::WorkloadAddressConflict,
        16,
    ),
    (
        "service-entry-without-address.yaml",
        Code::ServiceEntryWithoutAddress,
        6,
    ),
    (
        "service-entry-endpoint-label-ignored.yaml",
        Code::ServiceEntryEndpointLabelIgnored,
        15,
    ),
    (
        "waypoint-namespace-not-allowed.yaml",
        Code::WaypointNamespaceNotAllowed,
        2,
    ),
    // Gateway API status reasons, on the listener or parentRef/backendRef concerned.
    (
        "route-parent-not-allowed.yaml",
        Code::RouteParentNotAllowed,
        9,
    ),
    (
        "route-no-matching-hostname.yaml",
        Code::RouteNoMatchingHostname,
        9,
    ),
    (
        "route-backend-invalid-kind.yaml",
        Code::RouteBackendInvalidKind,
        12,
    ),
    (
        "gateway-listener-not-accepted.yaml",
        Code::GatewayListenerNotAccepted,
        13,
    ),
    (
        "gateway-listener-conflicted.yaml",
        Code::GatewayListenerConflicted,
        13,
    ),
    (
        "gateway-listener-refs-not-resolved.yaml",
        Code::GatewayListenerRefsNotResolved,
        10,
    ),
    (
        "gateway-refs-not-resolved.yaml",
        Code::GatewayRefsNotResolved,
        11,
    ),
];

#[test]
fn each_broken_example_reports_exactly_its_mistake_with_file_and_line() {
    let report = analyze_paths(&[repo_path("examples/broken")]);
    assert!(report.has_errors());
    let found: BTreeSet<(String, Code, usize)> = report
        .findings
        .iter()
        .filter(|f| f.code != Code::PolicyEnforcement)
        .map(|f| {
            (
                f.source
                    .file
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                f.code,
                f.source.line,
            )
        })
        .collect();
    let expected: BTreeSet<(String, Code, usize)> = BROKEN
        .iter()
        .map(|(file, code, line)| ((*file).to_owned(), *code, *line))
        .collect();
    assert_eq!(found, expected);
    let files = std::fs::read_dir(repo_path("examples/broken")).unwrap();
    let yaml_files = files
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert_eq!(
        yaml_files,
        BROKEN.len(),
        "every broken example is listed in this test"
    );
}

#[test]
fn each_broken_file_names_its_expected_code_in_its_first_comment() {
    for (file, code, _) in BROKEN {
        let text = std::fs::read_to_string(repo_path("examples/broken").join(file)).unwrap();
        assert!(
            text.lines().next().unwrap().contains(code.as_str()),
            "{file} should say it expects {code}"
        );
    }
}

#[test]
fn text_output_has_the_documented_columns_and_json_has_the_same_findings() {
    let report = analyze_paths(&[repo_path("examples/broken/port-out-of-range.yaml")]);
    let expected_file = repo_path("examples/broken/port-out-of-range.yaml");
    assert_eq!(
        report.to_text(),
        format!(
            "error  port-out-of-range  Service/broken-ports/big-port  {}:10  port 70000 is out of range 1-65535\n",
            expected_file.display()
        )
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["code"], "port-out-of-range");
    assert_eq!(json[0]["object"], "Service/broken-ports/big-port");
    assert_eq!(json[0]["line"], 10);
}

#[test]
fn validate_checks_objects_alone_and_analyze_adds_references() {
    let file = repo_path("examples/broken/route-parent-not-found.yaml");
    assert!(
        !validate_paths(std::slice::from_ref(&file)).has_errors(),
        "the route is valid on its own"
    );
    assert!(analyze_paths(&[file]).has_errors());
    let duplicate = validate_paths(&[repo_path("examples/broken/duplicate.yaml")]);
    assert_eq!(
        duplicate
            .findings
            .iter()
            .map(|f| f.code)
            .collect::<Vec<_>>(),
        [Code::DuplicateObject]
    );
}

#[test]
fn finding_codes_are_unique_and_documented() {
    let codes: BTreeSet<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), Code::ALL.len());
    let readme = std::fs::read_to_string(repo_path("crates/api/README.md")).unwrap();
    for code in Code::ALL {
        assert!(
            readme.contains(&format!("`{}`", code.as_str())),
            "{code} missing from crates/api/README.md"
        );
    }
}

#[test]
fn istio_and_gateway_api_style_manifests_validate_with_no_finding_and_cover_every_kind() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let report = validate_paths(std::slice::from_ref(&data));
    assert!(report.findings.is_empty(), "{}", report.to_text());
    let loaded = weft_api::load_paths(&[data]);
    let kinds: BTreeSet<_> = loaded.objects.iter().map(|o| o.object.kind()).collect();
    let missing: Vec<_> = weft_api::Kind::ALL
        .iter()
        .filter(|k| !kinds.contains(k))
        .collect();
    assert!(missing.is_empty(), "test data lacks {missing:?}");
}

#[test]
fn typos_in_gateway_api_kinds_are_caught_with_a_hint() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n  rules:\n  - backendRef:\n    - name: svc\n";
    let result = weft_api::parse_manifests(text, std::path::Path::new("r.yaml"));
    let [finding] = result.findings.as_slice() else {
        panic!("{:?}", result.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::UnknownField, 7));
    assert!(
        finding.message.contains("did you mean \"backendRefs\""),
        "{}",
        finding.message
    );
}

#[test]
fn original_client_addresses_in_a_node_enforced_policy_are_reported_as_l7() {
    let text = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: office-only, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
    when: [{key: remote.ip, notValues: ["10.1.0.0/16"]}]
"#;
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("policy.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let findings = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let l7: Vec<&str> = findings
        .iter()
        .filter(|f| f.code == Code::PolicyL7WithoutWaypoint)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(l7.len(), 2, "{findings:#?}");
    assert!(
        l7[0].contains("rule 0 uses L7 fields (remoteIpBlocks)"),
        "{}",
        l7[0]
    );
    assert!(
        l7[1].contains("rule 1 uses L7 fields (when: remote.ip)"),
        "{}",
        l7[1]
    );
    let lines: Vec<usize> = findings
        .iter()
        .filter(|f| f.code != Code::PolicyEnforcement)
        .map(|f| f.source.line)
        .collect();
    assert_eq!(lines, [8, 9], "each finding on the line of its rule");
}

#[test]
fn a_policy_target_that_does_not_exist_is_reported_on_its_own_line() {
    let text = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs:
  - {kind: Service, group: "", name: missing}
  rules: [{}]
"#;
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("policy.yaml"));
    let findings = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let found: Vec<(Code, usize)> = findings.iter().map(|f| (f.code, f.source.line)).collect();
    assert_eq!(
        found,
        [
            (Code::PolicyTargetNotFound, 6),
            (Code::PolicyEnforcement, 1)
        ],
        "{findings:#?}"
    );
    let says = &findings[1].message;
    assert_eq!(says, "not enforced: Service shop/missing does not exist");
}

#[test]
fn principals_written_with_the_spiffe_scheme_are_flagged_where_written() {
    let text = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/shop/sa/web, "spiffe://cluster.local/ns/shop/sa/api"]
        notPrincipals: ["spiffe://cluster.local/ns/ops/*"]
    when:
    - {key: "request.headers[x-id]", values: ["spiffe://not-a-principal"]}
    - key: source.principal
      notValues: ["spiffe://cluster.local/ns/shop/sa/admin"]
"#;
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("p.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    assert_eq!(loaded.objects.len(), 1);
    let report = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let flagged: Vec<(usize, &str)> = report
        .iter()
        .filter(|f| f.code == Code::PolicyPrincipalScheme)
        .map(|f| (f.source.line, f.message.as_str()))
        .collect();
    assert_eq!(
        flagged.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        [9, 10, 14],
        "{report:#?}"
    );
    assert!(
        flagged[0]
            .1
            .contains("write \"cluster.local/ns/shop/sa/api\""),
        "{}",
        flagged[0].1
    );
}

#[test]
fn workload_entries_conflict_only_with_addresses_on_their_network() {
    let text = r#"apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: ops}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: a, image: a}]}
status: {podIP: 192.0.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop}
spec: {nodeName: n1, containers: [{name: a, image: a}]}
status: {podIP: 10.244.0.5}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: on-the-node, namespace: shop}
spec: {address: 192.0.2.10}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: remote, namespace: shop}
spec: {address: 10.244.0.5, network: west}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: remote-twin, namespace: shop}
spec: {address: 10.244.0.5, network: west}
"#;
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("w.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let report = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let conflicts: Vec<_> = report
        .iter()
        .filter(|f| f.code == Code::WorkloadAddressConflict)
        .collect();
    // A host-network pod shares its node's address by design; "remote" is on another
    // network than the pod; its twin on the same network is the one conflict.
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    assert_eq!(
        conflicts[0].object.as_ref().map(|o| o.name.as_str()),
        Some("remote-twin")
    );
    assert!(
        conflicts[0].message.contains("WorkloadEntry/shop/remote"),
        "{}",
        conflicts[0].message
    );
}

#[test]
fn a_service_backed_by_workload_entries_has_endpoints() {
    let text = r#"apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec: {selector: {app: legacy}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec: {selector: {app: nobody}, ports: [{port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop, labels: {app: legacy}}
spec: {address: 192.0.2.20}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: other}
spec: {address: 192.0.2.21, labels: {app: nobody}}
"#;
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("s.yaml"));
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let report = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let without: Vec<&str> = report
        .iter()
        .filter(|f| f.code == Code::ServiceSelectsNoPods)
        .filter_map(|f| f.object.as_ref().map(|o| o.name.as_str()))
        .collect();
    // A WorkloadEntry of another namespace does not back the service.
    assert_eq!(without, ["empty"]);
}

/// A ServiceEntry without addresses is reported unless a route sends to it (by entry name
/// or by host): a gateway or waypoint route needs no VIP.
#[test]
fn an_entry_without_addresses_is_reported_unless_a_route_sends_to_it() {
    let entry = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner, namespace: shop}
spec:
  hosts: [api.partner.example]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
";
    let route = |kind: &str, name: &str| {
        format!(
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: to-partner, namespace: shop}}
spec:
  rules:
  - backendRefs: [{{group: networking.istio.io, kind: {kind}, name: {name}, port: 443}}]
"
        )
    };
    let codes = |text: &str| -> Vec<Code> {
        let loaded = weft_api::parse_manifests(text, "entries.yaml".as_ref());
        let snapshot = weft_api::ConfigSnapshot::new(loaded.objects);
        let findings = weft_api::analyze(&snapshot).into_iter().map(|f| f.code);
        findings
            .filter(|c| *c == Code::ServiceEntryWithoutAddress)
            .collect()
    };
    assert_eq!(codes(entry), [Code::ServiceEntryWithoutAddress]);
    let by_name = format!("{entry}{}", route("ServiceEntry", "partner"));
    assert!(codes(&by_name).is_empty(), "routed by entry name");
    let by_host = format!("{entry}{}", route("Hostname", "api.partner.example"));
    assert!(codes(&by_host).is_empty(), "routed by host");
}
