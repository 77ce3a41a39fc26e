//! `weft cni install` / `uninstall`: the plugin binary and its entry in the cluster's
//! network configuration.
//!
//! The container runtime uses the first file of the configuration directory, in
//! lexicographic order, whose name ends in `.conflist`, `.conf` or `.json` (libcni's
//! rule): that is the file `weft-cni` is appended to. A single `.conf` is converted to a
//! `.conflist` of the same stem (written first, then the `.conf` removed, so the runtime
//! always finds a usable file). Every write goes to a hidden temporary file in the same
//! directory, renamed over the target: the runtime never reads half a file.
//!
//! The cluster's CNI may rewrite its file (upgrades, restarts of its own agent): the
//! install container runs [`watch`], which checks the file every interval and appends the
//! entry again when it went missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::PLUGIN_TYPE;
use crate::conflist::{self, ConfError};

/// What `weft cni install` puts where.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Where the runtime looks for plugin binaries (`/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// Where the runtime reads network configurations (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The node proxy's socket, written into the plugin's entry.
    pub socket: PathBuf,
    /// Namespaces whose pods the plugin never hands to the node proxy.
    pub exclude_namespaces: Vec<String>,
}

/// Why installing or uninstalling failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be read, written or removed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory holds no network configuration yet (the cluster's CNI writes one).
    #[error("no network configuration (*.conflist, *.conf, *.json) in {0} yet")]
    NoConfig(PathBuf),
    /// The primary configuration is not one `weft-cni` can be chained to.
    #[error("{path}: {source}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ConfError,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { what, path, source }
}

/// What [`chain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained {
    /// The configuration list that now ends with `weft-cni`.
    pub path: PathBuf,
    /// Whether it had to be written (false: it already did).
    pub changed: bool,
}

/// Copies the binary at `source` to `<bin_dir>/weft-cni` (mode 0755, replaced atomically).
///
/// # Errors
/// The binary cannot be copied.
pub fn install_binary(source: &Path, bin_dir: &Path) -> Result<PathBuf, InstallError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin_dir).map_err(io_error("create", bin_dir))?;
    let target = bin_dir.join(PLUGIN_TYPE);
    let tmp = bin_dir.join(format!(".{PLUGIN_TYPE}.tmp"));
    std::fs::copy(source, &tmp).map_err(io_error("copy the plugin binary to", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("make executable", &tmp))?;
    std::fs::rename(&tmp, &target).map_err(io_error("replace", &target))?;
    Ok(target)
}

/// The configuration files of `conf_dir` in the order the runtime considers them.
///
/// # Errors
/// The directory cannot be read.
pub fn config_files(conf_dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .map_err(io_error("read", conf_dir))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.')
                && path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "conflist" || ext == "conf" || ext == "json")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_json(path: &Path) -> Result<Value, InstallError> {
    let text = std::fs::read_to_string(path).map_err(io_error("read", path))?;
    serde_json::from_str(&text).map_err(|e| InstallError::BadConfig {
        path: path.to_owned(),
        source: ConfError::new(format!("not JSON: {e}")),
    })
}

/// Writes `value` to `path` through a hidden temporary file renamed over it.
fn write_json(path: &Path, value: &Value) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("conf");
    let tmp = dir.join(format!(".{name}.weft-tmp"));
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    std::fs::write(&tmp, text).map_err(io_error("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("replace", path))
}

/// Makes the runtime's configuration end with `weft-cni` (idempotent).
///
/// # Errors
/// No configuration yet, or it cannot be read, parsed or written.
pub fn chain(options: &InstallOptions) -> Result<Chained, InstallError> {
    let primary = config_files(&options.conf_dir)?
        .into_iter()
        .next()
        .ok_or_else(|| InstallError::NoConfig(options.conf_dir.clone()))?;
    let current = read_json(&primary)?;
    let entry = conflist::plugin_entry(&options.socket, &options.exclude_namespaces);
    let updated =
        conflist::with_plugin(&current, &entry).map_err(|source| InstallError::BadConfig {
            path: primary.clone(),
            source,
        })?;
    let is_list = primary.extension().is_some_and(|ext| ext == "conflist");
    if updated == current && is_list {
        return Ok(Chained {
            path: primary,
            changed: false,
        });
    }
    let target = if is_list {
        primary.clone()
    } else {
        primary.with_extension("conflist")
    };
    write_json(&target, &updated)?;
    if target != primary {
        std::fs::remove_file(&primary).map_err(io_error("remove the converted", &primary))?;
    }
    Ok(Chained {
        path: target,
        changed: true,
    })
}

/// Takes `weft-cni` out of every configuration list of `conf_dir`; returns the files
/// changed.
///
/// # Errors
/// A file cannot be read or written.
pub fn unchain(conf_dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut changed = Vec::new();
    for path in config_files(conf_dir)? {
        let Ok(current) = read_json(&path) else {
            continue; // not ours to judge: leave files we cannot parse alone
        };
        if let Some(updated) = conflist::without_plugin(&current) {
            write_json(&path, &updated)?;
            changed.push(path);
        }
    }
    Ok(changed)
}

/// Installs the binary at `binary` and chains the plugin.
///
/// # Errors
/// See [`install_binary`] and [`chain`].
pub fn install(options: &InstallOptions, binary: &Path) -> Result<Chained, InstallError> {
    install_binary(binary, &options.bin_dir)?;
    chain(options)
}

/// Takes the plugin out of every configuration and removes its binary; returns the
/// configuration files changed.
///
/// # Errors
/// A file cannot be changed or removed.
pub fn uninstall(options: &InstallOptions) -> Result<Vec<PathBuf>, InstallError> {
    let changed = unchain(&options.conf_dir)?;
    let binary = options.bin_dir.join(PLUGIN_TYPE);
    match std::fs::remove_file(&binary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error("remove", &binary)(e));
        }
        _ => {}
    }
    Ok(changed)
}

/// Keeps the plugin chained: checks every `interval` and re-chains when the cluster's
/// CNI rewrote (or first wrote) its configuration, reporting each outcome that differs
/// from the previous one to `report`. Runs until `keep_going` says stop.
pub fn watch(
    options: &InstallOptions,
    interval: Duration,
    keep_going: &dyn Fn() -> bool,
    report: &mut dyn FnMut(&Result<Chained, InstallError>),
) {
    let mut last_error: Option<String> = None;
    while keep_going() {
        let outcome = chain(options);
        match &outcome {
            Ok(chained) => {
                if chained.changed {
                    report(&outcome);
                }
                last_error = None;
            }
            Err(error) => {
                let text = error.to_string();
                if last_error.as_ref() != Some(&text) {
                    report(&outcome);
                }
                last_error = Some(text);
            }
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
