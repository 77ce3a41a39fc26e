//! `weft ca rotate`: asks the running control plane to move the mesh to a new root, through
//! a request file in its CA state directory (private to the control plane's user, so the
//! file system decides who may ask). The rotation itself runs inside `weft control`; `weft
//! status` shows where it stands.

use clap::{Args as ClapArgs, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft_identity::ca::{DirRootStore, NextRoot};

/// The mesh certificate authority.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Rotate the mesh's root without an outage: publish a new root next to the old one,
    /// issue certificates from it as proxies renew, drop the old root once no live
    /// certificate chains to it.
    Rotate(RotateArgs),
}

/// `weft ca rotate` flags.
#[derive(Debug, ClapArgs)]
pub struct RotateArgs {
    /// The control plane's --state-dir (default: the same per-user directory).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Rotate to this plug-in CA directory (ca-cert.pem, ca-key.pem, cert-chain.pem,
    /// root-cert.pem) instead of a newly generated self-signed root.
    #[arg(long, value_name = "DIR")]
    plugin: Option<PathBuf>,
    /// Seconds to wait for the running control plane to take the request.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    wait: u64,
}

/// Runs `weft ca ...`.
pub fn run(command: &CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Rotate(args) => rotate(args),
    }
}

fn rotate(args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => super::control::default_state_dir()?,
    };
    let next = match &args.plugin {
        Some(dir) => NextRoot::Plugin(
            std::fs::canonicalize(dir)
                .map_err(|err| anyhow::anyhow!("--plugin {}: {err}", dir.display()))?,
        ),
        None => NextRoot::Generate,
    };
    let ca_dir = state_dir.join("ca");
    let request = DirRootStore::request_rotation(&ca_dir, &next)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    while request.exists() {
        if Instant::now() >= deadline {
            println!(
                "no running control plane took {} within {}s; it is taken when `weft control --state-dir {}` runs",
                request.display(),
                args.wait,
                state_dir.display()
            );
            return Ok(ExitCode::from(2));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "root rotation requested ({}); follow it with `weft status` (errors show there too)",
        match &next {
            NextRoot::Generate => "new generated root".to_owned(),
            NextRoot::Plugin(dir) => format!("plug-in CA {}", dir.display()),
        }
    );
    Ok(ExitCode::SUCCESS)
}
