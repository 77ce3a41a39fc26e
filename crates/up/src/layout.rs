//! Where one `weft up` instance keeps its files: `<state-dir>/<prefix>/`. Everything in it
//! is made by `weft up` and removed by its shutdown or `weft down`.
//!
//! ```text
//! <prefix>.json          the local cluster (namespaces, links) for weft-netns' teardown
//! up.pid                 pid of the running `weft up`
//! config/                the bundled example manifests (when no DIR is given)
//! effective/             explicit mode: the config as weft control sees it (loopback addresses)
//! pids/<pid>             explicit mode: each process started, for `weft down` after a crash
//! control/               weft control's private state (its trusted roots: control/ca/trust-bundle.pem)
//! tokens.yaml            node bearer tokens for weft control (0600)
//! tokens/<node>.token    each node proxy's token (0600)
//! sockets/<node>.sock    each node proxy's pod socket
//! up.sock                requests of `weft restart` to the running `weft up`
//! handoff/<component>.sock  where a waypoint's or gateway's process offers its listeners
//!                        to the process replacing it (`weft restart`)
//! logs/<ns>/<pod>/<container>.log   stdout+stderr of every process (weft-system/ for ours)
//! ```

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// State directory of `weft up` run as root (tmpfs: nothing survives a reboot).
pub const ROOT_STATE_DIR: &str = "/run/weft";

/// Where `weft up`, `weft down` and `weft logs` keep instances when no `--state-dir` is
/// given: [`ROOT_STATE_DIR`] as root; otherwise `$XDG_RUNTIME_DIR/weft` when that variable
/// names a directory this user owns (an inherited one, e.g. root's after `su` or `setpriv`,
/// does not count); otherwise `<tmp>/weft-<uid>`, created private (0700) and refused when it
/// is anything but a directory of this user's.
///
/// # Errors
/// When the per-user directory cannot be created or belongs to someone else.
pub fn default_state_dir() -> std::io::Result<PathBuf> {
    let first = state_dir_candidates().swap_remove(0);
    if first.in_shared_temp {
        private_directory(&first.path, nix::unistd::geteuid().as_raw())?;
    }
    Ok(first.path)
}

/// The state directory holding a running instance `prefix`, for `weft down`, `weft logs`
/// and `weft exec`: the first default candidate that has it (the environment may differ
/// from the one `weft up` ran in, e.g. no `XDG_RUNTIME_DIR` over ssh), else the first.
/// Creates nothing.
#[must_use]
pub fn existing_state_dir(prefix: &str) -> PathBuf {
    let mut candidates = state_dir_candidates();
    let found = candidates.iter().position(|c| c.path.join(prefix).is_dir());
    candidates.swap_remove(found.unwrap_or(0)).path
}

/// A place this user's instances may be kept.
struct Candidate {
    path: PathBuf,
    /// In the shared temp directory: made private (and checked) before use.
    in_shared_temp: bool,
}

/// Where this user's instances may be, most preferred first (see [`default_state_dir`]).
fn state_dir_candidates() -> Vec<Candidate> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        let path = PathBuf::from(ROOT_STATE_DIR);
        return vec![Candidate {
            path,
            in_shared_temp: false,
        }];
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let runtime = runtime.filter(|dir| owned_directory(dir, uid.as_raw()));
    let runtime = runtime.map(|dir| Candidate {
        path: dir.join("weft"),
        in_shared_temp: false,
    });
    let private = Candidate {
        path: std::env::temp_dir().join(format!("weft-{uid}")),
        in_shared_temp: true,
    };
    runtime.into_iter().chain([private]).collect()
}

/// Whether `dir` is an absolute path to a directory owned by `uid` (symlinks not followed).
fn owned_directory(dir: &Path, uid: u32) -> bool {
    dir.is_absolute()
        && std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir() && meta.uid() == uid)
}

/// Creates `dir` mode 0700 if missing; refuses one that is not `uid`'s own directory, or
/// that others can write (another user could have planted it in a shared temp directory).
fn private_directory(dir: &Path, uid: u32) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !owned_directory(dir, uid) || meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of user {uid} (owner {}, mode {:o}); remove it \
                 or pass --state-dir",
                dir.display(),
                meta.uid(),
                meta.permissions().mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

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

    /// The mesh's trusted roots, written by weft control (both roots while it rotates the
    /// root, so processes started meanwhile trust either).
    #[must_use]
    pub fn ca_root(&self) -> PathBuf {
        self.control_state_dir().join("ca").join("trust-bundle.pem")
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

    /// Where the running `weft up` takes `weft restart` requests.
    #[must_use]
    pub fn up_socket(&self) -> PathBuf {
        self.root.join("up.sock")
    }

    /// Directory of the hand-off sockets.
    #[must_use]
    pub fn handoff_dir(&self) -> PathBuf {
        self.root.join("handoff")
    }

    /// Where `component` (a pod `namespace/name`, or `node-<node>`) offers its listening
    /// sockets to the process replacing it.
    #[must_use]
    pub fn handoff_socket(&self, component: &str) -> PathBuf {
        self.handoff_dir()
            .join(format!("{}.sock", component.replace('/', "_")))
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
