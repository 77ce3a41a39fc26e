//! `weft waypoint apply|list|delete` on temporary config directories, run as a user would.

use std::path::Path;
use std::process::Command;

const NAMESPACE_FILE: &str = "\
# The shop team's namespace.
apiVersion: v1
kind: Namespace
metadata:
  name: shop # owned by the shop team
  labels:
    istio.io/dataplane-mode: ambient # in the mesh
---
# Its one service.
apiVersion: v1
kind: Service
metadata:
  name: catalog
  namespace: shop
spec:
  selector: {app: catalog}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: catalog-0
  namespace: shop
  labels: {app: catalog}
spec:
  containers: [{name: app, image: weft}]
";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&std::ffi::OsStr]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `weft ARGS --config-dir DIR`.
fn weft(dir: &Path, args: &[&str]) -> Run {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.extend(["--config-dir".as_ref(), dir.as_os_str()]);
    run(&all)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let run = weft(dir, args);
    assert_eq!(run.code, 0, "weft {args:?}: {}{}", run.stdout, run.stderr);
    run.stdout
}

fn analyze(dir: &Path) -> Run {
    run(&["analyze".as_ref(), dir.as_os_str()])
}

/// Checks that `out` says `expected`, where `{file}` stands for `file`'s path.
fn says(out: &str, expected: &str, file: &Path) {
    let expected = expected.replace("{file}", &file.display().to_string());
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("shop.yaml"), NAMESPACE_FILE).expect("write");
    dir
}

#[test]
fn apply_writes_the_gateway_once_and_list_shows_it() {
    let dir = config_dir();
    let file = dir.path().join("waypoint-shop-waypoint.yaml");
    let out = ok(dir.path(), &["waypoint", "apply", "-n", "shop"]);
    assert!(
        out.contains(&format!(
            "wrote Gateway shop/waypoint (istio.io/waypoint-for: service) to {}",
            file.display()
        )),
        "{out}"
    );
    let written = read(&file);
    for line in [
        "kind: Gateway",
        "gatewayClassName: istio-waypoint",
        "- name: mesh",
        "port: 15008",
        "protocol: HBONE",
    ] {
        assert!(written.contains(line), "{written}");
    }

    let again = ok(dir.path(), &["waypoint", "apply", "-n", "shop"]);
    assert!(
        again.starts_with("unchanged: Gateway shop/waypoint"),
        "{again}"
    );
    assert_eq!(read(&file), written);

    let list = ok(dir.path(), &["waypoint", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE  NAME      FOR"), "{list}");
    assert!(
        lines[1].starts_with("shop       waypoint  service  -"),
        "{list}"
    );
    assert!(lines[1].contains("waypoint-shop-waypoint.yaml:2"), "{list}");
    let other = ok(dir.path(), &["waypoint", "list", "-n", "other"]);
    assert_eq!(other.lines().count(), 1, "{other}");

    let report = analyze(dir.path());
    assert_eq!(report.code, 0, "{}", report.stdout);
}

#[test]
fn apply_for_workload_updates_the_file() {
    let dir = config_dir();
    ok(dir.path(), &["waypoint", "apply", "-n", "shop"]);
    let out = ok(
        dir.path(),
        &["waypoint", "apply", "-n", "shop", "--for", "workload"],
    );
    assert!(
        out.contains("updated Gateway shop/waypoint in ")
            && out.contains("istio.io/waypoint-for: service -> workload"),
        "{out}"
    );
    let json = ok(dir.path(), &["waypoint", "list", "--output", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(entries[0]["for"], "workload");
    assert_eq!(entries[0]["name"], "waypoint");
}

#[test]
fn enroll_namespace_edits_the_users_file_in_place() {
    let dir = config_dir();
    let shop = dir.path().join("shop.yaml");
    says(
        &ok(
            dir.path(),
            &["waypoint", "apply", "-n", "shop", "--enroll-namespace"],
        ),
        "labelled Namespace shop istio.io/use-waypoint=waypoint in {file}:2",
        &shop,
    );
    let edited = read(&shop);
    let expected = NAMESPACE_FILE.replace(
        "  labels:\n    istio.io/dataplane-mode",
        "  labels:\n    istio.io/use-waypoint: waypoint\n    istio.io/dataplane-mode",
    );
    assert_eq!(edited, expected);

    let report = analyze(dir.path());
    assert_eq!(report.code, 0, "{}", report.stdout);
    assert!(
        !report.stdout.contains("error") && !report.stdout.contains("warning"),
        "{}",
        report.stdout
    );
    let list = ok(dir.path(), &["waypoint", "list"]);
    assert!(list.contains("Namespace/-/shop"), "{list}");

    let again = ok(
        dir.path(),
        &["waypoint", "apply", "-n", "shop", "--enroll-namespace"],
    );
    assert!(
        again.contains("unchanged: Namespace shop already has label"),
        "{again}"
    );
}

#[test]
fn a_label_naming_another_waypoint_needs_overwrite() {
    let dir = config_dir();
    ok(
        dir.path(),
        &["waypoint", "apply", "-n", "shop", "--enroll-namespace"],
    );
    let other = [
        "waypoint",
        "apply",
        "-n",
        "shop",
        "--name",
        "other",
        "--enroll-namespace",
    ];
    let refused = weft(dir.path(), &other);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("--overwrite"), "{}", refused.stderr);
    assert!(!dir.path().join("waypoint-shop-other.yaml").exists());

    ok(dir.path(), &[&other[..], &["--overwrite"][..]].concat());
    assert!(read(&dir.path().join("shop.yaml")).contains("istio.io/use-waypoint: other\n"));
}

#[test]
fn a_gateway_the_user_wrote_is_not_replaced() {
    let dir = config_dir();
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: waypoint\n  namespace: shop\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n";
    std::fs::write(dir.path().join("mine.yaml"), gateway).expect("write");
    let refused = weft(dir.path(), &["waypoint", "apply", "-n", "shop"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("already exists at") && refused.stderr.contains("mine.yaml"),
        "{}",
        refused.stderr
    );
    assert!(!dir.path().join("waypoint-shop-waypoint.yaml").exists());
}

#[test]
fn delete_removes_the_gateway_and_the_namespace_label() {
    let dir = config_dir();
    let shop = dir.path().join("shop.yaml");
    let file = dir.path().join("waypoint-shop-waypoint.yaml");
    ok(
        dir.path(),
        &["waypoint", "apply", "-n", "shop", "--enroll-namespace"],
    );
    let run = weft(dir.path(), &["waypoint", "delete", "-n", "shop"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let removed = "removed label istio.io/use-waypoint=waypoint from Namespace shop in {file}:2";
    says(&run.stdout, removed, &shop);
    says(&run.stdout, "removed {file} (Gateway shop/waypoint)", &file);
    assert!(!file.exists());
    assert_eq!(read(&shop), NAMESPACE_FILE);
    assert_eq!(ok(dir.path(), &["waypoint", "list"]).lines().count(), 1);

    let missing = weft(dir.path(), &["waypoint", "delete", "-n", "shop"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no Gateway shop/waypoint"),
        "{}",
        missing.stderr
    );
}

#[test]
fn delete_warns_about_other_objects_still_using_it() {
    let dir = config_dir();
    ok(dir.path(), &["waypoint", "apply", "-n", "shop"]);
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: orders\n  namespace: shop\n  labels:\n    istio.io/use-waypoint: waypoint\nspec:\n  ports: [{port: 80}]\n";
    std::fs::write(dir.path().join("orders.yaml"), service).expect("write");
    let run = weft(dir.path(), &["waypoint", "delete", "-n", "shop"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: Service/shop/orders"),
        "{}",
        run.stderr
    );
    assert_eq!(read(&dir.path().join("orders.yaml")), service);
}

#[test]
fn a_namespace_without_object_is_written_with_the_waypoint_and_removed_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("waypoint-blue-waypoint.yaml");
    says(
        &ok(
            dir.path(),
            &["waypoint", "apply", "-n", "blue", "--enroll-namespace"],
        ),
        "wrote Namespace blue with label istio.io/use-waypoint=waypoint to {file}",
        &file,
    );
    assert!(read(&file).contains("kind: Namespace"));
    assert_eq!(analyze(dir.path()).code, 0);
    ok(dir.path(), &["waypoint", "delete", "-n", "blue"]);
    assert!(!file.exists());
}
