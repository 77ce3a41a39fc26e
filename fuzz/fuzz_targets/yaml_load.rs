//! A config file as the control plane and `weft validate` read it: parse every document,
//! validate each object, run the cross-object analysis and translate the result to xDS.
//! Any input must end in objects and findings, never a panic or a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use weft_api::{ConfigSnapshot, analyze, parse_manifests};
use weft_control::translate::{TranslateOptions, translate};

fuzz_target!(|text: &str| {
    let loaded = parse_manifests(text, Path::new("fuzz.yaml"));
    let snapshot = ConfigSnapshot::new(loaded.objects);
    let _ = analyze(&snapshot);
    let _ = translate(&snapshot, &TranslateOptions::default());
});
