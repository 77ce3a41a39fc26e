//! The `weft-node` binary as a real process: its `--help` lists exactly the flags of the
//! shared node proxy command line (`weft_node::cli`, which `weft node` parses too), and
//! run from a local config it serves readiness, SOCKS5 on the explicit port and the
//! `/logging` admin page, then exits cleanly on SIGTERM.

use std::net::Ipv4Addr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(20);

fn weft_node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft-node"))
}

#[test]
fn help_lists_exactly_the_shared_command_lines_flags() {
    let listed = weft_testkit::help_flags_of(weft_node().arg("--help"), "Usage: weft-node");
    assert!(
        listed.contains("pod-socket") && listed.contains("log-level"),
        "{listed:?}"
    );
    assert_eq!(listed, weft_node::cli::flag_names());
}

#[test]
fn conflicting_flags_are_refused_naming_both() {
    let out = weft_node()
        .args([
            "--node",
            "a",
            "--local-config",
            "/nonexistent",
            "--control",
            "x:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--local-config") && stderr.contains("--control"),
        "{stderr}"
    );
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits up to [`WAIT`] for the exit.
    async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(exit) = self.0.try_wait().unwrap() {
                return exit;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `addr` + `path` until it answers 200, up to [`WAIT`]; returns the body.
async fn wait_ok(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((status, body)) = weft_serve::get(addr, path).await
            && status.is_success()
        {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(Instant::now() < deadline, "{addr}{path} not 200 in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_from_a_local_config_and_exits_cleanly_on_sigterm() {
    let n = weft_testkit::loopback_net();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mesh.json");
    std::fs::write(&config, r#"{"workloads": []}"#).unwrap();
    let ip = Ipv4Addr::new(127, n, 0, 2);
    let child = weft_node()
        .arg("--local-config")
        .arg(&config)
        .args([
            "--node",
            "node-a",
            "--insecure-local-ca",
            "--drain-timeout",
            "1",
        ])
        .args(["--bind-ip", &ip.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    wait_ok(&format!("{ip}:15021"), "/healthz/ready").await;

    // SOCKS5 greeting on the explicit port: "no authentication" chosen.
    let mut socks = tokio::net::TcpStream::connect((ip, 15080)).await.unwrap();
    socks.write_all(&[5, 1, 0]).await.unwrap();
    let mut reply = [0u8; 2];
    tokio::time::timeout(WAIT, socks.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, [5, 0]);
    drop(socks);

    // Logging was set up by the binary: the admin page can change its filter.
    let logging = wait_ok(&format!("{ip}:15000"), "/logging?level=debug").await;
    assert!(logging.contains("log filter is now debug"), "{logging}");

    let exit = proc.terminate().await;
    assert!(exit.success(), "{exit:?}");
}
