//! `weft x translate DIR --for gateway NS/NAME` prints one gateway's `weft.l7.v1.Gateway`
//! resource (private keys redacted), on the control plane's gateway test mesh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mesh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/tests/data/gateway-mesh")
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn translate_for_a_gateway_prints_only_its_resource_without_keys() {
    let mesh = mesh();
    let mesh = mesh.to_str().unwrap();
    let args = [
        "x",
        "translate",
        mesh,
        "-o",
        "json",
        "--for",
        "gateway",
        "shop/ingress",
    ];
    let out = weft(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sections: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(sections, ["gateways"]);
    let gateway = &json["gateways"][0];
    assert_eq!(gateway["name"], "shop/ingress");
    let https = &gateway["resource"]["listeners"][1];
    assert_eq!(https["name"], "https");
    assert_eq!(https["certificates"][0]["source"], "shop/shop-cert");
    assert_eq!(https["certificates"][0]["privateKey"], "<redacted>");
    assert!(!text(&out.stdout).contains("BEGIN PRIVATE KEY"));

    let out = weft(&["x", "translate", mesh, "--for", "gateway", "shop/waypoint"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no gateway shop/waypoint") && stderr.contains("shop/ingress"),
        "{stderr}"
    );
    let out = weft(&["x", "translate", mesh, "--for", "node", "node-a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`waypoint` and `gateway`"));
}
