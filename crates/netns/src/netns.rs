//! Named network namespaces (`/run/netns/NAME`): create, delete, configure, run programs in.

use crate::error::{Error, Result};
use crate::tool;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds per-namespace files bind-mounted over `/etc`.
pub const NETNS_ETC_DIR: &str = "/etc/netns";

/// A named network namespace, as `ip netns` manages it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Refers to the namespace `name` (it need not exist yet).
    ///
    /// # Errors
    /// The name is empty, too long, or has characters other than `[A-Za-z0-9._-]`.
    pub fn named(name: &str) -> Result<Self> {
        validate_name("namespace name", name, 200)?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    /// Creates the namespace with its loopback up.
    ///
    /// # Errors
    /// `ip netns add` fails (e.g. it already exists).
    pub fn create(name: &str) -> Result<Self> {
        let ns = Self::named(name)?;
        tool::run("ip", &["netns", "add", name])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file (for `setns`, [`crate::open_listener_in`], capture rules...).
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Whether the namespace currently exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Runs `ip -n NAME args...`; returns stdout.
    ///
    /// # Errors
    /// `ip` fails.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        tool::ip_in(&self.name, args)
    }

    /// A command that runs `program` inside the namespace through `ip netns exec` (which
    /// also bind-mounts `/etc/netns/NAME/*`, e.g. `resolv.conf`). `ip netns exec` execs the
    /// program, so the child's pid is the program's pid.
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Sets an IPv4/IPv6 sysctl inside the namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    ///
    /// # Errors
    /// The key does not exist or cannot be written.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        set_sysctl_in(&self.path(), key, value)
    }

    /// Writes `/etc/netns/NAME/resolv.conf`; programs started with [`NetNs::command`] see
    /// it as `/etc/resolv.conf`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn set_resolv_conf(&self, nameservers: &[std::net::IpAddr], search: &[&str]) -> Result<()> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).map_err(|source| Error::File {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        let mut text = String::new();
        if !search.is_empty() {
            text.push_str(&format!("search {}\n", search.join(" ")));
        }
        for ns in nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        text.push_str("options ndots:5\n");
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text).map_err(|source| Error::File {
            op: "write",
            path,
            source,
        })
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new(NETNS_ETC_DIR).join(&self.name)
    }

    /// Pids of every process whose network namespace is this one (except this process).
    ///
    /// # Errors
    /// `ip netns pids` fails.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let out = tool::run("ip", &["netns", "pids", &self.name])?;
        Ok(out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Stops every process in the namespace: SIGTERM, then SIGKILL after `grace`.
    ///
    /// # Errors
    /// Listing the processes fails.
    pub fn kill_processes(&self, grace: Duration) -> Result<()> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let deadline = Instant::now() + grace;
        let mut signal = Signal::SIGTERM;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in &pids {
                // The process may have exited meanwhile; that is what we want anyway.
                let _ = kill(Pid::from_raw(*pid), signal);
            }
            if Instant::now() >= deadline + grace {
                return Err(Error::Topology(format!(
                    "processes {pids:?} in namespace {} survived SIGKILL",
                    self.name
                )));
            }
            if Instant::now() >= deadline {
                signal = Signal::SIGKILL;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops its processes, deletes the namespace (which destroys every link, address,
    /// route and rule inside it) and its `/etc/netns/NAME` directory. Missing parts are
    /// not an error, so this is safe to call twice.
    ///
    /// # Errors
    /// A step fails for a reason other than "already gone".
    pub fn destroy(&self) -> Result<()> {
        if self.exists() {
            self.kill_processes(Duration::from_secs(2))?;
            tool::run("ip", &["netns", "delete", &self.name])?;
        }
        let dir = self.etc_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::File {
                op: "remove",
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Every named namespace on the machine.
///
/// # Errors
/// `/run/netns` exists but cannot be read.
pub fn list_netns() -> Result<Vec<NetNs>> {
    let dir = Path::new(NETNS_RUN_DIR);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::File {
                op: "read",
                path: dir.to_owned(),
                source,
            });
        }
    };
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| NetNs::named(&name).ok())
        .collect())
}

/// Checks a name against `[A-Za-z0-9._-]{1,max}` (safe as a file name and a command argument).
pub(crate) fn validate_name(what: &'static str, name: &str, max: usize) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > max {
        Some("is too long")
    } else if name.starts_with(['-', '.']) {
        Some("must not start with '-' or '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may only contain letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    reason.map_or(Ok(()), |reason| {
        Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        })
    })
}

/// Sets a sysctl inside the namespace at `netns` (see [`NetNs::set_sysctl`]).
pub(crate) fn set_sysctl_in(netns: &Path, key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let value = value.to_owned();
    // /proc/sys/net shows the namespace of the thread that opens it.
    crate::inns::run_in_netns(netns, move || {
        std::fs::write(&path, value).map_err(|source| Error::File {
            op: "write sysctl",
            path,
            source,
        })
    })?
}
