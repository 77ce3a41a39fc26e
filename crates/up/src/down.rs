//! `weft down` (remove an instance after a crash, or stop a running one) and `weft logs`.

use crate::UpError;
use crate::layout::{Layout, SYSTEM_NAMESPACE};
use crate::mesh::remove_instance_dir;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a running `weft up` gets to clean up after SIGTERM before `weft down` does it.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// How long recorded explicit-mode processes get after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The pid of the live `weft up` owning `layout`, if any.
#[must_use]
pub fn running_pid(layout: &Layout) -> Option<i32> {
    let text = std::fs::read_to_string(layout.pid_file()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let alive = pid > 0
        && pid != i32::try_from(std::process::id()).unwrap_or(0)
        && kill(Pid::from_raw(pid), None).is_ok();
    // A recycled pid belongs to some other program: only a weft process counts.
    let is_weft = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("weft"));
    (alive && is_weft).then_some(pid)
}

/// Stops the `weft up` of `prefix` if it runs (it cleans up itself), then removes whatever
/// is left: processes in its namespaces, the namespaces (with their links and rules), their
/// `/etc/netns` files and the instance directory. Returns what it did.
///
/// # Errors
/// Something could not be removed.
pub fn down(state_dir: &Path, prefix: &str) -> Result<String, UpError> {
    if nix::unistd::geteuid().is_root() {
        weft_netns::check_prerequisites().map_err(|e| UpError::Prerequisite(e.to_string()))?;
    }
    let layout = Layout::new(state_dir, prefix);
    let mut report = String::new();
    if let Some(pid) = running_pid(&layout) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WAIT;
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        report.push_str(&format!("stopped weft up (pid {pid})\n"));
    }
    let namespaces = owned_namespaces(prefix)?;
    let had_dir = layout.root().exists();
    let stopped = remove_instance(&layout)?;
    if stopped > 0 {
        report.push_str(&format!("stopped {stopped} explicit-mode processes\n"));
    }
    if namespaces.is_empty() && !had_dir {
        report.push_str(&format!("nothing to remove for prefix {prefix:?}\n"));
    } else {
        report.push_str(&format!(
            "removed {} namespaces ({}) and {}\n",
            namespaces.len(),
            namespaces.join(" "),
            layout.root().display()
        ));
    }
    Ok(report)
}

fn owned_namespaces(prefix: &str) -> Result<Vec<String>, UpError> {
    let start = format!("{prefix}-");
    Ok(weft_netns::list_netns()?
        .into_iter()
        .map(|ns| ns.name().to_owned())
        .filter(|name| name.starts_with(&start))
        .collect())
}

/// Stops the processes explicit mode recorded, removes the instance's namespaces (stopping
/// their processes) and its directory. Returns how many recorded processes were stopped.
pub(crate) fn remove_instance(layout: &Layout) -> Result<usize, UpError> {
    let stopped = crate::pid_records::stop_recorded(layout, STOP_GRACE);
    weft_netns::teardown(layout.root(), layout.prefix())?;
    remove_instance_dir(layout)?;
    Ok(stopped)
}

/// The logs of `pod` (`name`, `namespace/name`, `control`, or `node-NAME`), every
/// container's or only `container`'s, with a header per file when there are several.
///
/// # Errors
/// No such pod or container, or a log cannot be read.
pub fn logs(
    state_dir: &Path,
    prefix: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<String, UpError> {
    let layout = Layout::new(state_dir, prefix);
    let dir = find_pod_dir(&layout, pod)?;
    let mut files: Vec<PathBuf> = list(&dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .filter(|f| container.is_none_or(|c| f.file_stem().is_some_and(|s| s == c)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(UpError::NoSuchPod(format!(
            "pod {pod} has no container {}",
            container.unwrap_or_default()
        )));
    }
    let mut out = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| UpError::File {
            op: "read",
            path: file.clone(),
            source,
        })?;
        if files.len() > 1 {
            let name = file.file_stem().unwrap_or_default().to_string_lossy();
            out.push_str(&format!("==> {name} <==\n"));
        }
        out.push_str(&text);
    }
    Ok(out)
}

/// The `(namespace, name)` of `pod` (`NAMESPACE/NAME`, or a `NAME` only one namespace has)
/// in a running instance.
pub(crate) fn resolve_pod(layout: &Layout, pod: &str) -> Result<(String, String), UpError> {
    let dir = find_pod_dir(layout, pod)?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let namespace = dir.parent().and_then(Path::file_name).unwrap_or_default();
    Ok((namespace.to_string_lossy().into_owned(), name.into_owned()))
}

fn find_pod_dir(layout: &Layout, pod: &str) -> Result<PathBuf, UpError> {
    let logs = layout.logs_dir();
    if !logs.exists() {
        return Err(UpError::NoSuchPod(format!(
            "no weft up with prefix {:?} under {} (is it running? see --state-dir/--prefix)",
            layout.prefix(),
            layout.root().parent().unwrap_or(layout.root()).display()
        )));
    }
    if let Some((namespace, name)) = pod.split_once('/') {
        let dir = layout.pod_log_dir(namespace, name);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(UpError::NoSuchPod(format!("no pod {pod}")))
        };
    }
    let mut matches: Vec<PathBuf> = list(&logs)
        .into_iter()
        .map(|ns| ns.join(pod))
        .filter(|dir| dir.is_dir())
        .collect();
    matches.sort();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(UpError::NoSuchPod(format!(
            "no pod {pod} (pods: {}; also `control` and `node-NAME` for {SYSTEM_NAMESPACE})",
            all_pods(&logs).join(", ")
        ))),
        _ => Err(UpError::NoSuchPod(format!(
            "{pod} is in several namespaces: say which, e.g. {}",
            matches
                .iter()
                .filter_map(|m| pod_key(&logs, m))
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
    }
}

fn all_pods(logs: &Path) -> Vec<String> {
    let mut pods: Vec<String> = list(logs)
        .into_iter()
        .flat_map(|ns| list(&ns))
        .filter_map(|dir| pod_key(logs, &dir))
        .collect();
    pods.sort();
    pods
}

fn pod_key(logs: &Path, dir: &Path) -> Option<String> {
    Some(dir.strip_prefix(logs).ok()?.display().to_string())
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_find_pods_by_short_or_full_name_and_explain_misses() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "t");
        let write = |ns: &str, pod: &str, c: &str, text: &str| {
            let path = layout.container_log(ns, pod, c);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("shop", "catalog-0", "catalog", "serving\n");
        write("shop", "both-0", "a", "from a\n");
        write("shop", "both-0", "b", "from b\n");
        write("other", "both-0", "c", "elsewhere\n");
        write(SYSTEM_NAMESPACE, "control", "control", "ready\n");

        assert_eq!(
            logs(dir.path(), "t", "catalog-0", None).unwrap(),
            "serving\n"
        );
        assert_eq!(logs(dir.path(), "t", "control", None).unwrap(), "ready\n");
        assert_eq!(
            logs(dir.path(), "t", "shop/both-0", None).unwrap(),
            "==> a <==\nfrom a\n==> b <==\nfrom b\n"
        );
        assert_eq!(
            logs(dir.path(), "t", "shop/both-0", Some("b")).unwrap(),
            "from b\n"
        );
        let ambiguous = logs(dir.path(), "t", "both-0", None)
            .unwrap_err()
            .to_string();
        assert!(
            ambiguous.contains("other/both-0 or shop/both-0"),
            "{ambiguous}"
        );
        let missing = logs(dir.path(), "t", "nope", None).unwrap_err().to_string();
        assert!(missing.contains("shop/catalog-0"), "{missing}");
        let other = logs(dir.path(), "u", "catalog-0", None)
            .unwrap_err()
            .to_string();
        assert!(other.contains("no weft up with prefix \"u\""), "{other}");
    }
}
