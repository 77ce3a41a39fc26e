//! `weft up`: a whole ambient mesh on one Linux machine, from a config directory.
//!
//! It owns the orchestration: planning what a configuration runs ([`plan`]: pods, addresses,
//! enrollment, identities, Service rules, decided by the same functions the control plane
//! uses), building nodes and pods as network namespaces (through `weft-netns`), starting
//! each pod's containers as processes ([`process`]), `weft control` and one `weft node` per
//! node ([`components`]), telling node proxies their pods ([`node_link`]), applying edits of
//! the directory live, and removing everything again ([`down`]). It must not proxy traffic,
//! translate config itself or configure anything in the root network namespace: everything
//! it makes carries the instance prefix and lives under `<state-dir>/<prefix>/`.
//!
//! Each waypoint Gateway is a pod like the others (pod expansion decides it: see
//! `weft_api::expand::waypoint`) whose container runs `weft waypoint run`; `weft up` adds
//! where the control plane is (components) and reports when it is ready (`mesh::waypoints`).
//!
//! Without root (or with `--explicit`) it runs the same mesh in explicit mode on loopback
//! addresses ([`loopback`]): plain processes that reach the mesh through their node proxy's
//! SOCKS5/HTTP CONNECT port; nothing is captured transparently.
//!
//! A running `weft up` takes requests from other processes on a Unix socket ([`requests`]):
//! `weft restart` replaces a waypoint's or gateway's process without dropping its traffic
//! (`mesh::RestartTarget`; the new process takes the old one's listening sockets).
//!
//! `weft up` also serves the dashboard ([`dashboard`]: `weft dashboard`'s page, reading the
//! mesh from inside its namespaces) and prints its URL.
//!
//! The bundled example mesh is compiled in ([`bundled`]); `weft up` without a directory
//! writes it to the instance directory and runs it, so the binary works from anywhere.
//!
//! ```no_run
//! # async fn f() -> Result<(), weft_up::UpError> {
//! let config = weft_up::UpConfig::new("/run/weft".into(), "weft", "/usr/bin/weft".into());
//! weft_up::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod bundled;
pub mod components;
pub mod dashboard;
pub mod demo;
mod demo_gateway;
mod demo_l7;
pub mod down;
pub mod exec;
pub mod layout;
pub mod loopback;
pub mod mesh;
pub mod node_link;
mod pid_records;
pub mod plan;
pub mod probe;
pub mod process;
pub mod requests;
mod run;
pub mod table;

pub use down::{down, logs};
pub use exec::pod_command;
pub use run::{UpConfig, UpOutcome, run};

use std::path::PathBuf;

/// Why `weft up` (or `weft down`, `weft logs`) failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Not root, or `ip`/`nft` missing.
    #[error("{0}")]
    Prerequisite(String),
    /// Another `weft up` runs with this prefix.
    #[error(
        "weft up is already running with prefix {prefix:?} (pid {pid}); stop it, pick another \
         --prefix, or run `weft down --prefix {prefix}`"
    )]
    AlreadyRunning {
        /// The prefix.
        prefix: String,
        /// Its pid.
        pid: i32,
    },
    /// The config directory has errors.
    #[error("{dir}: the configuration has errors (see `weft validate {dir}`):\n{errors}")]
    Config {
        /// The directory.
        dir: String,
        /// The error findings, one per line.
        errors: String,
    },
    /// The config directory cannot be read or watched.
    #[error("config directory: {0}")]
    Store(#[from] weft_api::StoreError),
    /// The configuration cannot run on one machine.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// Explicit mode on loopback could not be set up.
    #[error("explicit mode: {0}")]
    Loopback(#[from] loopback::LoopbackError),
    /// Namespaces, links or rules.
    #[error("network namespaces: {0}")]
    Netns(#[from] weft_netns::Error),
    /// A process could not start.
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    /// Token files.
    #[error(transparent)]
    Tokens(#[from] components::TokenError),
    /// A component did not become ready.
    #[error("{reason} (logs: {logs})")]
    NotReady {
        /// What was not ready.
        reason: String,
        /// Where the logs are.
        logs: PathBuf,
    },
    /// A file operation.
    #[error("cannot {op} {path}: {source}")]
    File {
        /// What was done.
        op: &'static str,
        /// To what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `weft logs` / `weft exec` found no such pod.
    #[error("{0}")]
    NoSuchPod(String),
    /// `weft restart` was refused or failed (nothing changed unless it says so).
    #[error("{0}")]
    Restart(String),
}
