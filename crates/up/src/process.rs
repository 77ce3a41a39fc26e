//! Processes `weft up` starts inside network namespaces (or, in explicit mode, as plain
//! processes), each logging to its own file.
//!
//! In a namespace a process is started with `ip netns exec` (which also bind-mounts
//! `/etc/netns/NAME/*`, i.e. the pod's `resolv.conf` and `hosts`), with a clean environment (only `PATH` and what
//! the caller gives, plus `NO_COLOR=1`), stdout and stderr appended to its log file. Stopping sends SIGTERM and,
//! after a grace period, SIGKILL. Processes left behind by a crashed `weft up` are still
//! inside namespaces of the instance, so tearing those down stops them.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use weft_netns::NetNs;

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The program (or `ip netns exec`) could not be started.
    #[error("cannot start {program} in {place}: {source}")]
    Spawn {
        /// What was started.
        program: String,
        /// Where (`namespace NAME`, or `this namespace`).
        place: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command line is empty.
    #[error("empty command for {what}")]
    Empty {
        /// What it was for.
        what: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec<'a> {
    /// Label for messages (`frontend/web-0/web`, `node node-a`).
    pub label: String,
    /// Program and arguments.
    pub argv: &'a [String],
    /// Environment (added to `PATH`).
    pub env: &'a [(String, String)],
    /// File receiving stdout and stderr.
    pub log: &'a Path,
}

/// A running child process.
#[derive(Debug)]
pub struct Process {
    label: String,
    child: Child,
    exited: Option<ExitStatus>,
    exit_reported: bool,
    log: PathBuf,
}

impl Process {
    /// Starts `spec` inside `netns`, or in this process's namespace when `None`.
    ///
    /// # Errors
    /// The log file cannot be opened or the process cannot be started.
    pub fn spawn(netns: Option<&NetNs>, spec: &ProcessSpec<'_>) -> Result<Self, SpawnError> {
        let (program, args) = spec.argv.split_first().ok_or_else(|| SpawnError::Empty {
            what: spec.label.clone(),
        })?;
        let log_err = |source| SpawnError::Log {
            path: spec.log.to_owned(),
            source,
        };
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir).map_err(log_err)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .map_err(log_err)?;
        let stderr = log.try_clone().map_err(log_err)?;
        let mut command = match netns {
            Some(netns) => netns.command(program),
            None => std::process::Command::new(program),
        };
        command
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            // Log files, not terminals: no colour escapes (honoured by weft's own logging).
            .env("NO_COLOR", "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = command.spawn().map_err(|source| SpawnError::Spawn {
            program: program.clone(),
            place: netns.map_or_else(
                || "this namespace".to_owned(),
                |n| format!("namespace {}", n.name()),
            ),
            source,
        })?;
        Ok(Self {
            label: spec.label.clone(),
            child,
            exited: None,
            exit_reported: false,
            log: spec.log.to_owned(),
        })
    }

    /// Its label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log (for error messages).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status, once it has exited (checked without blocking).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether [`Process::mark_exit_reported`] was called.
    #[must_use]
    pub fn has_reported_exit(&self) -> bool {
        self.exit_reported
    }

    /// Remembers that its exit was reported (so it is reported once).
    pub fn mark_exit_reported(&mut self) {
        self.exit_reported = true;
    }

    /// Sends SIGTERM (if still running).
    pub fn terminate(&mut self) {
        if self.exit_status().is_none() {
            let _ = kill(child_pid(&self.child), Signal::SIGTERM);
        }
    }

    /// Waits until `deadline` for it to exit, then kills it.
    pub fn reap(&mut self, deadline: Instant) {
        while self.exit_status().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Stops every process: SIGTERM to all at once, then SIGKILL to those still running after
/// `grace`.
pub fn stop_all<'a>(processes: impl IntoIterator<Item = &'a mut Process>, grace: Duration) {
    let mut processes: Vec<&mut Process> = processes.into_iter().collect();
    for process in &mut processes {
        process.terminate();
    }
    let deadline = Instant::now() + grace;
    for process in processes {
        process.reap(deadline);
    }
}
