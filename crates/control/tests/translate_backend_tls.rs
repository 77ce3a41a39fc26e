//! BackendTLSPolicy in the `weft.l7.v1.Waypoint` resource: a Service or ServiceEntry
//! target with its CA from a ConfigMap or the system roots, sectionName resolved to the
//! port, unusable policies failing closed with a warning, the oldest policy winning a
//! conflict, and edits of the policy or its ConfigMap re-translating the waypoint.

use std::path::PathBuf;
use weft_api::{ConfigSnapshot, LoadedObject, load_paths, parse_manifests};
use weft_control::translate::{ResourceKey, TranslateOptions, Translator, translate};
use weft_proto::l7::{BackendTls, Waypoint};

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn mesh() -> Vec<LoadedObject> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/waypoint-mesh");
    let loaded = load_paths(&[dir]);
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    loaded.objects
}

fn with(extra: &str) -> Vec<LoadedObject> {
    let parsed = parse_manifests(extra, "extra.yaml".as_ref());
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    let mut objects = mesh();
    objects.extend(parsed.objects);
    objects
}

fn key() -> ResourceKey {
    ResourceKey::waypoint("shop/waypoint")
}

fn backend_tls(objects: Vec<LoadedObject>) -> (Vec<BackendTls>, Vec<String>) {
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    let waypoint: Waypoint = output.get(&key()).expect("waypoint").decode().unwrap();
    // Only the warnings about BackendTLSPolicies (the fixture warns about its JWT rules).
    let warnings = output.warnings.get(&key()).into_iter().flatten();
    let warnings = warnings.map(ToString::to_string);
    let warnings = warnings.filter(|w| w.starts_with("BackendTLSPolicy/"));
    (waypoint.backend_tls, warnings.collect())
}

const ENTRY: &str = r"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]
  resolution: DNS
";

fn config_map(name: &str, ca: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: shop}}\n\
         data:\n  ca.crt: |\n{}\n",
        ca.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn policy(name: &str, target: &str, validation: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n\
         metadata: {{name: {name}, namespace: shop}}\nspec:\n  targetRefs: [{target}]\n\
         \x20 validation: {validation}\n"
    )
}

const ENTRY_TARGET: &str = "{group: networking.istio.io, kind: ServiceEntry, name: payments}";

#[test]
fn a_service_entry_gets_the_ca_of_its_config_map() {
    let validation = "{hostname: payments.example.com, caCertificateRefs: \
                      [{group: '', kind: ConfigMap, name: payments-ca}]}";
    let text = format!(
        "{ENTRY}{}{}",
        config_map("payments-ca", CA_PEM),
        policy("payments-tls", ENTRY_TARGET, validation)
    );
    let (entries, warnings) = backend_tls(with(&text));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        entries,
        [BackendTls {
            service: "shop/payments.example.com".into(),
            port: 0,
            hostname: "payments.example.com".into(),
            ca_bundle: CA_PEM.into(),
            system_roots: false,
            subject_alt_names: vec![],
            source: "shop/payments-tls".into(),
            client_certificate: None,
        }]
    );
}

#[test]
fn a_service_port_by_section_name_with_system_roots_and_sans() {
    let target = "{group: '', kind: Service, name: reviews, sectionName: web}";
    let validation = "{hostname: reviews.internal, wellKnownCACertificates: System, \
                      subjectAltNames: [{type: Hostname, hostname: alt.internal}, \
                      {type: URI, uri: 'spiffe://td/ns/shop/sa/reviews'}]}";
    let (entries, warnings) = backend_tls(with(&policy("reviews-tls", target, validation)));
    assert!(warnings.is_empty(), "{warnings:?}");
    let [entry] = entries.as_slice() else {
        panic!("{entries:?}")
    };
    assert_eq!(entry.service, "shop/reviews.shop.svc.cluster.local");
    assert_eq!(entry.port, 8080);
    assert!(entry.system_roots && entry.ca_bundle.is_empty());
    assert_eq!(
        entry.subject_alt_names,
        ["alt.internal", "spiffe://td/ns/shop/sa/reviews"]
    );
}

#[test]
fn unusable_policies_refuse_instead_of_falling_back_to_plaintext() {
    let cases = [
        (
            "{hostname: h, caCertificateRefs: [{group: '', kind: ConfigMap, name: gone}]}",
            "ConfigMap shop/gone does not exist",
        ),
        (
            "{hostname: h, caCertificateRefs: [{group: '', kind: ConfigMap, name: empty}]}",
            "has no ca.crt",
        ),
        (
            "{hostname: h, caCertificateRefs: [{group: '', kind: Secret, name: s}]}",
            "caCertificateRefs[0]: kind \"Secret\"",
        ),
        (
            "{hostname: h, wellKnownCACertificates: Other}",
            "wellKnownCACertificates",
        ),
    ];
    let empty = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: empty, namespace: shop}\n\
                 data: {other: x}\n";
    for (validation, reason) in cases {
        let text = format!("{ENTRY}{empty}{}", policy("p", ENTRY_TARGET, validation));
        let (entries, warnings) = backend_tls(with(&text));
        let [entry] = entries.as_slice() else {
            panic!("{validation}: {entries:?}")
        };
        assert!(
            entry.ca_bundle.is_empty() && !entry.system_roots,
            "{validation}: {entry:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("shop/p") && w.contains(reason) && w.contains("refused")),
            "{validation}: {warnings:?}"
        );
    }
}

#[test]
fn the_older_of_two_conflicting_policies_applies() {
    let first = policy(
        "b-first",
        ENTRY_TARGET,
        "{hostname: one, wellKnownCACertificates: System}",
    )
    .replace(
        "namespace: shop}",
        "namespace: shop, creationTimestamp: '2026-01-01T00:00:00Z'}",
    );
    let second = policy(
        "a-second",
        ENTRY_TARGET,
        "{hostname: two, wellKnownCACertificates: System}",
    )
    .replace(
        "namespace: shop}",
        "namespace: shop, creationTimestamp: '2026-02-01T00:00:00Z'}",
    );
    let (entries, warnings) = backend_tls(with(&format!("{ENTRY}{second}{first}")));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].hostname, "one");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("a-second") && w.contains("shop/b-first")),
        "{warnings:?}"
    );
}

#[test]
fn a_policy_on_an_unbound_service_is_not_sent() {
    let target = "{group: '', kind: Service, name: vault}";
    let text = policy(
        "vault-tls",
        target,
        "{hostname: h, wellKnownCACertificates: System}",
    )
    .replace("namespace: shop}", "namespace: other}");
    let (entries, _) = backend_tls(with(&text));
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn adding_the_policy_then_the_config_map_updates_the_waypoint() {
    let options = TranslateOptions::default();
    let validation = "{hostname: payments.example.com, caCertificateRefs: \
                      [{group: '', kind: ConfigMap, name: payments-ca}]}";
    let steps = [
        with(ENTRY),
        with(&format!(
            "{ENTRY}{}",
            policy("payments-tls", ENTRY_TARGET, validation)
        )),
        with(&format!(
            "{ENTRY}{}{}",
            policy("payments-tls", ENTRY_TARGET, validation),
            config_map("payments-ca", CA_PEM)
        )),
        with(&format!(
            "{ENTRY}{}{}",
            policy("payments-tls", ENTRY_TARGET, validation),
            config_map("payments-ca", &CA_PEM.repeat(2))
        )),
    ];
    let mut translator = Translator::new(options.clone());
    translator.full(&ConfigSnapshot::new(steps[0].clone()));
    for pair in steps.windows(2) {
        let before = ConfigSnapshot::new(pair[0].clone());
        let after = ConfigSnapshot::new(pair[1].clone());
        let change = translator.update(&before, &after);
        assert!(change.updated.contains(&key()), "{change:?}");
        let full = translate(&after, &options);
        assert_eq!(translator.output().get(&key()), full.get(&key()));
    }
    let waypoint: Waypoint = translator.output().get(&key()).unwrap().decode().unwrap();
    assert_eq!(waypoint.backend_tls[0].ca_bundle, CA_PEM.repeat(2));
}
