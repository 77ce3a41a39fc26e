//! `RequestAuthentication` (security.istio.io v1 and v1beta1): the fields Istio documents
//! parse, unknown ones are reported with a hint, and the checks name the field and its line.

use std::path::Path;
use weft_api::{Code, Object, parse_manifests};

const VALID: &str = r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
  jwtRules:
  - issuer: https://issuer.example.com
    audiences: [shop]
    jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}'
    fromHeaders: [{name: x-jwt, prefix: 'Token '}]
    fromParams: [token]
    fromCookies: [session]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    timeout: 5s
  - issuer: other
    jwksUri: https://other.example.com/jwks.json
"#;

/// (code, line) of every finding for `text`.
fn findings(text: &str) -> Vec<(Code, usize)> {
    let result = parse_manifests(text, Path::new("authn.yaml"));
    result
        .findings
        .iter()
        .map(|f| (f.code, f.source.line))
        .collect()
}

#[test]
fn every_documented_field_parses_in_both_versions() {
    for version in ["security.istio.io/v1", "security.istio.io/v1beta1"] {
        let text = VALID.replace("security.istio.io/v1", version);
        let result = parse_manifests(&text, Path::new("authn.yaml"));
        assert!(result.findings.is_empty(), "{:#?}", result.findings);
        let Object::RequestAuthentication(authn) = &result.objects[0].object else {
            panic!("{:?}", result.objects[0].object)
        };
        let rules = authn.spec.jwt_rules.as_deref().unwrap();
        assert_eq!(
            rules[0].from_headers.as_ref().unwrap()[0].prefix.as_deref(),
            Some("Token ")
        );
        assert_eq!(
            rules[1].jwks_uri.as_deref(),
            Some("https://other.example.com/jwks.json")
        );
    }
}

#[test]
fn an_unknown_field_is_reported_with_a_hint() {
    let text = VALID.replace("    fromParams:", "    fromParam:");
    let result = parse_manifests(&text, Path::new("authn.yaml"));
    let [finding] = result.findings.as_slice() else {
        panic!("{:#?}", result.findings)
    };
    assert_eq!(
        (finding.code, finding.source.line),
        (Code::UnknownField, 12)
    );
    assert!(
        finding.message.contains("did you mean \"fromParams\""),
        "{}",
        finding.message
    );
}

#[test]
fn mistakes_are_reported_on_the_line_of_their_field() {
    let cases = [
        (
            "  - issuer: https://issuer.example.com",
            "  - issuer: ''",
            Code::BadLength,
            8,
        ),
        (
            "    jwks: '{\"keys\"",
            "    jwks: '{\"kees\"",
            Code::InvalidValue,
            10,
        ),
        (
            "    jwksUri: https://other",
            "    jwksUri: ftp://other",
            Code::InvalidValue,
            19,
        ),
        ("name: x-jwt,", "name: 'x jwt',", Code::BadFormat, 11),
        (
            "    timeout: 5s",
            "    timeout: 5 seconds",
            Code::BadFormat,
            17,
        ),
        (
            "  targetRefs:",
            "  selector: {matchLabels: {app: a}}\n  targetRefs:",
            Code::InvalidValue,
            6,
        ),
    ];
    for (from, to, code, line) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "{from}");
        assert_eq!(findings(&text), [(code, line)], "{to}");
    }
}
