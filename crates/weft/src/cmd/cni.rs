//! `weft cni`: the CNI plugin (no subcommand: run as a container runtime runs `weft-cni`,
//! see `weft_cni::plugin`), `weft cni install` / `uninstall` (the install container), and
//! `weft cni release-all` (uninstall: take every pod of a node out of the mesh).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use weft_cni::install::{self, InstallOptions};
use weft_node::capture::source::PodRequest;

/// CNI plugin (chained after the cluster's CNI) and its installer.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<CniCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum CniCommand {
    /// Put the plugin binary in the CNI bin dir and chain `weft-cni` last in the first
    /// network configuration list (a single .conf is converted); with --watch, keep it
    /// chained when the cluster's CNI rewrites its file.
    Install(InstallArgs),
    /// Take `weft-cni` out of every network configuration list and remove its binary.
    Uninstall(DirArgs),
    /// Ask the node proxy to release every pod (redirect rules removed, listeners closed,
    /// saved pod list emptied) and capture nothing more until it restarts.
    ReleaseAll(SocketArg),
}

#[derive(Debug, clap::Args)]
struct DirArgs {
    /// Where the container runtime finds CNI plugin binaries.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// Where the container runtime reads network configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SocketArg {
    /// The node proxy's CNI socket (`weft node --cni-socket`).
    #[arg(long, default_value = weft_cni::DEFAULT_SOCKET)]
    socket: PathBuf,
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    #[command(flatten)]
    dirs: DirArgs,
    #[command(flatten)]
    socket: SocketArg,
    /// Namespace whose pods are never handed to the node proxy (repeatable).
    #[arg(long = "exclude-namespace", default_values_t = [String::from("kube-system")])]
    exclude_namespaces: Vec<String>,
    /// Keep running: wait for the cluster's network configuration if there is none yet,
    /// and chain the plugin again whenever it is rewritten.
    #[arg(long)]
    watch: bool,
    /// With --watch: seconds between checks.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    interval: u64,
}

/// Runs `weft cni ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        None => Ok(weft_cni::plugin::main()),
        Some(CniCommand::Install(args)) => install_command(&args),
        Some(CniCommand::Uninstall(dirs)) => {
            let options = InstallOptions {
                bin_dir: dirs.bin_dir,
                conf_dir: dirs.conf_dir,
                socket: PathBuf::new(),
                exclude_namespaces: Vec::new(),
            };
            for path in install::uninstall(&options)? {
                println!("removed weft-cni from {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(CniCommand::ReleaseAll(socket)) => release_all(&socket.socket),
    }
}

fn install_command(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let options = InstallOptions {
        bin_dir: args.dirs.bin_dir.clone(),
        conf_dir: args.dirs.conf_dir.clone(),
        socket: args.socket.socket.clone(),
        exclude_namespaces: args.exclude_namespaces.clone(),
    };
    let binary = std::env::current_exe().context("cannot find the weft binary to install")?;
    let target = install::install_binary(&binary, &options.bin_dir)?;
    println!("installed {}", target.display());
    if !args.watch {
        let chained = install::chain(&options)?;
        println!("chained weft-cni in {}", chained.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let interval = Duration::from_secs(args.interval.max(1));
    install::watch(&options, interval, &|| true, &mut |outcome| match outcome {
        Ok(chained) => println!("chained weft-cni in {}", chained.path.display()),
        Err(error) => eprintln!("weft cni install: {error}"),
    });
    Ok(ExitCode::SUCCESS)
}

fn release_all(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let response = weft_cni::client::request(socket, &PodRequest::ReleaseAll)?;
    if !response.ok {
        bail!(
            "the node proxy refused to release its pods: {}",
            response.error.unwrap_or_default()
        );
    }
    println!(
        "released {} captured pod(s); the node proxy captures nothing more until it restarts",
        response.released.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
