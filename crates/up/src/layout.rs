//! Where one `weft up` instance keeps its files: `<state-dir>/<prefix>/`. Everything in it
//! is made by `weft up` and removed by its shutdown or `weft down`.
//!
//! ```text
//! <prefix>.json          the local cluster (namespaces, links) for weft-netns' teardown
//! up.pid                 pid of the running `weft up`
//! config/                the bundled example manifests (when no DIR is given)
//! effective/             explicit mode: the config as weft control sees it (loopback addresses)
//! pids/<pid>             explicit mode: each process started, for `weft down` after a crash
//! control/               weft control's private state (its CA root: control/ca/root-cert.pem)
//! tokens.yaml            node bearer tokens for weft control (0600)
//! tokens/<node>.token    each node proxy's token (0600)
//! sockets/<node>.sock    each node proxy's pod socket
//! logs/<ns>/<pod>/<container>.log   stdout+stderr of every process (weft-system/ for ours)
//! ```

use std::path::{Path, PathBuf};

/// Namespace under which `weft up`'s own processes (control plane, node proxies) log.
pub const SYSTEM_NAMESPACE: &str = "weft-system";

/// The files of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
    prefix: String,
}

impl Layout {
    /// The instance `prefix` under `state_dir`.
    #[must_use]
    pub fn new(state_dir: &Path, prefix: &str) -> Self {
        Self {
            root: state_dir.join(prefix),
            prefix: prefix.to_owned(),
        }
    }

    /// The instance directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The namespace name prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pid file of the running `weft up`.
    #[must_use]
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("up.pid")
    }

    /// Where bundled manifests are written.
    #[must_use]
    pub fn bundled_config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Explicit mode: the config directory `weft control` reads (loopback addresses).
    #[must_use]
    pub fn effective_config_dir(&self) -> PathBuf {
        self.root.join("effective")
    }

    /// Explicit mode: one file per running process (named by pid, holding its start time).
    #[must_use]
    pub fn pids_dir(&self) -> PathBuf {
        self.root.join("pids")
    }

    /// weft control's state directory.
    #[must_use]
    pub fn control_state_dir(&self) -> PathBuf {
        self.root.join("control")
    }

    /// The mesh root certificate written by weft control.
    #[must_use]
    pub fn ca_root(&self) -> PathBuf {
        self.control_state_dir().join("ca").join("root-cert.pem")
    }

    /// weft control's token file.
    #[must_use]
    pub fn control_tokens(&self) -> PathBuf {
        self.root.join("tokens.yaml")
    }

    /// A node proxy's token file.
    #[must_use]
    pub fn node_token(&self, node: &str) -> PathBuf {
        self.root.join("tokens").join(format!("{node}.token"))
    }

    /// A node proxy's pod socket.
    #[must_use]
    pub fn node_socket(&self, node: &str) -> PathBuf {
        self.root.join("sockets").join(format!("{node}.sock"))
    }

    /// Directory of a pod's logs.
    #[must_use]
    pub fn pod_log_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.logs_dir().join(namespace).join(pod)
    }

    /// Log file of one container.
    #[must_use]
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.pod_log_dir(namespace, pod)
            .join(format!("{container}.log"))
    }

    /// The logs directory.
    #[must_use]
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
}
