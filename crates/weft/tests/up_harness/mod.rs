//! A running `weft up` for the end-to-end tests (`up.rs` as root in network namespaces,
//! `up_unprivileged.rs` in explicit mode): its stdout lines on a channel, waits with
//! deadlines, signals, and `weft down` on drop so a failed test leaves nothing behind.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // The effective uid is the second number of the Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Fails (never skips) unless this process is root and `curl` runs: the tests that make
/// requests from the machine's shell need both.
pub fn require_root_and_curl() {
    assert!(
        is_root(),
        "this test builds network namespaces and must run as root (CI runs it as root)"
    );
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|out| out.status.success()),
        "this test makes requests with curl: install curl"
    );
}

/// A `--prefix` no other test (or test run) uses at the same time; `tag` tells the test
/// files apart.
pub fn unique_prefix(tag: char) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 1_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `weft up` whose stdout lines arrive on a channel.
pub struct Up {
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    pub prefix: String,
    /// The `--state-dir` the run uses (given, or the default it must pick).
    pub state_dir: PathBuf,
    /// Owns the temporary directory `state_dir` is in.
    _temp: tempfile::TempDir,
    /// The binary `weft down` runs with on drop.
    weft: PathBuf,
    /// Deadline of every wait.
    wait: Duration,
}

impl Up {
    /// Runs `command` (the weft binary, or a wrapper that execs it) with `up`, `extra`, a
    /// fresh prefix and `state` as the state directory.
    pub fn start(
        mut command: Command,
        weft: PathBuf,
        state: tempfile::TempDir,
        prefix: String,
        extra: &[&str],
        wait: Duration,
    ) -> Up {
        command
            .arg("up")
            .args(extra)
            .args(["--prefix", &prefix, "--state-dir"])
            .arg(state.path());
        let state_dir = state.path().to_owned();
        Self::spawn(command, weft, state, state_dir, prefix, wait)
    }

    /// Runs `command` with `up` and `extra` only: the default prefix (`weft`) and the
    /// default state directory, which the caller expects to be `state_dir` (inside `temp`).
    pub fn start_with_defaults(
        mut command: Command,
        weft: PathBuf,
        temp: tempfile::TempDir,
        state_dir: PathBuf,
        extra: &[&str],
        wait: Duration,
    ) -> Up {
        command.arg("up").args(extra);
        Self::spawn(command, weft, temp, state_dir, "weft".to_owned(), wait)
    }

    fn spawn(
        mut command: Command,
        weft: PathBuf,
        temp: tempfile::TempDir,
        state_dir: PathBuf,
        prefix: String,
        wait: Duration,
    ) -> Up {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weft up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child,
            lines,
            seen: Vec::new(),
            prefix,
            state_dir,
            _temp: temp,
            weft,
            wait,
        }
    }

    /// Waits for a stdout line containing `text`.
    pub fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + self.wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line with {text:?} in time; output:\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "weft up ended before printing {text:?}; output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Sends `signal` (as `kill` spells it, e.g. `-INT`) to `weft up`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for `weft up` to exit, keeping what it still printed.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait weft up") {
                self.seen.extend(self.lines.try_iter());
                return status;
            }
            assert!(Instant::now() < deadline, "weft up did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines printed so far.
    pub fn lines(&self) -> &[String] {
        &self.seen
    }

    /// Every line printed so far, as one text.
    pub fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// Runs `weft exec POD -- CMD...` against this run and returns what it printed.
    pub fn exec(&self, pod: &str, command: &[&str]) -> std::process::Output {
        Command::new(&self.weft)
            .args(["exec", pod, "--prefix", &self.prefix, "--state-dir"])
            .arg(&self.state_dir)
            .arg("--")
            .args(command)
            .output()
            .expect("run weft exec")
    }

    /// `weft exec`s `weft x call URL` from `pod`: the call's exit status and its output.
    pub fn call_from(&self, pod: &str, url: &str) -> (bool, String) {
        let output = self.exec(pod, &["weft", "x", "call", "--timeout", "5", url]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// `weft exec` on the bundled mesh: commands run as the pod (its identity variables and
    /// nothing of ours), and calls made through it get the pod's treatment by the mesh (web
    /// is allowed to catalog, reports is denied); an unknown pod is a clear error.
    pub fn assert_exec_runs_commands_as_pods(&self) {
        let env = self.exec("frontend/web-0", &["env"]);
        let env = String::from_utf8_lossy(&env.stdout);
        assert!(env.lines().any(|l| l == "POD_NAME=web-0"), "{env}");
        assert!(env.lines().any(|l| l == "POD_NAMESPACE=frontend"), "{env}");
        assert!(!env.lines().any(|l| l.starts_with("HOME=")), "{env}");

        let (ok, text) = self.call_from("frontend/web-0", "http://catalog.shop/");
        assert!(ok, "web -> catalog must be allowed: {text}");
        assert!(text.contains("\"pod\":\"catalog-v"), "{text}");
        let (ok, text) = self.call_from("reports-0", "http://catalog.shop/");
        assert!(!ok, "reports -> catalog must be denied: {text}");

        let missing = self.exec("shop/nope-0", &["true"]);
        assert!(!missing.status.success());
        let error = String::from_utf8_lossy(&missing.stderr);
        assert!(error.contains("no pod shop/nope-0"), "{error}");
    }

    /// Where this run keeps its files.
    pub fn instance_dir(&self) -> PathBuf {
        self.state_dir.join(&self.prefix)
    }

    /// Prints the last lines of the mesh's own processes (control plane, node proxies)
    /// without the access log: what a failed test needs to be diagnosed from CI's output,
    /// as the state directory goes with the test.
    fn print_mesh_logs(&self) {
        let system = self.instance_dir().join("logs/weft-system");
        let Ok(entries) = std::fs::read_dir(&system) else {
            return;
        };
        for entry in entries.flatten() {
            for log in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("weft::access"))
                    .collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("--- {}:\n{}", log.path().display(), tail.join("\n"));
            }
        }
    }
}

/// Polls `check` until it returns `Ok`, failing with its last error after `limit`.
pub fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("not in time; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed test must not leave namespaces or processes behind for the next run.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.print_mesh_logs();
        }
        let _ = Command::new(&self.weft)
            .args(["down", "--prefix", &self.prefix, "--state-dir"])
            .arg(&self.state_dir)
            .output();
    }
}
