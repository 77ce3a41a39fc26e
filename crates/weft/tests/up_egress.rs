//! Egress end to end through `weft up` (root: network namespaces; never skipped): a TLS
//! server outside the mesh (`openssl s_server` in a pod of a namespace that is not enrolled,
//! with a certificate from a private CA), a ServiceEntry for `api.example.com` that uses a
//! waypoint, and a BackendTLSPolicy whose CA is in a ConfigMap. A pod's plain
//! `curl http://api.example.com/` is answered by the TLS server through the waypoint, which
//! originated TLS with the right SNI (the server sends a fatal alert to any other name and
//! only presents the CA-signed certificate for that one). Then the mesh config's
//! `outboundTrafficPolicy.mode: REGISTRY_ONLY` makes the node proxy refuse an unregistered
//! address (logged with reason `registry_only`) while the ServiceEntry still works.

mod up_harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use up_harness::{Up, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(60);
/// How long a change of configuration may take to reach every proxy.
const CONVERGE: Duration = Duration::from_secs(30);
const HOST: &str = "api.example.com";

fn require_root_and_tools() {
    assert!(
        is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
    for tool in ["curl", "openssl"] {
        let found = Command::new(tool).arg("version").output();
        let found = found.is_ok() || Command::new(tool).arg("--version").output().is_ok();
        assert!(found, "this test needs {tool}: install it");
    }
}

/// Runs `openssl ARGS` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private CA (`ca.crt`), a certificate for [`HOST`] it signed (`api.crt`/`api.key`) and
/// a self-signed one for another name (`other.crt`/`other.key`).
fn certificates(dir: &Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = [
        ["req", "-x509"].as_slice(),
        &key,
        &["-keyout", "ca.key", "-out", "ca.crt"],
    ];
    openssl(
        dir,
        &[
            ca.concat(),
            vec!["-days", "2", "-subj", "/CN=weft egress test CA"],
        ]
        .concat(),
    );
    let csr = [
        ["req"].as_slice(),
        &key,
        &["-keyout", "api.key", "-out", "api.csr"],
    ];
    openssl(
        dir,
        &[csr.concat(), vec!["-subj", "/CN=api.example.com"]].concat(),
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{HOST}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "api.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let other = [
        ["req", "-x509"].as_slice(),
        &key,
        &["-keyout", "other.key", "-out", "other.crt"],
    ];
    openssl(
        dir,
        &[
            other.concat(),
            vec!["-days", "2", "-subj", "/CN=other.invalid"],
        ]
        .concat(),
    );
}

/// The TLS server's namespace (not enrolled) and the egress namespace with its waypoint.
fn topology(certs: &Path) -> String {
    let path = |name: &str| certs.join(name).to_str().expect("utf-8 path").to_owned();
    format!(
        "\
apiVersion: v1
kind: Namespace
metadata: {{name: outside}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tls, namespace: outside}}
spec:
  selector: {{matchLabels: {{app: tls}}}}
  template:
    metadata: {{labels: {{app: tls}}}}
    spec:
      containers:
      - name: tls
        image: openssl
        command: [openssl, s_server, -accept, '8443', -www, -cert, {other_crt}, -key, {other_key},
          -cert2, {api_crt}, -key2, {api_key}, -servername, {HOST}, -servername_fatal]
---
apiVersion: v1
kind: Namespace
metadata:
  name: egress
  labels: {{istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: egress}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
",
        other_crt = path("other.crt"),
        other_key = path("other.key"),
        api_crt = path("api.crt"),
        api_key = path("api.key"),
    )
}

/// The ServiceEntry (using the waypoint, endpoint the TLS pod), its BackendTLSPolicy and
/// the CA ConfigMap.
fn egress(server_ip: &str, ca_pem: &str) -> String {
    let ca: Vec<String> = ca_pem.lines().map(|l| format!("    {l}")).collect();
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api
  namespace: egress
  labels: {{istio.io/use-waypoint: waypoint}}
spec:
  hosts: [{HOST}]
  addresses: [240.240.0.10]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 8443}}]
  endpoints: [{{address: {server_ip}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: api-ca, namespace: egress}}
data:
  ca.crt: |
{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: api-tls, namespace: egress}}
spec:
  targetRefs: [{{group: networking.istio.io, kind: ServiceEntry, name: api}}]
  validation:
    hostname: {HOST}
    caCertificateRefs: [{{group: '', kind: ConfigMap, name: api-ca}}]
",
        ca.join("\n")
    )
}

const REGISTRY_ONLY: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
";

/// `weft up DIR` with its own prefix and state directory.
fn start_up(dir: &Path) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    let binary = env!("CARGO_BIN_EXE_weft").into();
    let dir = dir.to_str().expect("utf-8 path");
    Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        binary,
        state,
        unique_prefix('e'),
        &[dir],
        WAIT,
    )
}

/// `curl -sS ARGS` as `pod`: (exit status, stdout and stderr).
fn curl(up: &Up, pod: &str, args: &[&str]) -> (bool, String) {
    let mut command = vec!["curl", "-sS", "--max-time", "5"];
    command.extend(args);
    let output = up.exec(pod, &command);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The IP column of the pod `key` (`namespace/name`) in `weft up`'s table.
fn pod_ip(up: &Up, key: &str) -> String {
    let line = (up.lines().iter())
        .find(|l| l.split_whitespace().nth(1) == Some(key))
        .unwrap_or_else(|| panic!("no pod {key} in:\n{}", up.output()));
    line.split_whitespace()
        .nth(2)
        .expect("IP column")
        .to_owned()
}

/// Polls `check` until it returns `Ok`, failing with its last error after `limit`.
fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("not in time; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Both node proxies' logs.
fn node_logs(up: &Up) -> String {
    ["node-node-a", "node-node-b"]
        .iter()
        .map(|node| {
            let output = Command::new(env!("CARGO_BIN_EXE_weft"))
                .args(["logs", node, "--prefix", &up.prefix, "--state-dir"])
                .arg(&up.state_dir)
                .output()
                .expect("run weft logs");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

#[test]
fn a_pods_plain_http_leaves_through_the_waypoint_as_tls_and_registry_only_refuses_the_rest() {
    require_root_and_tools();
    let certs = tempfile::tempdir().expect("certificate dir");
    certificates(certs.path());
    let config = tempfile::tempdir().expect("config dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for file in ["cluster.yaml", "frontend.yaml"] {
        std::fs::copy(examples.join(file), config.path().join(file)).expect("copy example");
    }
    std::fs::write(config.path().join("topology.yaml"), topology(certs.path())).unwrap();
    let mut up = start_up(config.path());
    up.wait_line("mesh is up");
    let server = pod_ip(&up, "outside/tls-0");
    let ca = std::fs::read_to_string(certs.path().join("ca.crt")).unwrap();
    std::fs::write(config.path().join("egress.yaml"), egress(&server, &ca)).unwrap();

    // Plain HTTP from the pod; TLS (SNI api.example.com, CA-verified) from the waypoint.
    let web = "frontend/web-0";
    let url = format!("http://{HOST}/");
    let answer = eventually(CONVERGE, || {
        let (ok, text) = curl(&up, web, &["-f", &url]);
        if ok && text.contains("s_server") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        answer.contains("TLSv1.3") || answer.contains("TLSv1.2"),
        "{answer}"
    );

    // REGISTRY_ONLY: an address nobody registered is refused by the node proxy.
    let unregistered = "http://10.244.1.250:8080/";
    let (ok, _) = curl(&up, web, &[unregistered]);
    assert!(!ok, "nothing listens there");
    assert!(
        !node_logs(&up).contains("registry_only"),
        "ALLOW_ANY refuses nothing"
    );
    std::fs::write(config.path().join("mesh.yaml"), REGISTRY_ONLY).unwrap();
    eventually(CONVERGE, || {
        let (ok, text) = curl(&up, web, &[unregistered]);
        let logs = node_logs(&up);
        let refused = logs
            .lines()
            .any(|l| l.contains("weft::access") && l.contains("registry_only"));
        if !ok && refused {
            Ok(())
        } else {
            Err(format!("{text}\n{logs}"))
        }
    });
    let (ok, text) = curl(&up, web, &["-f", &url]);
    assert!(
        ok && text.contains("s_server"),
        "the ServiceEntry stays reachable: {text}"
    );

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}
