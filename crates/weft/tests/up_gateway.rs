//! Gateways end to end through `weft up` (root: network namespaces; never skipped): a Gateway
//! of a class weft runs becomes a pod whose address `weft up` prints and routes from this
//! machine's root namespace, and requests made from here (the test process, as a user's
//! shell would) are served by it: Istio's bookinfo sample unchanged (`/productpage`), routing
//! by hostname and path, a weighted split, a Gateway added and removed on a running mesh,
//! and, in explicit mode, a gateway listening on its loopback pod address.
//!
//! Each test has its own `--prefix`, state, config directory and pod CIDRs (second octet
//! per test), so tests run in parallel without two meshes claiming the same address on this
//! machine. Every wait polls a condition with a deadline.

mod up_harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use up_harness::{Up, eventually, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(60);
/// How long a change of configuration may take to reach the gateway.
const CONVERGE: Duration = Duration::from_secs(30);

fn require_root_and_curl() {
    assert!(
        is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|out| out.status.success()),
        "these tests make requests with curl: install curl"
    );
}

/// Two nodes whose pod CIDRs are `10.<octet>.1.0/24` and `10.<octet>.2.0/24`.
fn nodes(octet: u8) -> String {
    (1..=2)
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}}}\n\
                 spec: {{podCIDR: 10.{octet}.{n}.0/24}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A config directory: the nodes of `octet`, files copied from `examples/` (a file named
/// `cluster.yaml` is left out: the nodes replace it), and `extra` files.
fn config(octet: u8, examples: &[&str], extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("config dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::write(dir.path().join("nodes.yaml"), nodes(octet)).expect("write nodes");
    for file in examples {
        let name = Path::new(file).file_name().expect("file name");
        std::fs::copy(root.join(file), dir.path().join(name)).expect("copy example");
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).expect("write extra file");
    }
    dir
}

/// `weft up DIR` with its own prefix and state directory.
fn start_up(dir: &Path) -> Up {
    start_up_with(dir, &[])
}

/// `weft up FLAGS.. DIR` with its own prefix and state directory.
fn start_up_with(dir: &Path, flags: &[&str]) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    let binary = env!("CARGO_BIN_EXE_weft").into();
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = flags.to_vec();
    args.push(dir);
    Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        binary,
        state,
        unique_prefix('g'),
        &args,
        WAIT,
    )
}

/// The first URL `weft up` printed for gateway `namespace/name` (`http://IP:PORT/`).
fn gateway_url(up: &mut Up, gateway: &str) -> String {
    let line = up.wait_line(&format!("gateway {gateway}: "));
    let (_, urls) = line.split_once(": ").expect("gateway line");
    assert!(
        !urls.contains("another weft up"),
        "this test's addresses must be its own: {line}"
    );
    urls.split(", ").next().expect("a URL").to_owned()
}

/// `curl` from this machine: (HTTP status, body).
fn curl(args: &[&str]) -> (String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

/// Whether this machine's root namespace routes the address of `url` (`http://IP:PORT/`).
/// (A request to an unrouted address may still be answered by whatever the machine's
/// default route leads to, so the route itself is checked.)
fn host_routes(url: &str) -> bool {
    let ip = (url.trim_start_matches("http://").split(':').next()).expect("IP in the URL");
    let out = Command::new("ip")
        .args(["-o", "route", "show", "exact", &format!("{ip}/32")])
        .output()
        .expect("run ip route");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// `"pod":"NAME"` of each echo answer in `text`, in order.
fn answering_pods(text: &str) -> Vec<String> {
    text.match_indices("\"pod\":\"")
        .filter_map(|(at, key)| {
            let rest = &text[at + key.len()..];
            rest.split_once('"').map(|(pod, _)| pod.to_owned())
        })
        .collect()
}

/// Waits until `url` answers `status` from this machine; returns the body.
fn wait_status(url: &str, extra: &[&str], status: &str) -> String {
    eventually(CONVERGE, || {
        let mut args = extra.to_vec();
        args.push(url);
        match curl(&args) {
            (got, body) if got == status => Ok(body),
            (got, body) => Err(format!("{url}: {got} {body}")),
        }
    })
}

#[test]
fn bookinfo_serves_the_productpage_from_the_machines_shell() {
    require_root_and_curl();
    let files = ["bookinfo/bookinfo.yaml", "bookinfo/bookinfo-gateway.yaml"];
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  \
                     labels: {istio.io/dataplane-mode: ambient}\n";
    let config = config(201, &files, &[("namespace.yaml", namespace)]);
    let mut up = start_up(config.path());
    let base = gateway_url(&mut up, "default/bookinfo-gateway");
    up.wait_line("mesh is up");
    assert!(
        (up.lines().iter()).any(|l| l.contains("default/bookinfo-gateway-istio-")
            && l.contains(" gateway ")
            && l.ends_with("spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio")),
        "{}",
        up.output()
    );

    let page = format!("{base}productpage");
    let body = wait_status(&page, &[], "200");
    assert_eq!(answering_pods(&body), ["productpage-v1-0"], "{body}");
    for path in [
        "static/css/style.css",
        "login",
        "logout",
        "api/v1/products/0",
    ] {
        let (status, body) = curl(&[&format!("{base}{path}")]);
        assert_eq!(status, "200", "/{path}: {body}");
        assert_eq!(answering_pods(&body), ["productpage-v1-0"], "/{path}");
    }
    for path in ["", "productpage/x", "reviews/0"] {
        let (status, body) = curl(&[&format!("{base}{path}")]);
        assert_eq!(status, "404", "/{path} matches no route: {body}");
    }

    // Killed, weft up cannot clean up: the route stays until `weft down` removes the link.
    up.signal("-KILL");
    up.wait_exit();
    assert!(host_routes(&base), "a killed weft up leaves its route");
    let down = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["down", "--prefix", &up.prefix, "--state-dir"])
        .arg(&up.state_dir)
        .output()
        .expect("run weft down");
    assert!(down.status.success(), "{down:?}");
    assert!(!host_routes(&base), "weft down removed the route");
    // The link's name for prefixes as short as the tests' (`<prefix>-host`).
    let link = format!("{}-host", up.prefix);
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!(" {link}@")),
        "link {link} left:\n{links}"
    );
}

/// Two versions of one app in an enrolled namespace, and a Gateway of the built-in class
/// `weft` routing by hostname and path.
const STORE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: store, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: blue, namespace: store}
spec:
  selector: {matchLabels: {app: blue}}
  template:
    metadata: {labels: {app: blue}}
    spec:
      containers:
      - {name: app, image: example/blue, ports: [{containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: green, namespace: store}
spec:
  selector: {matchLabels: {app: green}}
  template:
    metadata: {labels: {app: green}}
    spec:
      containers:
      - {name: app, image: example/green, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: blue, namespace: store}
spec:
  selector: {app: blue}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: green, namespace: store}
spec:
  selector: {app: green}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: front, namespace: store}
spec:
  gatewayClassName: weft
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: '*.example.com'}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: blue, namespace: store}
spec:
  parentRefs: [{name: front}]
  hostnames: [blue.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /green}}]
    backendRefs: [{name: green, port: 80}]
  - backendRefs: [{name: blue, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: store}
spec:
  parentRefs: [{name: front}]
  hostnames: [split.example.com]
  rules:
  - backendRefs:
    - {name: blue, port: 80, weight: 50}
    - {name: green, port: 80, weight: 50}
";

/// A second Gateway added while the mesh runs.
const SIDE_DOOR: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: side, namespace: store}
spec:
  gatewayClassName: weft
  listeners: [{name: web, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: side, namespace: store}
spec:
  parentRefs: [{name: side}]
  rules: [{backendRefs: [{name: green, port: 80}]}]
";

#[test]
fn a_gateway_routes_by_hostname_and_path_splits_and_follows_edits() {
    require_root_and_curl();
    let config = config(202, &[], &[("store.yaml", STORE)]);
    let mut up = start_up(config.path());
    let base = gateway_url(&mut up, "store/front");
    up.wait_line("mesh is up");
    assert!(host_routes(&base));
    let host = |name: &str| format!("Host: {name}.example.com");

    let body = wait_status(&base, &["-H", &host("blue")], "200");
    assert_eq!(answering_pods(&body), ["blue-0"], "{body}");
    let (status, body) = curl(&["-H", &host("blue"), &format!("{base}green/x")]);
    assert_eq!(
        (status.as_str(), answering_pods(&body)),
        ("200", vec!["green-0".to_owned()])
    );
    let (status, body) = curl(&["-H", "Host: blue.example.org", &base]);
    assert_eq!(status, "404", "outside the listener's hostname: {body}");
    let (status, body) = curl(&["-H", &host("nobody"), &base]);
    assert_eq!(status, "404", "no route for this hostname: {body}");

    // 200 requests on one connection, split 50/50: each side well within 4 sigma of 100.
    let (_, body) = curl(&["-H", &host("split"), &format!("{base}[1-200]")]);
    let pods = answering_pods(&body);
    assert_eq!(pods.len(), 200, "every request answered: {body}");
    let blue = pods.iter().filter(|p| *p == "blue-0").count();
    assert!((72..=128).contains(&blue), "blue answered {blue} of 200");

    // A Gateway added on the running mesh gets its pod, its address and its route.
    std::fs::write(config.path().join("side.yaml"), SIDE_DOOR).expect("write side.yaml");
    let side = gateway_url(&mut up, "store/side");
    assert!(side.ends_with(":8080/"), "{side}");
    let body = wait_status(&side, &[], "200");
    assert_eq!(answering_pods(&body), ["green-0"], "{body}");
    // ... and removing it removes both.
    std::fs::remove_file(config.path().join("side.yaml")).expect("remove side.yaml");
    up.wait_line("removed pod store/side-weft-");
    assert!(!host_routes(&side), "the removed gateway's route is gone");
    let (status, _) = curl(&["-H", &host("blue"), &base]);
    assert_eq!(status, "200", "the other gateway is untouched");

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}

#[test]
fn in_explicit_mode_a_gateway_listens_on_its_loopback_pod_address() {
    require_root_and_curl();
    let config = config(203, &[], &[("store.yaml", STORE)]);
    let mut up = start_up_with(config.path(), &["--explicit"]);
    let base = gateway_url(&mut up, "store/front");
    up.wait_line("mesh is up");
    assert!(
        base.starts_with("http://127."),
        "a loopback address: {base}"
    );
    let body = wait_status(&base, &["-H", "Host: blue.example.com"], "200");
    assert_eq!(answering_pods(&body), ["blue-0"], "{body}");
    let (status, _) = curl(&["-H", "Host: nobody.example.com", &base]);
    assert_eq!(status, "404");

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}
