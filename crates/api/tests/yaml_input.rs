//! The YAML reader as a config author meets it: findings on the line of their field in flow
//! style and after repeated structures, a repeated key refused naming both lines, documents
//! of a file placed on their own lines, anchors and block scalars read, and an alias bomb
//! refused by its bound instead of expanded.

use std::path::Path;
use std::time::{Duration, Instant};
use weft_api::{Code, parse_manifests};

/// (code, line) of every finding of `text`.
fn findings(text: &str) -> Vec<(Code, usize)> {
    parse_manifests(text, Path::new("t.yaml"))
        .findings
        .iter()
        .map(|f| (f.code, f.source.line))
        .collect()
}

#[test]
fn a_field_in_flow_style_is_reported_on_its_own_line() {
    let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: a, port: 80},
    {name: b, port: 80, weight: -1}]}]}
";
    assert_eq!(findings(text), [(Code::OutOfRange, 5)]);
}

#[test]
fn an_unknown_field_after_a_repeated_structure_is_placed_at_its_own_key() {
    // the same keys appear in both rules; the typo is in the second one
    let text = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: a, port: 80}]
  - backendRefs: [{name: a, port: 80, wieght: 1}]
";
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    let [finding] = &loaded.findings[..] else {
        panic!("{:?}", loaded.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::UnknownField, 8));
    assert!(
        finding.message.contains("did you mean \"weight\""),
        "{finding}"
    );
}

#[test]
fn a_repeated_key_is_refused_naming_both_lines() {
    let text = "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: first
  labels: {app: a}
  name: second
";
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    assert!(loaded.objects.is_empty());
    let [finding] = &loaded.findings[..] else {
        panic!("{:?}", loaded.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::DuplicateKey, 6));
    assert!(
        finding
            .message
            .contains("\"name\" is repeated (first at line 4 column 3)"),
        "{finding}"
    );
    // also in flow style, with the columns of both keys
    let flow = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, name: b}\n";
    let loaded = parse_manifests(flow, Path::new("t.yaml"));
    assert_eq!(loaded.findings[0].code, Code::DuplicateKey);
    assert!(
        loaded.findings[0]
            .message
            .contains("(first at line 3 column 12) (column 21)"),
        "{}",
        loaded.findings[0]
    );
}

#[test]
fn each_document_of_a_file_is_placed_on_its_own_lines() {
    let text = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: a}
---
# a comment
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}, {port: 70000}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: b, nmae: x}
";
    assert_eq!(
        findings(text),
        [(Code::PortOutOfRange, 10), (Code::UnknownField, 14)]
    );
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    let lines: Vec<usize> = loaded.objects.iter().map(|o| o.source.line).collect();
    assert_eq!(lines, [1, 6, 12]);
}

#[test]
fn anchors_aliases_and_block_scalars_are_read() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: c
  labels: &labels {app: web, tier: front}
  annotations: *labels
data:
  script: |
    echo one
    echo two
  folded: >-
    a
    b
";
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
    let weft_api::Object::ConfigMap(map) = &loaded.objects[0].object else {
        panic!("{:?}", loaded.objects)
    };
    let annotations = map.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations.get("tier").map(String::as_str), Some("front"));
    let data = map.data.as_ref().unwrap();
    assert_eq!(data["script"], "echo one\necho two\n");
    assert_eq!(data["folded"], "a b");
}

#[test]
fn an_alias_bomb_is_refused_by_its_bound_at_once() {
    // nine levels of ten aliases each: 10^9 strings if expanded
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\nx:\n");
    text.push_str("  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let previous = format!("*l{}", level - 1);
        let items = [previous.as_str(); 10].join(", ");
        text.push_str(&format!("  l{level}: &l{level} [{items}]\n"));
    }
    let started = Instant::now();
    let loaded = parse_manifests(&text, Path::new("bomb.yaml"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(loaded.objects.is_empty());
    let [finding] = &loaded.findings[..] else {
        panic!("{:?}", loaded.findings)
    };
    assert_eq!(finding.code, Code::OverLimit, "{finding}");
    assert!(
        finding.message.contains("aliases expand to more than"),
        "{finding}"
    );
    // the level that crossed the bound
    assert!((9..=13).contains(&finding.source.line), "{finding}");
}

#[test]
fn a_syntax_error_names_line_and_column_and_spares_the_other_documents() {
    let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n";
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    assert_eq!(loaded.objects.len(), 1);
    let [finding] = &loaded.findings[..] else {
        panic!("{:?}", loaded.findings)
    };
    assert_eq!(finding.code, Code::YamlSyntax);
    assert!(finding.message.contains("(column "), "{finding}");
}

#[test]
fn typed_errors_point_at_the_value_that_does_not_fit() {
    let text = "\
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports:
  - port: 80
  - port: eighty
";
    let loaded = parse_manifests(text, Path::new("t.yaml"));
    let [finding] = &loaded.findings[..] else {
        panic!("{:?}", loaded.findings)
    };
    assert_eq!((finding.code, finding.source.line), (Code::WrongType, 7));
}

#[test]
fn yaml_from_str_reads_typed_values_with_positions_in_errors() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[allow(dead_code)]
        port: u16,
    }
    let error = weft_api::yaml::from_str::<Config>("port: 80\nprot: 1\n").unwrap_err();
    assert_eq!(error.mark().map(|m| (m.line, m.column)), Some((2, 1)));
    let error = weft_api::yaml::from_str::<Config>("port: [1]\n").unwrap_err();
    assert!(error.to_string().contains("at line 1 column 7"), "{error}");
}
