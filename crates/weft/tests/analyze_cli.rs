//! `weft analyze` / `weft validate` exit codes and output, run as a user would.

use std::path::PathBuf;
use std::process::Command;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn weft(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn analyze_examples_exits_zero_and_broken_exits_one() {
    let examples = repo_path("examples");
    let (code, stdout) = weft(&["analyze", examples.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        !stdout.contains("error  ") && !stdout.contains("warning  "),
        "{stdout}"
    );

    let broken = repo_path("examples/broken");
    let (code, stdout) = weft(&["analyze", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stdout.lines().any(|l| l
            .starts_with("error  route-parent-not-found  HTTPRoute/broken-route-parent/orphan  ")),
        "{stdout}"
    );
}

#[test]
fn validate_json_output_and_exit_code() {
    let file = repo_path("examples/broken/wrong-type.yaml");
    let (code, stdout) = weft(&["validate", "--output", "json", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let findings: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(findings[0]["code"], "wrong-type");
    assert_eq!(findings[0]["line"], 9);
}
