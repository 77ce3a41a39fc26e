//! The L7 side of the CLI on the control plane's waypoint test mesh: `weft x translate
//! --for waypoint NS/NAME` prints one waypoint's resource, and `weft x authz check` decides
//! a request with that waypoint's L7 policies (`--method`, `--path`, `--header`), then the
//! destination's L4 policy with the waypoint as the peer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mesh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/tests/data/waypoint-mesh")
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
fn translate_for_a_waypoint_prints_only_its_resource() {
    let mesh = mesh();
    let mesh = mesh.to_str().unwrap();
    let out = weft(&[
        "x",
        "translate",
        mesh,
        "-o",
        "json",
        "--for",
        "waypoint",
        "shop/waypoint",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sections: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(sections, ["waypoints"]);
    assert_eq!(json["waypoints"][0]["name"], "shop/waypoint");
    assert_eq!(
        json["waypoints"][0]["resource"]["policies"][0]["policy"]["name"],
        "deny-admin"
    );
    assert!(
        text(&out.stderr).contains("jwksUri"),
        "{}",
        text(&out.stderr)
    );

    let out = weft(&["x", "translate", mesh, "--for", "waypoint", "shop/nope"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no waypoint shop/nope") && stderr.contains("shop/waypoint"),
        "{stderr}"
    );
}

/// First line of `weft x authz check` for a request from shop/sa/web to reviews-v1-0:9080
/// addressed to `service`.
fn decide(service: &str, request: &[&str]) -> String {
    let mesh = mesh();
    let mut args = vec![
        "x",
        "authz",
        "check",
        mesh.to_str().unwrap(),
        "--to",
        "shop/reviews-v1-0",
        "--port",
        "9080",
        "--from",
        "spiffe://cluster.local/ns/shop/sa/web",
        "--service",
        service,
    ];
    args.extend(request);
    let out = weft(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("waypoint shop/waypoint"), "{stdout}");
    stdout.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn authz_check_decides_requests_at_the_waypoint() {
    let reviews = "shop/reviews";
    let cases: &[(&str, &[&str], &str)] = &[
        (
            reviews,
            &["--path", "/admin/x"],
            "DENY shop/deny-admin rule 0",
        ),
        (
            reviews,
            &["--path", "/api", "--header", "x-user=alice"],
            "ALLOW",
        ),
        (
            reviews,
            &["--method", "POST", "--header", "x-user=alice"],
            "DENY",
        ),
        (reviews, &["--path", "/api"], "DENY"),
        // reviews-v1 has no policy of its own: only the waypoint-wide DENY applies.
        ("shop/reviews-v1", &["--method", "POST"], "ALLOW"),
        ("shop/reviews-v1", &["--path", "/admin"], "DENY"),
    ];
    for (service, request, expected) in cases {
        let line = decide(service, request);
        assert!(line.starts_with(expected), "{request:?}: {line}");
    }
}
