//! Pod enrollment through the real CNI chain (root; fails, never skips, without root or
//! Debian's containernetworking-plugins): pod sandboxes are network namespaces wired by
//! the reference `bridge` + `host-local` plugins, `weft cni install` chains `weft-cni`
//! after them, and the plugins are run as a container runtime runs them. A real
//! `weft control` (file mode: pods with explicit `status.podIPs`, as the kubelet would
//! report them) and a real `weft node --cni-socket` capture the pods in-pod; one pod calls
//! the other over HBONE and the server side sees the caller's SPIFFE identity. A pod added
//! before the mesh knows its workload is held: a call it starts in that window waits
//! (its SYN dropped and retried) and, once the workload arrives, goes through the capture
//! with the pod's identity instead of leaving the mesh in plaintext.

mod cni_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use cni_support::{
    DEBIAN_CNI_DIR, LogsOnFailure, Proc, Runtime, Sandbox, bridge_conflist, first_ip, http_get,
    known_pod, pod_socket, require_root_and_cni_plugins, run_ok, wait_for,
};
use serde_json::{Value, json};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/shop/sa/client";
const TOKEN: &str = "cni-test-node-token";

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

const MESH: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: client
  namespace: shop
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: server
  namespace: shop
";

/// A pod as the kubelet reports it once its sandbox has an address; `opt_out` labels it
/// `istio.io/dataplane-mode: none`.
fn pod_yaml(pod: &Sandbox, service_account: &str, ip: &str, opt_out: bool) -> String {
    let label = if opt_out {
        "\n    istio.io/dataplane-mode: none"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  uid: {uid}\n  \
         labels:\n    app: {sa}{label}\nspec:\n  nodeName: node-a\n  serviceAccountName: {sa}\n  \
         containers:\n  - name: app\n    image: weft\nstatus:\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n",
        name = pod.name,
        ns = pod.namespace,
        uid = pod.uid,
        sa = service_account,
    )
}

/// Writes a file through a rename, as an editor or a controller would.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The test's addresses: a loopback network of its own for the processes, a bridge and a
/// pod subnet of its own.
struct Net {
    control: Ipv4Addr,
    node: Ipv4Addr,
    bridge: String,
    subnet: String,
    tag: String,
}

impl Net {
    fn lease() -> Self {
        let n = weft_testkit::loopback_net();
        Self {
            control: Ipv4Addr::new(127, n, 0, 1),
            node: Ipv4Addr::new(127, n, 0, 2),
            bridge: format!("wcni{n}"),
            subnet: format!("10.233.{n}.0/24"),
            tag: format!("wcni{}x{n}", std::process::id()),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn start_control(net: &Net, dir: &Path) -> Proc {
    std::fs::write(
        dir.join("tokens.yaml"),
        format!("tokens:\n- token: \"{TOKEN}\"\n  node: \"node-a\"\n"),
    )
    .expect("tokens");
    std::fs::write(dir.join("node.token"), TOKEN).expect("node token");
    let log = std::fs::File::create(dir.join("control.log")).expect("log");
    let child = weft()
        .arg("control")
        .arg("--config-dir")
        .arg(dir.join("config"))
        .arg("--token-file")
        .arg(dir.join("tokens.yaml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--secure-addr", &format!("{}:15012", net.control)])
        .args(["--admin-addr", &format!("{}:15014", net.control)])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weft control");
    let proc = Proc(child);
    wait_for("the control plane's root certificate", || {
        dir.join("state/ca/root-cert.pem").exists()
    });
    proc
}

fn start_node(net: &Net, dir: &Path, socket: &Path) -> Proc {
    let log = std::fs::File::create(dir.join("node.log")).expect("log");
    let child = weft()
        .args(["node", "--node", "node-a"])
        .args(["--control", &format!("{}:15012", net.control)])
        .arg("--token-file")
        .arg(dir.join("node.token"))
        .arg("--ca-root")
        .arg(dir.join("state/ca/root-cert.pem"))
        .args(["--bind-ip", &net.node.to_string(), "--drain-timeout", "1"])
        .arg("--cni-socket")
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weft node");
    let proc = Proc(child);
    let ready = SocketAddr::from((net.node, 15021));
    wait_for("the node proxy's readiness", || {
        http_get(ready, "/healthz/ready").is_some()
    });
    proc
}

fn is_captured(socket: &Path, name: &str) -> bool {
    known_pod(socket, name).is_some_and(|p| p["captured"] == true)
}

/// Connections the node proxy accepted for a pod (reporter destination) from `principal`.
fn inbound_connections_from(net: &Net, principal: &str) -> u64 {
    let metrics = http_get(SocketAddr::from((net.node, 15020)), "/metrics").unwrap_or_default();
    let needle = format!("source_principal=\"{principal}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .filter(|l| l.contains("reporter=\"destination\"") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn call(client: &Sandbox, server_ip: &str) -> std::process::Output {
    client
        .exec(env!("CARGO_BIN_EXE_weft"))
        .args([
            "x",
            "call",
            &format!("http://{server_ip}:8080/"),
            "--timeout",
            "10",
        ])
        .output()
        .expect("run weft x call in the client pod")
}

/// `weft x call` from `client`, running while the test goes on.
fn call_in_background(client: &Sandbox, server_ip: &str) -> std::process::Child {
    client
        .exec(env!("CARGO_BIN_EXE_weft"))
        .args([
            "x",
            "call",
            &format!("http://{server_ip}:8080/"),
            "--timeout",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft x call in the client pod")
}

/// Outgoing SYNs the hold rules of `pod` dropped so far (0 without hold rules).
fn held_syns(pod: &Sandbox) -> u64 {
    let out = pod
        .exec("nft")
        .args(["list", "chain", "inet", "weft_capture", "hold_output"])
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let text = text.unwrap_or_default();
    text.split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[test]
fn pods_added_through_the_real_cni_chain_are_captured_talk_mtls_and_are_released() {
    require_root_and_cni_plugins();
    let net = Net::lease();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    let (bin, conf_dir, config) = (dir.join("bin"), dir.join("net.d"), dir.join("config"));
    for d in [&bin, &conf_dir, &config] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let socket = dir.join("run/cni.sock");
    let conflist = conf_dir.join("10-pods.conflist");
    let list = bridge_conflist(&net.tag, &net.bridge, &net.subnet, &dir.join("ipam"));
    std::fs::write(&conflist, list.to_string()).expect("conflist");
    let runtime = Runtime {
        conflist: conflist.clone(),
        cni_path: format!("{}:{DEBIAN_CNI_DIR}", bin.display()),
    };

    // A pod that started before weft was installed: only the cluster's own plugins ran.
    let server = Sandbox::create(format!("{}s", net.tag), "server-0", "shop", "uid-server");
    let server_ip = first_ip(&runtime.add(&server).expect("bridge + host-local ADD"));
    let _echo = Proc(
        server
            .exec(env!("CARGO_BIN_EXE_weft"))
            .args(["x", "echo", "--port", "8080", "--name", "server-0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo server in the server pod"),
    );

    // The install container chains weft-cni last.
    let out = run_ok(
        weft()
            .args(["cni", "install", "--bin-dir"])
            .arg(&bin)
            .arg("--conf-dir")
            .arg(&conf_dir)
            .arg("--socket")
            .arg(&socket),
    );
    assert!(out.contains("chained weft-cni"), "{out}");
    let chained: Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist).unwrap()).unwrap();
    let types: Vec<&str> = chained["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["bridge", "weft-cni"]);

    // No node proxy yet: ADD fails (the runtime retries the sandbox), nothing half-captured.
    let client = Sandbox::create(format!("{}c", net.tag), "client-0", "shop", "uid-client");
    let error = runtime
        .add(&client)
        .expect_err("ADD without a node proxy fails");
    assert_eq!(error["code"], 11, "{error}");
    assert!(
        error["msg"].as_str().unwrap().contains("not reachable"),
        "{error}"
    );
    runtime.del(&client, None).expect("DEL after a failed ADD");
    assert!(!client.captured());

    // Control plane and node proxy start; the server pod is found in its namespace.
    std::fs::write(config.join("mesh.yaml"), MESH).unwrap();
    write_atomic(
        &config.join("server.yaml"),
        &pod_yaml(&server, "server", &server_ip, false),
    );
    let _control = start_control(&net, dir);
    let _node = start_node(&net, dir, &socket);
    let _logs = LogsOnFailure(dir.to_owned());
    wait_for("the server pod to be found and captured", || {
        is_captured(&socket, "server-0")
    });
    assert!(server.captured());

    // A new pod through the whole chain: the plugin prints the bridge's result unchanged.
    let result = runtime.add(&client).expect("ADD through the chain");
    let client_ip = first_ip(&result);
    let bridge_only = bridge_conflist(&net.tag, &net.bridge, &net.subnet, &dir.join("ipam"));
    assert_eq!(result["cniVersion"], bridge_only["cniVersion"]);
    assert!(result["interfaces"].is_array(), "{result}");
    let listed = known_pod(&socket, "client-0").expect("the node proxy knows the client");
    assert_eq!(listed["uid"], "uid-client");
    assert_eq!(listed["netns"], client.path().display().to_string());
    runtime.check(&client, &result).expect("CHECK");

    // No workload has its address yet: the pod is held, and a call it starts waits.
    assert_eq!(listed["held"], true, "{listed}");
    assert_eq!(listed["captured"], false, "{listed}");
    let before = inbound_connections_from(&net, CLIENT_ID);
    let mut early_call = call_in_background(&client, &server_ip);
    wait_for("the early call's SYN to be held", || held_syns(&client) > 0);
    assert!(
        matches!(early_call.try_wait(), Ok(None)),
        "the early call must wait while the pod is held"
    );

    // The kubelet reports its address: the mesh enrolls it and the node captures it.
    let client_file = config.join("client.yaml");
    write_atomic(
        &client_file,
        &pod_yaml(&client, "client", &client_ip, false),
    );
    wait_for("the client pod to be captured", || {
        is_captured(&socket, "client-0")
    });
    assert!(client.captured());
    let answer = early_call.wait_with_output().expect("the early call ends");
    assert!(answer.status.success(), "early call failed: {answer:?}");
    wait_for("the server side to see the early call's identity", || {
        inbound_connections_from(&net, CLIENT_ID) > before
    });
    assert_eq!(known_pod(&socket, "client-0").unwrap()["held"], false);

    let before = inbound_connections_from(&net, CLIENT_ID);
    let answer = call(&client, &server_ip);
    assert!(answer.status.success(), "call failed: {answer:?}");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("server-0"),
        "{answer:?}"
    );
    wait_for("the server side to see the client's identity", || {
        inbound_connections_from(&net, CLIENT_ID) > before
    });

    // A label change takes the client out of the mesh, and back in.
    write_atomic(&client_file, &pod_yaml(&client, "client", &client_ip, true));
    wait_for("the client to be released", || {
        known_pod(&socket, "client-0").is_some_and(|p| p["captured"] == false)
    });
    assert!(!client.captured());
    write_atomic(
        &client_file,
        &pod_yaml(&client, "client", &client_ip, false),
    );
    wait_for("the client to be captured again", || {
        is_captured(&socket, "client-0")
    });

    // DEL releases it: rules gone, forgotten by the node proxy.
    runtime
        .del(&client, Some(&result))
        .expect("DEL through the chain");
    assert!(known_pod(&socket, "client-0").is_none());
    assert!(!client.captured());

    // Uninstall: every pod released, the plugin taken out of the chain.
    let out = run_ok(weft().args(["cni", "release-all", "--socket"]).arg(&socket));
    assert!(out.contains("released 1 captured pod"), "{out}");
    assert!(!server.captured());
    let after = known_pod(&socket, "server-0").expect("still listed");
    assert_eq!(after["captured"], false);
    assert_eq!(pod_socket(&socket, &json!({"op": "list"}))["ok"], true);
    run_ok(
        weft()
            .args(["cni", "uninstall", "--bin-dir"])
            .arg(&bin)
            .arg("--conf-dir")
            .arg(&conf_dir),
    );
    let unchained: Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist).unwrap()).unwrap();
    assert_eq!(unchained, bridge_only);
    assert!(!bin.join("weft-cni").exists());
    runtime.del(&server, None).expect("server DEL");
}
