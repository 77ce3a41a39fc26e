//! Waypoints end to end through `weft up` (root: network namespaces; never skipped): the
//! waypoint Gateway runs as its own pod, pods' requests to a service that uses it are routed
//! by path and header, split by weight and denied by an L7 policy; `weft waypoint apply` and
//! a new HTTPRoute on a running mesh change what a pod sees; filters (rewrite, header,
//! redirect), a request timeout, h2c, gRPC, WebSocket, an ALLOW policy by caller identity, and the
//! waypoint's request metrics and access log.
//!
//! Requests are made from inside a pod with `weft exec POD -- curl ...` (curl can set
//! headers and methods and makes many requests on one connection, so a split is measured in
//! one process). Every wait polls a condition with a deadline; each test has its own
//! `--prefix`, state and config directory, so they run in parallel.

mod up_harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use up_harness::{Up, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(60);
/// How long a change of configuration may take to reach every proxy.
const CONVERGE: Duration = Duration::from_secs(30);

fn require_root_and_curl() {
    assert!(
        is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|out| out.status.success()),
        "these tests make requests with curl from inside pods: install curl"
    );
}

/// `weft up DIR` with its own prefix and state directory.
fn start_up(dir: &Path) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    let binary = env!("CARGO_BIN_EXE_weft").into();
    let dir = dir.to_str().expect("utf-8 path");
    Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        binary,
        state,
        unique_prefix('w'),
        &[dir],
        WAIT,
    )
}

/// A config directory with the given example files.
fn config_with_examples(files: &[&str]) -> tempfile::TempDir {
    let config = tempfile::tempdir().expect("config dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for file in files {
        std::fs::copy(examples.join(file), config.path().join(file)).expect("copy example");
    }
    config
}

/// `curl -s ARGS` as `pod`: (exit status, stdout).
fn curl(up: &Up, pod: &str, args: &[&str]) -> (bool, String) {
    let mut command = vec!["curl", "-sS", "--max-time", "5"];
    command.extend(args);
    let output = up.exec(pod, &command);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), text)
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

/// `"source":"IP:PORT"` of the first echo answer in `text`: who connected to the backend.
fn source_ip(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("\"source\":\"")?;
    let (addr, _) = rest.split_once('"')?;
    Some(addr.rsplit_once(':')?.0.to_owned())
}

/// The address of the waypoint pod `namespace/name-*` from `weft up`'s pod table.
fn waypoint_ip(up: &Up, namespace: &str, name: &str) -> String {
    let pod = format!("{namespace}/{name}-");
    let line = (up.lines().iter())
        .find(|l| l.contains(&pod) && l.contains(" waypoint "))
        .unwrap_or_else(|| panic!("no waypoint pod {pod}* in:\n{}", up.output()));
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
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits until `url` answers 200 from `pod` through the waypoint at `waypoint`.
fn wait_through_waypoint(up: &Up, pod: &str, url: &str, waypoint: &str) {
    eventually(CONVERGE, || {
        let (ok, text) = curl(up, pod, &["-f", url]);
        match source_ip(&text) {
            Some(ip) if ok && ip == waypoint => Ok(()),
            _ => Err(format!("ok={ok}: {text}")),
        }
    });
}

#[test]
fn waypoint_routes_splits_and_denies_a_pods_requests() {
    require_root_and_curl();
    let files = ["cluster.yaml", "frontend.yaml", "shop.yaml", "reviews.yaml"];
    let config = config_with_examples(&files);
    let mut up = start_up(config.path());
    up.wait_line("mesh is up");
    let waypoint = waypoint_ip(&up, "shop", "waypoint");
    let web = "frontend/web-0";
    // The backend is called by the waypoint (its own HBONE tunnel), not by web.
    wait_through_waypoint(&up, web, "http://reviews.shop/", &waypoint);

    // Routes by path and by header go to v2 only.
    let (_, text) = curl(&up, web, &["http://reviews.shop/v2/[1-20]"]);
    let pods = answering_pods(&text);
    assert_eq!(pods.len(), 20, "{text}");
    assert!(pods.iter().all(|p| p == "reviews-v2-0"), "{pods:?}");
    let (_, text) = curl(
        &up,
        web,
        &["-H", "x-version: v2", "http://reviews.shop/[1-20]"],
    );
    let pods = answering_pods(&text);
    assert_eq!(pods.len(), 20, "{text}");
    assert!(pods.iter().all(|p| p == "reviews-v2-0"), "{pods:?}");

    // The default rule splits 90/10: 400 requests, v2 within 4 standard deviations of 40.
    let (_, text) = curl(&up, web, &["http://reviews.shop/[1-400]"]);
    let pods = answering_pods(&text);
    assert_eq!(pods.len(), 400, "every request answered: {text}");
    let v2 = pods.iter().filter(|p| *p == "reviews-v2-0").count();
    let v1 = pods.iter().filter(|p| *p == "reviews-v1-0").count();
    assert_eq!(v1 + v2, 400, "{pods:?}");
    assert!(
        (16..=64).contains(&v2),
        "v2 answered {v2} of 400 (expected ~40)"
    );

    // The L7 policy at the waypoint: /admin and DELETE are denied with 403.
    for args in [
        &["-w", " %{http_code}", "http://reviews.shop/admin"][..],
        &["-w", " %{http_code}", "http://reviews.shop/admin/users"],
        &[
            "-w",
            " %{http_code}",
            "-X",
            "DELETE",
            "http://reviews.shop/item",
        ],
    ] {
        let (_, text) = curl(&up, web, args);
        assert_eq!(text, "RBAC: access denied 403", "{args:?}");
    }
    let (ok, text) = curl(&up, web, &["-f", "http://reviews.shop/administrator"]);
    assert!(ok, "/administrator is not under /admin: {text}");
    // Around the waypoint: reviews' pods accept only the waypoint's identity (L4 policy).
    let (ok, text) = curl(&up, web, &["http://reviews-v1.shop/admin"]);
    assert!(!ok, "a direct call must be refused at L4: {text}");

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}

/// A namespace with two versions of one service and no waypoint yet.
const STORE: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: store
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-a, namespace: store}
spec:
  selector: {matchLabels: {app: cart, version: a}}
  template:
    metadata: {labels: {app: cart, version: a}}
    spec:
      containers:
      - {name: cart, image: weft, command: [weft, x, echo], args: [--port, '8080']}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-b, namespace: store}
spec:
  selector: {matchLabels: {app: cart, version: b}}
  template:
    metadata: {labels: {app: cart, version: b}}
    spec:
      containers:
      - {name: cart, image: weft, command: [weft, x, echo], args: [--port, '8080']}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: store}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: cart-b, namespace: store}
spec:
  selector: {app: cart, version: b}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
";

/// Every request for cart goes to version b; /admin is denied.
const CART_L7: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: store}
spec:
  parentRefs: [{group: '', kind: Service, name: cart, port: 80}]
  rules:
  - backendRefs: [{name: cart-b, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-no-admin, namespace: store}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: ['/admin*']}}]}]
";

#[test]
fn waypoint_apply_and_a_route_on_a_running_mesh_change_what_a_pod_sees() {
    require_root_and_curl();
    let config = config_with_examples(&["cluster.yaml", "frontend.yaml"]);
    std::fs::write(config.path().join("store.yaml"), STORE).expect("write store.yaml");
    let mut up = start_up(config.path());
    up.wait_line("mesh is up");
    let web = "frontend/web-0";
    // No waypoint: both versions answer (one connection per request: the node proxy
    // balances connections), /admin too.
    let seen = eventually(CONVERGE, || {
        let (_, text) = curl(
            &up,
            web,
            &["-H", "Connection: close", "http://cart.store/[1-40]"],
        );
        let pods = answering_pods(&text);
        let both = ["cart-a-0", "cart-b-0"]
            .iter()
            .all(|p| pods.iter().any(|s| s == p));
        if both { Ok(pods) } else { Err(text) }
    });
    assert_eq!(seen.len(), 40);
    let (ok, text) = curl(&up, web, &["-f", "http://cart.store/admin"]);
    assert!(ok, "no policy yet: {text}");

    let dir = config.path().to_str().expect("utf-8 path");
    let apply = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["waypoint", "apply", "-n", "store", "--enroll-namespace"])
        .args(["--config-dir", dir])
        .output()
        .expect("run weft waypoint apply");
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    std::fs::write(config.path().join("cart-l7.yaml"), CART_L7).expect("write cart-l7.yaml");
    let added = up.wait_line("added pod store/waypoint-");
    let waypoint = added
        .split(" (")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the added pod's address")
        .to_owned();
    let ready = up.wait_line("waypoint store/waypoint (store/waypoint-");
    assert!(ready.ends_with("is ready"), "{ready}");

    // Through the waypoint now: only version b answers, /admin is denied.
    wait_through_waypoint(&up, web, "http://cart.store/", &waypoint);
    let pods = eventually(CONVERGE, || {
        let (_, text) = curl(&up, web, &["http://cart.store/[1-40]"]);
        let pods = answering_pods(&text);
        let only_b = pods.len() == 40 && pods.iter().all(|p| p == "cart-b-0");
        if only_b { Ok(pods) } else { Err(text) }
    });
    assert_eq!(pods.len(), 40);
    let (_, text) = curl(
        &up,
        web,
        &["-w", " %{http_code}", "http://cart.store/admin"],
    );
    assert_eq!(text, "RBAC: access denied 403");

    // The waypoint goes away with its Gateway.
    let delete = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["waypoint", "delete", "-n", "store", "--config-dir", dir])
        .output()
        .expect("run weft waypoint delete");
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    up.wait_line("removed pod store/waypoint-");
    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}

/// A namespace whose every service goes through its waypoint, with filters, a timeout and
/// an ALLOW policy for frontend/web only.
const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: app
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: app}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: app}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - {name: echo, image: weft, command: [weft, x, echo], args: [--port, '8080']}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: app}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: app}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-via, value: waypoint}]}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: echo, port: 80}]
  - backendRefs: [{name: echo, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: app}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/frontend/sa/web]}}]}]
";

/// A unary gRPC call with curl: an empty message in gRPC framing, headers and trailers shown.
const GRPC_SCRIPT: &str = r#"printf '\x00\x00\x00\x00\x00' | curl -sS --max-time 5 \
  --http2-prior-knowledge -D - -H 'content-type: application/grpc' -H 'te: trailers' \
  --data-binary @- http://echo.app/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo"#;

/// A WebSocket client in bash: the upgrade request, a masked text frame "hi" and a masked
/// close frame, then everything the server sends until it closes.
const WEBSOCKET_SCRIPT: &str = r#"exec 3<>/dev/tcp/echo.app/80
printf 'GET /ws HTTP/1.1\r\nHost: echo.app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x82\x00\x00\x00\x00hi\x88\x80\x00\x00\x00\x00' >&3
timeout 5 cat <&3"#;

#[test]
fn waypoint_filters_times_out_speaks_h2c_allows_by_identity_and_reports() {
    require_root_and_curl();
    let config = config_with_examples(&["cluster.yaml", "frontend.yaml"]);
    std::fs::write(config.path().join("app.yaml"), APP).expect("write app.yaml");
    let mut up = start_up(config.path());
    up.wait_line("mesh is up");
    let waypoint = waypoint_ip(&up, "app", "waypoint");
    let web = "frontend/web-0";
    wait_through_waypoint(&up, web, "http://echo.app/", &waypoint);

    // URLRewrite and RequestHeaderModifier reach the backend.
    let (_, text) = curl(&up, web, &["http://echo.app/api/items"]);
    assert!(text.contains("\"path\":\"/v1/items\""), "{text}");
    assert!(text.contains("\"X-Via\":[\"waypoint\"]"), "{text}");
    // RequestRedirect answers at the waypoint.
    let (_, text) = curl(
        &up,
        web,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "http://echo.app/old/a",
        ],
    );
    assert_eq!(text, "301 http://echo.app/new/a");
    // timeouts.request: the echo answers after 2 s, the waypoint gives up with 504.
    let (_, text) = curl(
        &up,
        web,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://echo.app/slow?delay=2s",
        ],
    );
    assert_eq!(text, "504");
    // h2c from the client; the port is declared `http`, so HTTP/1.1 to the backend (as
    // Istio: a declared port decides). gRPC below stays HTTP/2.
    let (_, text) = curl(&up, web, &["--http2-prior-knowledge", "http://echo.app/h2"]);
    assert!(text.contains("\"proto\":\"HTTP/1.1\""), "{text}");
    // A gRPC call (the echo's GrpcEcho/Echo, an empty request) over h2c.
    let grpc = up.exec(web, &["bash", "-c", GRPC_SCRIPT]);
    let answer = String::from_utf8_lossy(&grpc.stdout);
    assert!(answer.starts_with("HTTP/2 200"), "{answer:?}");
    assert!(
        answer.contains("echo-0") && answer.contains("grpc-status: 0"),
        "{answer:?}"
    );
    // A WebSocket upgrade through the waypoint: a masked text frame "hi" comes back, then
    // the close handshake ends the connection.
    let ws = up.exec(web, &["bash", "-c", WEBSOCKET_SCRIPT]);
    let answer = String::from_utf8_lossy(&ws.stdout);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    assert!(
        ws.stdout.ends_with(b"\r\n\r\n\x81\x02hi\x88\x00"),
        "{answer:?}"
    );
    // The ALLOW policy admits only web's identity.
    let (_, text) = curl(
        &up,
        "frontend/reports-0",
        &["-w", " %{http_code}", "http://echo.app/"],
    );
    assert_eq!(text, "RBAC: access denied 403");

    // Request metrics and access log, reported as the waypoint.
    let pod = (up.lines().iter())
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("app/waypoint-"))
        })
        .expect("waypoint pod in the table")
        .to_owned();
    let metrics = format!("http://{waypoint}:15020/metrics");
    let (_, text) = curl(&up, &pod, &[&metrics]);
    for expected in [
        "response_code=\"403\"",
        "response_code=\"504\"",
        "response_code=\"301\"",
        "source_principal=\"spiffe://cluster.local/ns/frontend/sa/reports\"",
        "request_protocol=\"grpc\"",
    ] {
        let line = text.lines().find(|l| {
            l.starts_with("istio_requests_total{reporter=\"waypoint\"") && l.contains(expected)
        });
        assert!(
            line.is_some(),
            "no istio_requests_total with {expected}:\n{text}"
        );
    }
    let logs = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["logs", &pod, "--prefix", &up.prefix, "--state-dir"])
        .arg(&up.state_dir)
        .output()
        .expect("run weft logs");
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.lines().any(|l| l.contains("weft::access")
            && l.contains(r#""path":"/h2""#)
            && l.contains(r#""protocol":"HTTP/2""#)
            && l.contains(r#""response_code":200"#)),
        "{logs}"
    );
    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}
