//! Golden translations: the bundled examples and a test mesh that exercises every translation
//! rule, rendered as the proto JSON a node proxy receives (see `snapshots/`).

use std::path::{Path, PathBuf};
use weft_api::{ConfigSnapshot, Severity, load_paths};
use weft_control::translate::render::{render_resources, warning_lines};
use weft_control::translate::{TranslateOptions, translate};

fn load(dir: &Path) -> ConfigSnapshot {
    let loaded = load_paths(&[dir.to_path_buf()]);
    let errors: Vec<String> = loaded
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not load cleanly: {errors:#?}",
        dir.display()
    );
    ConfigSnapshot::new(loaded.objects)
}

fn golden(dir: &Path) -> serde_json::Value {
    let output = translate(&load(dir), &TranslateOptions::default());
    let mut value = render_resources(&output).expect("resources render as proto JSON");
    value["warnings"] = serde_json::json!(warning_lines(&output));
    value
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn test_mesh_translates_to_golden() {
    insta::assert_yaml_snapshot!(
        "translate_mesh",
        golden(&manifest_dir().join("tests/data/translate-mesh"))
    );
}

#[test]
fn bundled_examples_translate_to_golden() {
    let examples = manifest_dir().join("../../examples");
    let files: Vec<PathBuf> = ["cluster.yaml", "frontend.yaml", "shop.yaml", "legacy.yaml"]
        .iter()
        .map(|f| examples.join(f))
        .filter(|p| p.exists())
        .collect();
    assert!(!files.is_empty(), "examples/ has the example mesh");
    let loaded = load_paths(&files);
    let output = translate(
        &ConfigSnapshot::new(loaded.objects),
        &TranslateOptions::default(),
    );
    let mut value = render_resources(&output).expect("resources render as proto JSON");
    value["warnings"] = serde_json::json!(warning_lines(&output));
    insta::assert_yaml_snapshot!("translate_examples", value);
}

#[test]
fn translation_is_deterministic() {
    let dir = manifest_dir().join("tests/data/translate-mesh");
    let first = translate(&load(&dir), &TranslateOptions::default());
    let second = translate(&load(&dir), &TranslateOptions::default());
    assert_eq!(first, second);
}
