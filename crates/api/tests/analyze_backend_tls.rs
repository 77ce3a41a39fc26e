//! `weft analyze` on BackendTLSPolicies: a target that does not exist (or has no such
//! port) and a CA reference that is missing, has no `ca.crt` or is of another kind are
//! reported on their field; a complete policy gives no finding.

use weft_api::{Code, ConfigSnapshot, analyze, parse_manifests};

const BASE: &str = "
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: good-ca, namespace: shop}
data:
  ca.crt: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
---
apiVersion: v1
kind: ConfigMap
metadata: {name: no-ca, namespace: shop}
data: {other: x}
";

fn findings(policy: &str) -> Vec<(Code, String)> {
    let text = format!("{BASE}---\n{policy}");
    let parsed = parse_manifests(&text, "policy.yaml".as_ref());
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    let found = analyze(&ConfigSnapshot::new(parsed.objects));
    found
        .into_iter()
        .filter(|f| {
            matches!(
                f.code,
                Code::BackendTlsTargetNotFound | Code::BackendTlsCaNotFound
            )
        })
        .map(|f| (f.code, f.message))
        .collect()
}

fn policy(targets: &str, refs: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n\
         metadata: {{name: tls, namespace: shop}}\nspec:\n  targetRefs: {targets}\n\
         \x20 validation: {{hostname: h.example.com, caCertificateRefs: {refs}}}\n"
    )
}

#[test]
fn a_complete_policy_has_no_finding() {
    let targets = "[{group: '', kind: Service, name: api, sectionName: https}, \
                   {group: networking.istio.io, kind: ServiceEntry, name: payments}]";
    let refs = "[{group: '', kind: ConfigMap, name: good-ca}]";
    assert_eq!(findings(&policy(targets, refs)), []);
}

#[test]
fn missing_targets_and_unusable_ca_references_are_reported_on_their_field() {
    let targets = "[{group: '', kind: Service, name: gone}, \
                   {group: '', kind: Service, name: api, sectionName: http}, \
                   {group: example.com, kind: Bucket, name: b}]";
    let refs = "[{group: '', kind: ConfigMap, name: missing}, \
                {group: '', kind: ConfigMap, name: no-ca}, {group: '', kind: Secret, name: s}]";
    let found = findings(&policy(targets, refs));
    let expected = [
        (
            Code::BackendTlsTargetNotFound,
            "spec.targetRefs[0]: Service shop/gone does not exist",
        ),
        (
            Code::BackendTlsTargetNotFound,
            "spec.targetRefs[1]: Service shop/api has no port named \"http\"",
        ),
        (
            Code::BackendTlsTargetNotFound,
            "spec.targetRefs[2]: kind \"Bucket\" of group \"example.com\" cannot be a target",
        ),
        (
            Code::BackendTlsCaNotFound,
            "spec.validation.caCertificateRefs[0]: ConfigMap shop/missing does not exist; the proxies refuse",
        ),
        (
            Code::BackendTlsCaNotFound,
            "spec.validation.caCertificateRefs[1]: ConfigMap shop/no-ca has no ca.crt",
        ),
        (
            Code::BackendTlsCaNotFound,
            "spec.validation.caCertificateRefs[2]: kind \"Secret\"",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for ((code, message), (want_code, want)) in found.iter().zip(expected) {
        assert_eq!(*code, want_code, "{message}");
        assert!(
            message.starts_with(want),
            "{message:?} should start with {want:?}"
        );
    }
}
