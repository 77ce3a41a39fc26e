//! Explicit mode's record of the processes it started, so `weft down` can stop them after
//! `weft up` was killed (in namespace mode, removing the namespaces does that). One file per
//! process, `pids/<pid>`, holding the process' start time from `/proc/<pid>/stat`: a pid
//! reused by an unrelated program has another start time and is left alone.

use crate::layout::Layout;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Remembers `pid` (best effort: a record that cannot be written only weakens `weft down`).
pub fn record(layout: &Layout, pid: u32) {
    let dir = layout.pids_dir();
    let Some(started) = start_time(pid) else {
        return;
    };
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(pid.to_string()), started));
    if let Err(e) = written {
        tracing::warn!(pid, error = %e, "cannot record the process for `weft down`");
    }
}

/// Forgets `pid` (it was stopped).
pub fn forget(layout: &Layout, pid: u32) {
    let _ = std::fs::remove_file(layout.pids_dir().join(pid.to_string()));
}

/// Stops every recorded process that still runs (SIGTERM, SIGKILL after `grace`); returns
/// how many there were.
#[must_use]
pub fn stop_recorded(layout: &Layout, grace: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(layout.pids_dir()) else {
        return 0;
    };
    let running: Vec<u32> = entries
        .filter_map(|e| {
            let entry = e.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let recorded = std::fs::read_to_string(entry.path()).ok()?;
            (start_time(pid)? == recorded).then_some(pid)
        })
        .collect();
    for pid in &running {
        signal(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && running.iter().any(|pid| is_running(*pid)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in &running {
        if is_running(*pid) {
            signal(*pid, Signal::SIGKILL);
        }
    }
    running.len()
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Alive and not a zombie.
fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
fn start_time(pid: u32) -> Option<String> {
    stat_fields(pid)?.into_iter().nth(19)
}

/// The fields of `/proc/<pid>/stat` after the command name (state first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_processes_are_stopped_and_others_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "t");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        record(&layout, child.id());
        // A stale record: our own pid with a wrong start time must not be signalled.
        std::fs::write(layout.pids_dir().join(std::process::id().to_string()), "1").unwrap();
        assert_eq!(stop_recorded(&layout, Duration::from_secs(5)), 1);
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep was stopped by a signal: {status}");
    }
}
