//! Every Authorization the control plane produces must compile on the node proxy
//! (`CompiledPolicy::compile`): a policy the node rejects is not enforced at all, so a DENY
//! that does not compile silently denies nothing. Values translation cannot use (an empty
//! service account or namespace, port 0) are dropped as the fail-safe rules say: an ALLOW
//! rule drops, a DENY rule widens.

use std::path::{Path, PathBuf};

use weft_api::istio::AuthorizationPolicy;
use weft_api::{ConfigSnapshot, parse_manifests};
use weft_control::translate::{
    AUTHORIZATION, TranslateOptions, translate, translate_authorization_policy,
};
use weft_policy::CompiledPolicy;
use weft_proto::security::Authorization;

fn policy(action: &str, rule: &str) -> AuthorizationPolicy {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: p, namespace: shop}}\nspec: {{action: {action}, rules: [{rule}]}}"
    );
    weft_api::yaml::from_str(&yaml).expect("test policy parses")
}

/// (rule, the field its warning must name)
const UNUSABLE: &[(&str, &str)] = &[
    (
        "{from: [{source: {serviceAccounts: ['shop/']}}]}",
        "rules[0].from[0].source.serviceAccounts",
    ),
    (
        "{from: [{source: {serviceAccounts: ['/web']}}]}",
        "rules[0].from[0].source.serviceAccounts",
    ),
    (
        "{from: [{source: {notServiceAccounts: ['/']}}]}",
        "rules[0].from[0].source.notServiceAccounts",
    ),
    (
        "{from: [{source: {serviceAccounts: ['']}}]}",
        "rules[0].from[0].source.serviceAccounts",
    ),
    (
        "{to: [{operation: {ports: ['0']}}]}",
        "rules[0].to[0].operation.ports",
    ),
    (
        "{to: [{operation: {notPorts: ['0']}}]}",
        "rules[0].to[0].operation.notPorts",
    ),
    (
        "{when: [{key: destination.port, values: ['0']}]}",
        "rules[0].when[0] (key destination.port)",
    ),
    (
        "{when: [{key: destination.port, notValues: ['0']}]}",
        "rules[0].when[0] (key destination.port)",
    ),
];

#[test]
fn unusable_values_drop_or_widen_the_rule_and_every_translation_compiles() {
    let options = TranslateOptions::default();
    for (rule, field) in UNUSABLE {
        for (action, fate) in [
            ("ALLOW", "ALLOW rule 0 dropped"),
            ("DENY", "DENY rule 0 widened"),
        ] {
            let translated = translate_authorization_policy(&policy(action, rule), &options);
            let authorization = translated.authorization.expect("ALLOW and DENY are sent");
            if let Err(e) = CompiledPolicy::compile(None, &authorization) {
                panic!("{action} {rule}: node proxy rejects the translation: {e}");
            }
            let warned = translated
                .warnings
                .iter()
                .any(|w| w.message.contains(fate) && w.message.contains(field));
            assert!(
                warned,
                "{action} {rule}: no warning naming {field}: {:#?}",
                translated.warnings
            );
        }
    }
}

#[test]
fn a_deny_with_an_unusable_value_is_widened_not_lost() {
    let rule =
        "{from: [{source: {serviceAccounts: ['shop/']}}], to: [{operation: {ports: ['0', '22']}}]}";
    let translated =
        translate_authorization_policy(&policy("DENY", rule), &TranslateOptions::default());
    let authorization = translated.authorization.expect("sent");
    assert_eq!(authorization.rules.len(), 1, "the DENY rule stays");
    let clauses = &authorization.rules[0].clauses;
    assert_eq!(
        clauses.len(),
        1,
        "only the usable port constrains it: {clauses:?}"
    );
    assert_eq!(clauses[0].matches[0].destination_ports, [22]);
}

/// Every `.yaml` under `dir`, recursively.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_authorization_from_the_examples_and_fixtures_compiles_on_the_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    yaml_files(&root.join("examples"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let data = krate.expect("entry").path().join("tests/data");
        if data.is_dir() {
            yaml_files(&data, &mut files);
        }
    }
    let mut compiled = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        if !text.contains("kind: AuthorizationPolicy") && !text.contains("kind: PeerAuthentication")
        {
            continue;
        }
        let loaded = parse_manifests(&text, file);
        let output = translate(
            &ConfigSnapshot::new(loaded.objects),
            &TranslateOptions::default(),
        );
        for (name, resource) in output.of_type(AUTHORIZATION.type_url) {
            let authorization: Authorization = resource.decode().expect("an Authorization");
            if let Err(e) = CompiledPolicy::compile(Some(name), &authorization) {
                panic!(
                    "{}: {name} does not compile on the node: {e}",
                    file.display()
                );
            }
            compiled += 1;
        }
    }
    assert!(compiled > 10, "only {compiled} Authorizations found");
}
