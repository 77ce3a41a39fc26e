//! The CNI plugin `weft-cni`, as a container runtime runs it: the command and the pod in
//! environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS` with kubelet's `K8S_POD_NAME`, `K8S_POD_NAMESPACE`, `K8S_POD_UID`), its
//! network configuration on stdin (with the previous plugins' result in `prevResult`), its
//! result on stdout, and on failure a CNI error object (`code`, `msg`, `details`) on
//! stdout with a non-zero exit status.
//!
//! - `ADD`: hands the pod to the node proxy (`socket` in the configuration, default
//!   [`crate::DEFAULT_SOCKET`]) and prints `prevResult` unchanged. It fails, so the runtime
//!   retries the sandbox later, when the node proxy cannot be reached or when the mesh
//!   enrolls the pod and its capture failed: a pod never starts half-captured. Pods in
//!   `excludeNamespaces` (default `kube-system`) are passed through without asking.
//! - `DEL`: releases the pod (rules removed, listeners closed). It succeeds when the node
//!   proxy is down: a proxy forgets pods whose network namespace is gone when it starts.
//!   A DEL naming another network namespace than the known one (a sandbox replaced
//!   since) leaves the pod alone.
//! - `CHECK`: fails unless the node proxy knows the pod and, if enrolled, captures it.
//! - `VERSION`: the supported spec versions.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::{Value, json};
use weft_node::capture::source::{PodRequest, PodResponse};
use weft_node::capture::{PodInfo, PodStatus};

use crate::client::{self, ClientError};

/// The CNI specification versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// CNI error codes this plugin returns (CNI spec, "Error codes").
pub mod code {
    /// The configuration's `cniVersion` is not supported.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A required environment variable is missing or invalid.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// Talking to the node proxy failed midway.
    pub const IO_FAILURE: u32 = 5;
    /// The configuration on stdin is not JSON of the expected shape.
    pub const DECODE: u32 = 6;
    /// The configuration is valid JSON but unusable (e.g. no `prevResult`).
    pub const INVALID_CONFIG: u32 = 7;
    /// Transient: the node proxy is not running; the runtime should retry.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The node proxy refused the pod.
    pub const REFUSED: u32 = 100;
    /// The mesh enrolls the pod but its traffic is not captured.
    pub const NOT_CAPTURED: u32 = 101;
    /// The node proxy does not know the pod (CHECK).
    pub const UNKNOWN_POD: u32 = 102;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The error code.
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details (may be empty).
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object as printed on stdout.
    #[must_use]
    pub fn to_json(&self, cni_version: &str) -> String {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
        .to_string()
    }
}

/// The plugin's network configuration (the runtime adds `name`, `cniVersion` and, when
/// chained, `prevResult` to the entry of the list).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of the configuration and of the result.
    #[serde(default = "default_version")]
    pub cni_version: String,
    /// The node proxy's socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Namespaces whose pods are never handed to the node proxy.
    #[serde(default = "default_excluded")]
    pub exclude_namespaces: Vec<String>,
    /// The previous plugins' result.
    #[serde(default)]
    pub prev_result: Option<Value>,
}

fn default_version() -> String {
    "1.0.0".into()
}

fn default_socket() -> PathBuf {
    PathBuf::from(crate::DEFAULT_SOCKET)
}

fn default_excluded() -> Vec<String> {
    vec!["kube-system".into()]
}

/// What the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Add the pod.
    Add,
    /// Release the pod.
    Del,
    /// Check the pod is as ADD left it.
    Check,
    /// Report the supported versions.
    Version,
}

/// The pod an invocation is about, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodArgs {
    /// `K8S_POD_UID`, or the container id outside Kubernetes.
    pub uid: String,
    /// `K8S_POD_NAME`, or the container id.
    pub name: String,
    /// `K8S_POD_NAMESPACE`, or `default`.
    pub namespace: String,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
}

/// Runs the plugin with the real environment and stdin; prints the result or the error.
#[must_use]
pub fn main() -> ExitCode {
    let mut stdin = String::new();
    // VERSION may come without a configuration; an unreadable stdin is a decode error later.
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut stdin);
    let env = |name: &str| std::env::var(name).ok();
    match run(&env, &stdin) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let version = serde_json::from_str::<NetConf>(&stdin)
                .map_or_else(|_| default_version(), |c| c.cni_version);
            println!("{}", error.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

/// Runs one invocation: `env` reads the environment, `stdin` is the configuration.
/// Returns what to print on stdout.
///
/// # Errors
/// The CNI error to report.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &str) -> Result<String, CniError> {
    let command = command(env)?;
    if command == Command::Version {
        return Ok(version_result(stdin));
    }
    let conf: NetConf = serde_json::from_str(stdin).map_err(|e| {
        CniError::new(code::DECODE, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "weft-cni does not support cniVersion {:?} (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let pod = pod_args(env)?;
    if conf.exclude_namespaces.contains(&pod.namespace) {
        return Ok(match command {
            Command::Add => prev_result_text(&conf)?,
            _ => String::new(),
        });
    }
    match command {
        Command::Add => add(&conf, &pod),
        Command::Del => del(&conf, &pod).map(|()| String::new()),
        Command::Check => check(&conf, &pod).map(|()| String::new()),
        Command::Version => Ok(version_result(stdin)),
    }
}

fn command(env: &dyn Fn(&str) -> Option<String>) -> Result<Command, CniError> {
    match env("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("VERSION") => Ok(Command::Version),
        other => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("unsupported CNI_COMMAND {other:?} (ADD, DEL, CHECK or VERSION)"),
        )),
    }
}

/// The pod from `CNI_ARGS` (`K=V;K=V`), `CNI_CONTAINERID` and `CNI_NETNS`.
fn pod_args(env: &dyn Fn(&str) -> Option<String>) -> Result<PodArgs, CniError> {
    let container = env("CNI_CONTAINERID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_CONTAINERID is not set"))?;
    let args = env("CNI_ARGS").unwrap_or_default();
    let arg = |key: &str| {
        args.split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
            .filter(|v| !v.is_empty())
    };
    Ok(PodArgs {
        uid: arg("K8S_POD_UID").unwrap_or_else(|| container.clone()),
        name: arg("K8S_POD_NAME").unwrap_or_else(|| container.clone()),
        namespace: arg("K8S_POD_NAMESPACE").unwrap_or_else(|| "default".into()),
        netns: env("CNI_NETNS")
            .filter(|n| !n.is_empty())
            .map(PathBuf::from),
    })
}

fn version_result(stdin: &str) -> String {
    let version = serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_else(default_version);
    json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

fn prev_result(conf: &NetConf) -> Result<&Value, CniError> {
    conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "weft-cni must be chained after the plugins that give the pod its addresses \
             (no prevResult in its configuration)",
        )
    })
}

fn prev_result_text(conf: &NetConf) -> Result<String, CniError> {
    Ok(prev_result(conf)?.to_string())
}

/// The addresses in a CNI result (`ips[].address`, `ADDR/PREFIX`).
#[must_use]
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect()
}

fn add(conf: &NetConf, pod: &PodArgs) -> Result<String, CniError> {
    let prev = prev_result(conf)?;
    let netns = pod
        .netns
        .clone()
        .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is not set"))?;
    let ips = result_ips(prev);
    if ips.is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "the previous plugins' result has no addresses (prevResult.ips)",
        ));
    }
    let info = PodInfo {
        uid: pod.uid.clone(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        netns,
        ips,
    };
    let response = ask(&conf.socket, &PodRequest::Add(info))?;
    let status = accepted(pod, response)?.pod.ok_or_else(|| {
        CniError::new(
            code::IO_FAILURE,
            "the node proxy's answer has no pod status",
        )
    })?;
    captured_if_enrolled(pod, &status)?;
    Ok(prev.to_string())
}

fn del(conf: &NetConf, pod: &PodArgs) -> Result<(), CniError> {
    let known = match known_pod(&conf.socket, pod) {
        Ok(known) => known,
        // Its namespace goes with the sandbox: the proxy forgets it when it starts.
        Err(error) if error.code == code::TRY_AGAIN_LATER => return Ok(()),
        Err(error) => return Err(error),
    };
    let Some(known) = known else {
        return Ok(());
    };
    if pod
        .netns
        .as_ref()
        .is_some_and(|netns| *netns != known.pod.netns)
    {
        // A DEL for an older sandbox of this pod: the current one stays captured.
        return Ok(());
    }
    let request = PodRequest::Remove {
        uid: pod.uid.clone(),
    };
    accepted(pod, ask(&conf.socket, &request)?).map(|_| ())
}

fn check(conf: &NetConf, pod: &PodArgs) -> Result<(), CniError> {
    let known = known_pod(&conf.socket, pod)?.ok_or_else(|| {
        CniError::new(
            code::UNKNOWN_POD,
            format!(
                "the node proxy does not know pod {}/{}",
                pod.namespace, pod.name
            ),
        )
    })?;
    captured_if_enrolled(pod, &known)
}

fn known_pod(socket: &Path, pod: &PodArgs) -> Result<Option<PodStatus>, CniError> {
    let response = accepted(pod, ask(socket, &PodRequest::List)?)?;
    Ok(response
        .pods
        .unwrap_or_default()
        .into_iter()
        .find(|known| known.pod.uid == pod.uid))
}

fn captured_if_enrolled(pod: &PodArgs, status: &PodStatus) -> Result<(), CniError> {
    if status.enrolled && !status.captured {
        return Err(CniError::new(
            code::NOT_CAPTURED,
            format!(
                "pod {}/{} is enrolled in the mesh but its traffic is not captured",
                pod.namespace, pod.name
            ),
        )
        .with_details(status.reason.clone().unwrap_or_default()));
    }
    Ok(())
}

fn ask(socket: &Path, request: &PodRequest) -> Result<PodResponse, CniError> {
    client::request(socket, request).map_err(|error| {
        let code = match error {
            ClientError::Unreachable { .. } => code::TRY_AGAIN_LATER,
            ClientError::Exchange { .. } => code::IO_FAILURE,
        };
        CniError::new(code, error.to_string())
    })
}

fn accepted(pod: &PodArgs, response: PodResponse) -> Result<PodResponse, CniError> {
    if response.ok {
        return Ok(response);
    }
    Err(CniError::new(
        code::REFUSED,
        format!(
            "the node proxy refused pod {}/{}: {}",
            pod.namespace,
            pod.name,
            response.error.unwrap_or_default()
        ),
    ))
}

#[cfg(test)]
#[path = "plugin_tests.rs"]
mod tests;
