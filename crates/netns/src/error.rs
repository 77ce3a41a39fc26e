//! The one error type of this crate: every variant names what failed, on what, and why.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while changing the machine's network configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A helper program could not be started at all.
    #[error(
        "could not run `{program}` (is it installed? `apt-get install iproute2 nftables`): {source}"
    )]
    Spawn {
        /// The program name (`ip`, `nft`, ...).
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A helper program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A caller-supplied name cannot be used for a namespace or link.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What the name is for ("prefix", "pod name", ...).
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The cluster description is inconsistent (unknown node, duplicate pod, full CIDR...).
    #[error("cluster topology: {0}")]
    Topology(String),
    /// Entering a network namespace failed.
    #[error("cannot enter network namespace {path}: {source}")]
    EnterNetns {
        /// The namespace file.
        path: PathBuf,
        /// The OS error.
        source: nix::Error,
    },
    /// A socket operation failed.
    #[error("{op} for {addr}: {source}")]
    Socket {
        /// The operation (`bind`, `connect`, `setsockopt(IP_TRANSPARENT)`, ...).
        op: &'static str,
        /// The address involved.
        addr: String,
        /// The OS error.
        source: nix::Error,
    },
    /// A file (state file, resolv.conf, sysctl) could not be read or written.
    #[error("{op} {path}: {source}")]
    File {
        /// What was attempted ("write", "read", "remove").
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state file exists but cannot be understood.
    #[error("state file {path} is not valid: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A dedicated namespace thread could not be started or died.
    #[error("namespace thread for {path}: {reason}")]
    Thread {
        /// The namespace file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The machine cannot run this code (not root, tool missing).
    #[error("prerequisite missing: {0}")]
    Prerequisite(String),
}
