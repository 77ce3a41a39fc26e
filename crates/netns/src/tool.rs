//! Running the helper programs (`ip`, `nft`) with checked exit codes and captured stderr.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `program args...` in the current network namespace; returns its stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_input(program, args, None)
}

/// Runs `program args...`, feeding `input` on stdin when given; returns its stdout.
pub(crate) fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| Error::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let output = child.wait_with_output().map_err(spawn_err)?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Error::Command {
        command: format!("{program} {}", args.join(" ")),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Runs `program args...` inside the network namespace at `netns` (a dedicated thread
/// enters the namespace and starts the child from there, so the child inherits it).
pub(crate) fn run_in(
    netns: &Path,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String> {
    let program = program.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let input = input.map(str::to_owned);
    crate::inns::run_in_netns(netns, move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_with_input(&program, &args, input.as_deref())
    })?
}

/// Applies the nftables `script` (one atomic transaction) inside the namespace at `netns`.
pub(crate) fn nft_in(netns: &Path, script: &str) -> Result<()> {
    run_in(netns, "nft", &["-f", "-"], Some(script))?;
    Ok(())
}

/// Deletes table `family name` inside the namespace at `netns`; absent is fine (the
/// script declares it first, so the delete always has something to remove).
pub(crate) fn remove_table_in(netns: &Path, family: &str, name: &str) -> Result<()> {
    nft_in(
        netns,
        &format!("table {family} {name} {{}}\ndelete table {family} {name}\n"),
    )
}

/// Runs `ip -n <netns> args...` (a named namespace under /run/netns).
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Fails with a clear message unless this process is root and `ip` and `nft` work.
///
/// # Errors
/// [`Error::Prerequisite`] naming the missing piece.
pub fn check_prerequisites() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Prerequisite(
            "network namespaces need root (run as root or with CAP_SYS_ADMIN + CAP_NET_ADMIN)"
                .into(),
        ));
    }
    for (program, arg) in [("ip", "-V"), ("nft", "--version")] {
        run(program, &[arg]).map_err(|e| {
            Error::Prerequisite(format!(
                "`{program}` is not usable ({e}); install iproute2 and nftables"
            ))
        })?;
    }
    Ok(())
}
