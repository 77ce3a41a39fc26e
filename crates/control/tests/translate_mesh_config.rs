//! `weft.mesh.v1.MeshConfig` from Istio's mesh config ConfigMap (`istio` in the root
//! namespace, key `mesh`): no ConfigMap, no resource; the mode is read, the
//! `--outbound-traffic-policy` option is the default; an unusable value fails closed
//! (REGISTRY_ONLY) with a warning; creating, editing and deleting the ConfigMap
//! update the resource incrementally as a full translation would.

use weft_api::{ConfigSnapshot, LoadedObject, parse_manifests};
use weft_control::translate::{ResourceKey, TranslateOptions, Translator, translate};
use weft_proto::mesh::MeshConfig;
use weft_proto::mesh::mesh_config::OutboundTrafficPolicy;
use weft_proto::{MESH_CONFIG_NAME, MESH_CONFIG_TYPE_URL};

fn key() -> ResourceKey {
    ResourceKey::new(MESH_CONFIG_TYPE_URL, MESH_CONFIG_NAME)
}

fn objects(mesh: Option<&str>) -> Vec<LoadedObject> {
    let mut text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".to_owned();
    if let Some(mesh) = mesh {
        let indented: Vec<String> = mesh.lines().map(|l| format!("    {l}")).collect();
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: \
             istio-system}}\ndata:\n  mesh: |\n{}\n",
            indented.join("\n")
        ));
    }
    let parsed = parse_manifests(&text, "mesh.yaml".as_ref());
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    parsed.objects
}

/// The policy in the translated resource (None: no resource) and the warnings under it.
fn policy_of(objects: Vec<LoadedObject>) -> (Option<OutboundTrafficPolicy>, Vec<String>) {
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    let config = output
        .get(&key())
        .map(|r| r.decode::<MeshConfig>().unwrap());
    let warnings = output.warnings.get(&key()).into_iter().flatten();
    (
        config.map(|c| c.outbound_traffic_policy()),
        warnings.map(ToString::to_string).collect(),
    )
}

#[test]
fn the_mode_comes_from_the_istio_config_map() {
    assert_eq!(policy_of(objects(None)), (None, vec![]));
    let registry = "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY";
    let (policy, _) = policy_of(objects(Some(registry)));
    assert_eq!(policy, Some(OutboundTrafficPolicy::RegistryOnly));
    let (policy, _) = policy_of(objects(Some("defaultConfig: {}")));
    assert_eq!(
        policy,
        Some(OutboundTrafficPolicy::AllowAny),
        "unset: the default"
    );
}

#[test]
fn an_unusable_mode_fails_closed_with_a_warning() {
    let (policy, warnings) = policy_of(objects(Some("outboundTrafficPolicy: {mode: ALLOW}")));
    assert_eq!(policy, Some(OutboundTrafficPolicy::RegistryOnly));
    let [warning] = warnings.as_slice() else {
        panic!("{warnings:?}")
    };
    assert!(
        warning.contains("ConfigMap/istio-system/istio")
            && warning.contains("data.mesh: outboundTrafficPolicy.mode: ALLOW is not")
            && warning.contains("REGISTRY_ONLY until it is fixed"),
        "{warning}"
    );
}

#[test]
fn config_map_edits_update_the_resource_incrementally() {
    let options = TranslateOptions::default();
    let steps = [
        objects(None),
        objects(Some("outboundTrafficPolicy: {mode: REGISTRY_ONLY}")),
        objects(Some("outboundTrafficPolicy: {mode: ALLOW_ANY}")),
        objects(None),
    ];
    let mut translator = Translator::new(options.clone());
    translator.full(&ConfigSnapshot::new(steps[0].clone()));
    for (index, pair) in steps.windows(2).enumerate() {
        let before = ConfigSnapshot::new(pair[0].clone());
        let after = ConfigSnapshot::new(pair[1].clone());
        let change = translator.update(&before, &after);
        let changed = change.updated.contains(&key()) || change.removed.contains(&key());
        assert!(changed, "step {index}: {change:?}");
        let full = translate(&after, &options);
        assert_eq!(
            translator.output().get(&key()),
            full.get(&key()),
            "step {index}"
        );
    }
    assert!(translator.output().get(&key()).is_none());
}

#[test]
fn the_flag_is_the_default_and_the_config_map_wins() {
    let options = TranslateOptions {
        outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        ..TranslateOptions::default()
    };
    let policy = |objects: Vec<LoadedObject>| {
        let output = translate(&ConfigSnapshot::new(objects), &options);
        let resource = output.get(&key()).expect("the mesh resource");
        resource
            .decode::<MeshConfig>()
            .unwrap()
            .outbound_traffic_policy()
    };
    assert_eq!(policy(objects(None)), OutboundTrafficPolicy::RegistryOnly);
    let unset = objects(Some("defaultConfig: {}"));
    assert_eq!(policy(unset), OutboundTrafficPolicy::RegistryOnly);
    let allow = objects(Some("outboundTrafficPolicy: {mode: ALLOW_ANY}"));
    assert_eq!(policy(allow), OutboundTrafficPolicy::AllowAny);
}
