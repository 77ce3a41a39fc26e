//! `weft exec POD -- CMD...`: runs a command as a pod of a running `weft up` would run it,
//! so users and tests can make requests from inside the mesh
//! (`weft exec frontend/web-0 -- weft x call http://catalog.shop/`).
//!
//! `weft up` leaves, for each pod it runs, a record of how to do that: `exec/<ns>/<pod>.json`
//! in the instance directory, naming the pod's network namespace (none in explicit mode)
//! and the environment every container of the pod gets (identity variables; in explicit
//! mode also the proxy variables that send its traffic through its node proxy). The record
//! is written when the pod starts and removed when it stops.

use crate::UpError;
use crate::layout::Layout;
use crate::plan::WEFT_PROGRAM;
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to run a command as one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExecRecord {
    /// The pod's network namespace (`ip netns` name); `None` in explicit mode.
    pub netns: Option<String>,
    /// Variables set for the command (nothing else of the caller's environment but `PATH`).
    pub env: Vec<(String, String)>,
}

impl ExecRecord {
    /// `program` run as the pod: in its network namespace (`ip netns exec`), with its
    /// variables and `PATH` only.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

fn record_path(layout: &Layout, namespace: &str, pod: &str) -> PathBuf {
    layout
        .root()
        .join("exec")
        .join(namespace)
        .join(format!("{pod}.json"))
}

/// Writes the record of a started pod (best effort: without it only `weft exec` fails).
pub(crate) fn record(layout: &Layout, namespace: &str, pod: &str, record: &ExecRecord) {
    let path = record_path(layout, namespace, pod);
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            std::fs::create_dir_all(path.parent().unwrap_or(layout.root()))?;
            std::fs::write(&path, text)
        });
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "cannot write the pod's exec record");
    }
}

/// Removes the record of a stopped pod.
pub(crate) fn forget(layout: &Layout, namespace: &str, pod: &str) {
    let _ = std::fs::remove_file(record_path(layout, namespace, pod));
}

/// The command that runs `argv` as `pod` (`NAMESPACE/NAME`, or `NAME` when that is unique)
/// of the instance `prefix` under `state_dir`: in the pod's network namespace, with the
/// pod's environment. `weft` as the program means `weft_binary`.
///
/// # Errors
/// No such instance or pod, an empty `argv`, or a record that cannot be read.
pub fn pod_command(
    state_dir: &Path,
    prefix: &str,
    pod: &str,
    argv: &[OsString],
    weft_binary: &Path,
) -> Result<Command, UpError> {
    let layout = Layout::new(state_dir, prefix);
    let (namespace, name) = crate::down::resolve_pod(&layout, pod)?;
    let path = record_path(&layout, &namespace, &name);
    let text = std::fs::read(&path).map_err(|_| {
        UpError::NoSuchPod(format!(
            "{namespace}/{name} is not a running pod of this mesh"
        ))
    })?;
    let record: ExecRecord = serde_json::from_slice(&text).map_err(|e| UpError::File {
        op: "parse",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| UpError::NoSuchPod("no command given (weft exec POD -- CMD...)".into()))?;
    let program = if program == WEFT_PROGRAM {
        weft_binary.as_os_str().to_owned()
    } else {
        program.clone()
    };
    let mut command = record.command(program);
    command.args(args);
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_pod_runs_with_its_namespace_and_environment_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "t");
        let log = layout.container_log("shop", "web-0", "web");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let pod = ExecRecord {
            netns: Some("t-shop-web-0".into()),
            env: vec![("POD_NAME".into(), "web-0".into())],
        };
        record(&layout, "shop", "web-0", &pod);
        let argv = ["weft", "x", "call", "http://catalog/"].map(OsString::from);
        let weft = Path::new("/opt/weft");
        let command = pod_command(dir.path(), "t", "web-0", &argv, weft).unwrap();
        assert_eq!(command.get_program(), "ip");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            [
                "netns",
                "exec",
                "t-shop-web-0",
                "/opt/weft",
                "x",
                "call",
                "http://catalog/"
            ]
        );
        let env: Vec<_> = command.get_envs().filter(|(k, _)| *k != "PATH").collect();
        assert_eq!(env, [("POD_NAME".as_ref(), Some("web-0".as_ref()))]);

        forget(&layout, "shop", "web-0");
        let gone = pod_command(dir.path(), "t", "shop/web-0", &argv, weft).unwrap_err();
        assert!(gone.to_string().contains("not a running pod"), "{gone}");
    }
}
