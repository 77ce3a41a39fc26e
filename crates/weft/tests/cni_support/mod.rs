//! What the CNI end-to-end test needs around the weft binary: a container runtime's side of
//! CNI (run each plugin of a configuration list in order, as libcni does: environment,
//! configuration on stdin with the previous result, result on stdout; DEL in reverse
//! order with the cached result), network namespaces as pod sandboxes, processes killed
//! on drop, and polling with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Deadline of every wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where Debian's `containernetworking-plugins` puts the reference plugins.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// Fails (never skips) without root and the reference plugins.
pub fn require_root_and_cni_plugins() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    assert!(
        root,
        "this test creates network namespaces and bridges: run it as root (CI does)"
    );
    for plugin in ["bridge", "host-local"] {
        assert!(
            Path::new(DEBIAN_CNI_DIR).join(plugin).exists(),
            "{DEBIAN_CNI_DIR}/{plugin} is missing: install Debian's containernetworking-plugins \
             (scripts/test does)"
        );
    }
}

/// Polls `check` every 20 ms until it holds, for at most [`WAIT`].
///
/// # Panics
/// With `what` when time runs out.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints the processes' logs in `dir` when the test fails (dropped while panicking).
pub struct LogsOnFailure(pub PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["control.log", "node.log"] {
            let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {name} (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command`, failing the test with its output when it fails.
pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod sandbox: a named network namespace (deleted on drop) and the pod's identity as
/// kubelet passes it in `CNI_ARGS`.
pub struct Sandbox {
    pub netns: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl Sandbox {
    pub fn create(netns: String, name: &str, namespace: &str, uid: &str) -> Self {
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        let sandbox = Self {
            netns,
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
        };
        // The runtime brings the sandbox's loopback up itself (containerd's loopback
        // plugin), apart from the pod network's configuration list.
        run_ok(sandbox.exec("ip").args(["link", "set", "lo", "up"]));
        sandbox
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.netns)
    }

    /// `ip netns exec <netns> ...`
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// Whether weft's redirect rules are installed in the sandbox.
    pub fn captured(&self) -> bool {
        let out = self.exec("nft").args(["list", "tables"]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("weft_capture"))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// A CNI configuration list and the directories the runtime searches for plugins.
pub struct Runtime {
    pub conflist: PathBuf,
    pub cni_path: String,
}

/// A CNI result or error object, and whether the plugin succeeded.
pub type Outcome = Result<Value, Value>;

impl Runtime {
    fn list(&self) -> Value {
        let text = std::fs::read_to_string(&self.conflist).expect("read conflist");
        serde_json::from_str(&text).expect("conflist is JSON")
    }

    /// ADD through every plugin in order; the last result, or the first error.
    pub fn add(&self, pod: &Sandbox) -> Outcome {
        let list = self.list();
        let mut prev: Option<Value> = None;
        for plugin in &plugins(&list) {
            let result = self.exec("ADD", pod, &plugin_conf(&list, plugin, prev.as_ref()))?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through every plugin in reverse order, each given the cached ADD result.
    pub fn del(&self, pod: &Sandbox, cached: Option<&Value>) -> Outcome {
        let list = self.list();
        for plugin in plugins(&list).iter().rev() {
            self.exec("DEL", pod, &plugin_conf(&list, plugin, cached))?;
        }
        Ok(Value::Null)
    }

    /// CHECK through every plugin in order with the cached ADD result.
    pub fn check(&self, pod: &Sandbox, cached: &Value) -> Outcome {
        let list = self.list();
        for plugin in &plugins(&list) {
            self.exec("CHECK", pod, &plugin_conf(&list, plugin, Some(cached)))?;
        }
        Ok(Value::Null)
    }

    fn exec(&self, command: &str, pod: &Sandbox, conf: &Value) -> Outcome {
        let kind = conf["type"].as_str().expect("plugin type");
        let binary = self
            .cni_path
            .split(':')
            .map(|dir| Path::new(dir).join(kind))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {kind} not in {}", self.cni_path));
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            pod.namespace, pod.name, pod.netns, pod.uid
        );
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &pod.netns)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
        drop(stdin);
        let out = child.wait_with_output().expect("plugin output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!(
                    "{kind} {command} printed no JSON ({e}): {stdout} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        };
        if out.status.success() {
            Ok(parsed)
        } else {
            Err(parsed)
        }
    }
}

fn plugins(list: &Value) -> Vec<Value> {
    list["plugins"].as_array().expect("plugins").clone()
}

/// A plugin's configuration as libcni builds it from the list.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// A bridge + host-local configuration list on bridge `bridge` with `subnet`.
pub fn bridge_conflist(name: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir,
            }
        }]
    })
}

/// The first IPv4 address of a CNI result.
pub fn first_ip(result: &Value) -> String {
    let cidr = result["ips"][0]["address"]
        .as_str()
        .expect("result has an address");
    cidr.split('/').next().unwrap_or_default().to_owned()
}

/// One request on the node proxy's pod socket.
pub fn pod_socket(socket: &Path, request: &Value) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("pod socket");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    writeln!(stream, "{request}").expect("send");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("answer");
    serde_json::from_str(&line).expect("JSON answer")
}

/// The pod socket's entry for the pod named `name`, if known.
pub fn known_pod(socket: &Path, name: &str) -> Option<Value> {
    let list = pod_socket(socket, &json!({"op": "list"}));
    list["pods"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// An HTTP GET returning the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200")
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .flatten()
}
