//! `weft x authz check` answers policy questions from a config directory, as the node proxy
//! would enforce them: a table of cases against the bundled examples plus a fixture with
//! DENY, CIDR, port, namespace and allow-nothing policies.

use std::path::{Path, PathBuf};
use std::process::Command;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs a check and returns (exit code, first line of stdout).
fn check(paths: &[&Path], args: &[&str]) -> (i32, String) {
    let output = weft()
        .args(["x", "authz", "check"])
        .args(paths)
        .args(args)
        .output()
        .expect("run weft");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().next().unwrap_or_default().to_owned();
    (output.status.code().unwrap_or(-1), line)
}

const FIXTURE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.244.9.0/24}
---
apiVersion: v1
kind: Namespace
metadata: {name: db, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: pg, namespace: db, labels: {app: pg}}
spec:
  nodeName: n1
  serviceAccountName: pg
  containers: [{name: pg, image: postgres, ports: [{containerPort: 5432}, {containerPort: 9187}]}]
status: {podIP: 10.244.9.20}
---
apiVersion: v1
kind: Pod
metadata: {name: locked, namespace: db, labels: {app: locked}}
spec:
  nodeName: n1
  containers: [{name: c, image: busybox}]
status: {podIP: 10.244.9.21}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: pg-allow, namespace: db}
spec:
  selector: {matchLabels: {app: pg}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["api"]}}]
    to: [{operation: {ports: ["5432"]}}]
  - from: [{source: {ipBlocks: ["10.1.0.0/16"]}}]
    to: [{operation: {ports: ["9187"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: pg-deny-batch, namespace: db}
spec:
  selector: {matchLabels: {app: pg}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/api/sa/batch*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: locked-nothing, namespace: db}
spec:
  selector: {matchLabels: {app: locked}}
"#;

#[test]
fn decisions_match_the_policy_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("db.yaml"), FIXTURE).expect("write fixture");
    let fixture = dir.path();
    let examples = examples();
    let web = "spiffe://cluster.local/ns/frontend/sa/web";
    let cases: &[(&Path, &[&str], &str)] = &[
        // The bundled mesh: only frontend/web may call catalog, STRICT refuses plaintext.
        (
            &examples,
            &["--to", "shop/catalog-v1-0", "--port", "8080", "--from", web],
            "ALLOW shop/catalog-allow-web rule 0",
        ),
        (
            &examples,
            &[
                "--to",
                "shop/catalog-v2-0",
                "--port",
                "8080",
                "--from",
                "spiffe://cluster.local/ns/frontend/sa/reports",
            ],
            "DENY",
        ),
        (
            &examples,
            &["--to", "shop/catalog-v1-0", "--port", "9999", "--from", web],
            "DENY",
        ),
        (
            &examples,
            &["--to", "shop/catalog-v1-0", "--port", "8080", "--plaintext"],
            "DENY istio-system/weft-mtls-strict",
        ),
        (
            &examples,
            &["--to", "frontend/web-0", "--port", "8080", "--plaintext"],
            "ALLOW",
        ),
        // The fixture: namespaces, ports, CIDRs, wildcard DENY before ALLOW, allow-nothing.
        (
            fixture,
            &[
                "--to",
                "db/pg",
                "--port",
                "5432",
                "--from",
                "spiffe://cluster.local/ns/api/sa/web",
            ],
            "ALLOW db/pg-allow rule 0",
        ),
        (
            fixture,
            &[
                "--to",
                "db/pg",
                "--port",
                "5432",
                "--from",
                "spiffe://cluster.local/ns/other/sa/web",
            ],
            "DENY",
        ),
        (
            fixture,
            &[
                "--to",
                "db/pg",
                "--port",
                "5432",
                "--from",
                "spiffe://cluster.local/ns/api/sa/batch-7",
            ],
            "DENY db/pg-deny-batch rule 0",
        ),
        (
            fixture,
            &[
                "--to",
                "10.244.9.20",
                "--port",
                "9187",
                "--plaintext",
                "--source-ip",
                "10.1.2.3",
            ],
            "ALLOW db/pg-allow rule 1",
        ),
        (
            fixture,
            &[
                "--to",
                "10.244.9.20",
                "--port",
                "9187",
                "--plaintext",
                "--source-ip",
                "10.2.2.3",
            ],
            "DENY",
        ),
        (
            fixture,
            &["--to", "db/pg", "--port", "9187", "--plaintext"],
            "DENY",
        ),
        (
            fixture,
            &[
                "--to",
                "db/locked",
                "--port",
                "80",
                "--from",
                "spiffe://cluster.local/ns/db/sa/pg",
            ],
            "DENY",
        ),
    ];
    for (paths, args, expected) in cases {
        let (code, line) = check(&[paths], args);
        assert_eq!(code, 0, "{args:?}: exit {code}, output {line:?}");
        assert!(
            line.starts_with(expected),
            "{args:?}: expected a line starting with {expected:?}, got {line:?}"
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_decision() {
    let examples = examples();
    let (code, line) = check(
        &[&examples],
        &["--to", "nope/missing", "--port", "80", "--plaintext"],
    );
    assert_ne!(code, 0, "{line}");
    assert!(line.is_empty(), "no decision may be printed: {line}");
    let (code, _) = check(
        &[&examples],
        &[
            "--to",
            "shop/catalog-v1-0",
            "--port",
            "80",
            "--from",
            "not-a-spiffe-id",
        ],
    );
    assert_ne!(code, 0);
    let (code, _) = check(&[&examples], &["--to", "shop/catalog-v1-0", "--port", "80"]);
    assert_ne!(code, 0, "either --from or --plaintext is required");
}
