//! `weft validate` on AuthorizationPolicy and PeerAuthentication values a node proxy cannot
//! use (which would otherwise pass validation and silently not be enforced), at their lines.

use std::path::Path;
use weft_api::{Code, parse_manifests};

/// (code, line, message) of every finding for `text`.
fn findings(text: &str) -> Vec<(Code, usize, String)> {
    parse_manifests(text, Path::new("t.yaml"))
        .findings
        .iter()
        .map(|f| (f.code, f.source.line, f.message.clone()))
        .collect()
}

const POLICY: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  action: DENY
  rules:
  - from:
    - source:
        serviceAccounts: [web, shop/, /admin]
        notServiceAccounts: [ops/admin]
    to:
    - operation: {ports: ['0', '8080']}
    when:
    - key: destination.port
      values: ['0']
      notValues: [http]
    - {key: source.ip, values: [10.0.0.0/33]}
";

#[test]
fn unusable_authorization_policy_values_are_errors_at_their_lines() {
    let found = findings(POLICY);
    let codes: Vec<(Code, usize)> = found.iter().map(|(c, l, _)| (*c, *l)).collect();
    assert_eq!(
        codes,
        [
            (Code::InvalidValue, 9),
            (Code::InvalidValue, 9),
            (Code::PortOutOfRange, 12),
            (Code::PortOutOfRange, 15),
            (Code::InvalidValue, 16),
            (Code::BadCidr, 17),
        ],
        "{found:#?}"
    );
    assert!(
        found[0].2.contains("\"shop/\" has an empty name"),
        "{}",
        found[0].2
    );
    assert!(
        found[1].2.contains("\"/admin\" has an empty namespace"),
        "{}",
        found[1].2
    );
}

fn peer_authentication(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: default, namespace: istio-system}}\nspec:\n{spec}"
    )
}

#[test]
fn port_level_mtls_without_a_selector_is_an_error() {
    for spec in [
        "  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n",
        "  selector: {matchLabels: {}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
    ] {
        let found = findings(&peer_authentication(spec));
        assert_eq!(found.len(), 1, "{spec}: {found:#?}");
        let (code, _, message) = &found[0];
        assert_eq!(*code, Code::MissingField);
        assert!(
            message.contains("portLevelMtls requires a selector"),
            "{message}"
        );
    }
    let selected =
        "  selector: {matchLabels: {app: db}}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n";
    assert!(findings(&peer_authentication(selected)).is_empty());
}

#[test]
fn port_level_mtls_without_a_selector_is_reported_once_as_required_selector() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: api, namespace: istio-system}}\n\
         spec: {{containers: [{{name: api, image: weft, ports: [{{containerPort: 8080}}]}}]}}\n",
        peer_authentication(
            "  mtls: {mode: STRICT}\n  portLevelMtls:\n    9090: {mode: PERMISSIVE}\n"
        )
    );
    let loaded = parse_manifests(&text, Path::new("t.yaml"));
    let codes: Vec<Code> = loaded.findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, [Code::MissingField]);
    let analyzed = weft_api::analyze(&weft_api::ConfigSnapshot::new(loaded.objects));
    let codes: Vec<Code> = analyzed.iter().map(|f| f.code).collect();
    assert!(
        !codes.contains(&Code::PeerAuthPortNotExposed),
        "not 'unexposed': ignored for want of a selector: {analyzed:#?}"
    );
}

/// weft names the policies it compiles from PeerAuthentication `weft-mtls-strict...`: an
/// AuthorizationPolicy by such a name would take the place of STRICT mTLS enforcement.
#[test]
fn an_authorization_policy_may_not_take_a_reserved_name() {
    let text = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: weft-mtls-strict, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [192.0.2.0/24]}}]}]}
";
    let found = findings(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (code, line, message) = &found[0];
    assert_eq!((*code, *line), (Code::InvalidValue, 3));
    assert!(message.contains("reserved"), "{message}");
    assert!(findings(&text.replace("weft-mtls-strict", "deny-test-net")).is_empty());
}
