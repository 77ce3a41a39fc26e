//! Gateway API status from the real binary: `weft x status DIR` prints Kubernetes-shaped
//! YAML documents (one per object, stable order, exit 0); a running control plane serves
//! the same statuses at `/debug/gatewayz`, `weft status --gateways` shows them as a table
//! and plain `weft status` lists each gateway's address.

#[path = "../../control/tests/process_support/mod.rs"]
mod process_support;

use process_support::control::{copy_examples, start_control};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn weft(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const CONFIG: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: edge}
spec: {controllerName: weft.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: web, generation: 4}
spec:
  gatewayClassName: edge
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: web}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.org]
  rules: [{backendRefs: [{name: shop, port: 80}]}]
"#;

#[test]
fn x_status_prints_kubernetes_shaped_documents_with_reasons() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("gw.yaml"), CONFIG).expect("write config");
    let (code, stdout, stderr) = weft(&["x", "status", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let documents: Vec<serde_json::Value> = stdout
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| weft_api::yaml::from_str(d).expect("YAML document"))
        .collect();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["GatewayClass", "Gateway", "HTTPRoute"], "{stdout}");
    let class = &documents[0];
    assert_eq!(class["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(class["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(class["status"]["conditions"][0]["status"], "True");
    let gateway = &documents[1];
    assert_eq!(gateway["metadata"]["namespace"], "web");
    assert_eq!(gateway["metadata"]["generation"], 4);
    let listener = &gateway["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 0);
    assert_eq!(listener["supportedKinds"][0]["kind"], "HTTPRoute");
    assert_eq!(listener["conditions"][0]["observedGeneration"], 4);
    let parent = &documents[2]["status"]["parents"][0];
    assert_eq!(parent["parentRef"]["name"], "gw");
    assert_eq!(parent["controllerName"], "weft.dev/gateway");
    assert_eq!(parent["conditions"][0]["type"], "Accepted");
    assert_eq!(parent["conditions"][0]["status"], "False");
    assert_eq!(
        parent["conditions"][0]["reason"],
        "NoMatchingListenerHostname"
    );
    assert_eq!(parent["conditions"][1]["reason"], "BackendNotFound");
    // Stable: the same input prints the same text.
    let (_, again, _) = weft(&["x", "status", dir.path().to_str().unwrap()]);
    assert_eq!(stdout, again);
    // JSON is the /debug/gatewayz shape.
    let (code, json, _) = weft(&["x", "status", "-o", "json", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        parsed[2]["status"]["parents"][0]["conditions"][0]["reason"],
        "NoMatchingListenerHostname"
    );
}

#[test]
fn x_status_says_why_the_data_plane_leaves_a_route_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = CONFIG.replace("shop.example.org", "shop.example.com").replace(
        "rules: [{backendRefs: [{name: shop, port: 80}]}]",
        "rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Magic, name: m}}]}]",
    );
    std::fs::write(dir.path().join("gw.yaml"), config).expect("write config");
    let (code, stdout, stderr) = weft(&["x", "status", "-o", "json", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let accepted = &parsed[2]["status"]["parents"][0]["conditions"][0];
    assert_eq!(accepted["reason"], "UnsupportedValue", "{stdout}");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("ExtensionRef"),
        "{stdout}"
    );
    assert_eq!(parsed[1]["status"]["listeners"][0]["attachedRoutes"], 0);
}

#[test]
fn x_status_of_a_config_with_errors_exits_one() {
    let (code, stdout, stderr) = weft(&[
        "x",
        "status",
        repo_path("examples/broken/yaml-syntax.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("yaml-syntax"), "{stderr}");
}

fn weft_status(admin: &str, extra: &[&str]) -> String {
    let mut args = vec!["status", "--control", admin];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = weft(&args);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_serves_gateway_status_and_weft_status_shows_it() {
    let control = start_control(|dir: &Path| {
        copy_examples(dir);
        std::fs::write(dir.join("zz-gateway-status.yaml"), CONFIG).expect("write config");
    })
    .await;
    let gatewayz = control.admin_json("/debug/gatewayz").await;
    let gateway = gatewayz
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["kind"] == "Gateway" && s["metadata"]["name"] == "gw")
        .expect("gw has a status");
    assert_eq!(gateway["status"]["listeners"][0]["name"], "http");

    let admin = control.addrs.admin.to_string();
    let table = tokio::task::spawn_blocking(move || {
        (
            weft_status(&admin, &["--gateways"]),
            weft_status(&admin, &[]),
        )
    })
    .await
    .expect("weft status");
    let (gateways, plain) = table;
    assert!(gateways.contains("web/gw"), "{gateways}");
    assert!(gateways.contains("  http"), "{gateways}");
    assert!(
        gateways
            .lines()
            .any(|l| l.starts_with("HTTPRoute web/shop ")
                && l.contains("Gateway web/gw")
                && l.contains("False (NoMatchingListenerHostname)")
                && l.ends_with("False (BackendNotFound)")),
        "{gateways}"
    );
    assert!(plain.starts_with("no proxies connected\n"), "{plain}");
    assert!(plain.contains("GATEWAY"), "{plain}");
    assert!(plain.lines().any(|l| l.starts_with("web/gw")), "{plain}");
}
