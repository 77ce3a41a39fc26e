//! `weft up`, `weft down`, `weft logs`, `weft restart`: a whole mesh on this machine (logic
//! in weft-up).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Instance selection shared by up, down and logs.
#[derive(Debug, Clone, clap::Args)]
pub struct InstanceArgs {
    /// Parent directory of the instance's files (`<state-dir>/<prefix>/`). Default: /run/weft
    /// as root; otherwise $XDG_RUNTIME_DIR/weft, or <tmp>/weft-<uid> without one.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Prefix of every network namespace this mesh creates (`[a-z0-9]{1,16}`); run several
    /// meshes side by side with different prefixes.
    #[arg(long, default_value = "weft")]
    prefix: String,
}

impl InstanceArgs {
    /// `--state-dir`, or the default for this user (for `weft up`, which creates it).
    fn state_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => weft_up::layout::default_state_dir()
                .map_err(|e| anyhow::anyhow!("no state directory: {e}")),
        }
    }

    /// `--state-dir`, or the default directory that holds the instance (for commands
    /// that act on a running one; nothing is created).
    fn existing_state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| weft_up::layout::existing_state_dir(&self.prefix))
    }
}

/// Run a whole ambient mesh on this machine: nodes and pods as network namespaces, the
/// control plane, one node proxy per node and a pod per waypoint Gateway (without root:
/// explicit mode on loopback addresses). Stays in the foreground; Ctrl-C removes it all.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory of manifests (watched: edits apply live). Default: the bundled example
    /// mesh (the repository's `examples/`, compiled in).
    dir: Option<PathBuf>,
    #[command(flatten)]
    instance: InstanceArgs,
    /// After start, run a scripted tour (allowed, denied, STRICT-rejected, passthrough, and
    /// through the waypoint: an L7 traffic split and an L7 denial).
    #[arg(long)]
    demo: bool,
    /// With --demo: remove the mesh and exit after the tour (exit code 1 if a step
    /// did not go as expected).
    #[arg(long, requires = "demo")]
    exit: bool,
    /// Seconds to wait for the control plane and node proxies to be ready.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    ready_timeout: u64,
    /// Run in explicit mode on loopback addresses even as root (what `weft up` does without
    /// root): pods are plain processes that reach the mesh through their node proxy's
    /// SOCKS5/HTTP CONNECT port (ALL_PROXY/HTTP_PROXY); nothing is captured transparently.
    #[arg(long)]
    explicit: bool,
    /// Where to serve the dashboard (`weft dashboard`'s page, fed by this mesh); port 0
    /// picks a free one. Its URL is printed once the mesh is up.
    #[arg(long, value_name = "ADDR", default_value = weft_dashboard::DEFAULT_LISTEN)]
    dashboard: std::net::SocketAddr,
    /// Do not serve the dashboard.
    #[arg(long, conflicts_with = "dashboard")]
    no_dashboard: bool,
    /// Turn request tracing on: waypoints and gateways sample this share of new traces
    /// (0..1) and keep their last spans, which the dashboard's Traces panel shows.
    #[arg(long, value_name = "SHARE", value_parser = trace_share)]
    trace_sampling: Option<f64>,
}

fn trace_share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{share}: expected a share between 0 and 1"))
    }
}

/// Remove a mesh `weft up` left behind (after a crash), or stop a running one.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    instance: InstanceArgs,
}

/// Restart a component of a running `weft up` without dropping its traffic: `gateway NS/NAME`
/// or `waypoint NS/NAME` (the new process takes the old one's listening sockets, the old one
/// drains), or a node (`node-a`, as `weft up` prints it).
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// `gateway NS/NAME`, `waypoint NS/NAME`, or a node name.
    #[arg(required = true, num_args = 1..=2, value_name = "TARGET")]
    target: Vec<String>,
    #[command(flatten)]
    instance: InstanceArgs,
}

/// Print the logs of a pod of a running `weft up` (`NAME`, `NAMESPACE/NAME`, `control`,
/// or `node-NODE`).
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The pod.
    pod: String,
    /// Only this container.
    #[arg(long, short = 'c')]
    container: Option<String>,
    #[command(flatten)]
    instance: InstanceArgs,
}

/// Run a command as a pod of a running `weft up`: in its network namespace with its
/// environment (in explicit mode, its node proxy's variables), e.g.
/// `weft exec frontend/web-0 -- weft x call http://catalog.shop/`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The pod: `NAMESPACE/NAME`, or `NAME` when only one namespace has it.
    pod: String,
    #[command(flatten)]
    instance: InstanceArgs,
    /// The command and its arguments (`weft` means this binary).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let weft = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the weft binary's own path: {e}"))?;
    let mut config =
        weft_up::UpConfig::new(args.instance.state_dir()?, &args.instance.prefix, weft);
    config.config_dir = args.dir;
    config.demo = args.demo;
    config.exit_after_demo = args.exit;
    config.ready_timeout = Duration::from_secs(args.ready_timeout);
    config.explicit = args.explicit;
    config.dashboard = (!args.no_dashboard).then_some(args.dashboard);
    config.trace_sampling = args.trace_sampling;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(weft_up::run(config, super::control::shutdown_signal()))?;
    Ok(if outcome.demo_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn down(args: &DownArgs) -> anyhow::Result<ExitCode> {
    let report = weft_up::down(&args.instance.existing_state_dir(), &args.instance.prefix)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub fn restart(args: &RestartArgs) -> anyhow::Result<ExitCode> {
    let target = weft_up::mesh::RestartTarget::parse(&args.target).map_err(anyhow::Error::msg)?;
    let layout =
        weft_up::layout::Layout::new(&args.instance.existing_state_dir(), &args.instance.prefix);
    println!("{}", weft_up::requests::restart(&layout, &target)?);
    Ok(ExitCode::SUCCESS)
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let text = weft_up::logs(
        &args.instance.existing_state_dir(),
        &args.instance.prefix,
        &args.pod,
        args.container.as_deref(),
    )?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub fn exec(args: &ExecArgs) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    let weft = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the weft binary's own path: {e}"))?;
    let mut command = weft_up::pod_command(
        &args.instance.existing_state_dir(),
        &args.instance.prefix,
        &args.pod,
        &args.command,
        &weft,
    )?;
    // Only returns when the command could not be started.
    let error = command.exec();
    Err(anyhow::anyhow!(
        "cannot run {:?}: {error}",
        command.get_program()
    ))
}
