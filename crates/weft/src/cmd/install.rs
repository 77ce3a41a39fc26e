//! `weft install`, `weft uninstall` and `weft manifest generate`: the Kubernetes install
//! (`weft_install`) printed, applied with server-side apply, or removed.

use std::path::PathBuf;
use std::process::ExitCode;
use weft_install::{Manifest, Settings, apply, kube};

/// Install values shared by the three commands.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Change an install value, KEY=VALUE (repeatable). Keys: namespace, hub, tag, image,
    /// imagePullPolicy, logLevel, trustDomain, control.replicas,
    /// control.resources.{requests.cpu,requests.memory,limits.memory},
    /// node.resources.{requests.cpu,requests.memory,limits.memory}, node.drainSeconds,
    /// cni.binDir, cni.confDir (docs/kubernetes.md lists the defaults).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

impl SetArgs {
    fn manifest(&self) -> anyhow::Result<Manifest> {
        let settings = Settings::from_sets(&self.sets)?;
        Ok(Manifest::generate(&settings))
    }
}

/// Kubeconfig choice of the commands that talk to the API.
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

/// Install weft in the cluster: namespace, RBAC, control plane, node proxy DaemonSet (with
/// the CNI plugin), GatewayClass `weft`; applied with server-side apply (field manager
/// `weft`).
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    set: SetArgs,
    /// Print the manifests instead of applying them.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    kube: KubeArgs,
}

/// Remove everything `weft install` applied (the same --set values find the same objects),
/// after a Job on every node took the CNI plugin out and made the node proxy release every
/// pod it captured.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    set: SetArgs,
    /// Seconds to wait for every node to release its pods before deleting anyway.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    release_timeout: u64,
    #[command(flatten)]
    kube: KubeArgs,
}

/// `weft manifest ...`: the install's manifests.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Print the manifests `weft install` applies (multi-document YAML).
    Generate(SetArgs),
}

/// Runs `weft manifest generate`.
pub fn manifest(command: &ManifestCommand) -> anyhow::Result<ExitCode> {
    let ManifestCommand::Generate(set) = command;
    print!("{}", set.manifest()?.to_yaml());
    Ok(ExitCode::SUCCESS)
}

/// Runs `weft install`.
pub fn install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let manifest = args.set.manifest()?;
    if args.dry_run {
        print!("{}", manifest.to_yaml());
        return Ok(ExitCode::SUCCESS);
    }
    with_client(&args.kube, async |client| {
        report(apply::install(&client, &manifest).await?);
        Ok(())
    })
}

/// Runs `weft uninstall`.
pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_sets(&args.set.sets)?;
    let wait = std::time::Duration::from_secs(args.release_timeout);
    with_client(&args.kube, async |client| {
        report(apply::uninstall(&client, &settings, wait).await?);
        Ok(())
    })
}

fn report(outcomes: Vec<apply::Outcome>) {
    for outcome in outcomes {
        println!("{}: {}", outcome.object, outcome.what);
    }
}

fn with_client(
    kube: &KubeArgs,
    work: impl AsyncFnOnce(kube::Client) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = apply::connect(kube.kubeconfig.as_deref()).await?;
        work(client).await
    })?;
    Ok(ExitCode::SUCCESS)
}
