//! Command-line surface: one module per subcommand. Each returns the process exit code.

mod analyze;
mod authz;
mod ca;
mod call;
mod cert;
mod cni;
mod control;
mod dashboard;
mod echo;
mod gateway;
mod install;
mod l7_proxy;
mod limit_flags;
mod mesh_flags;
mod node;
mod report_args;
mod status;
mod translate;
mod up;
mod validate;
mod waypoint;
mod x_status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// weft: a sidecar-free service mesh, wire-compatible with Istio ambient.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (e.g. `info`, `weft=debug`); overrides `RUST_LOG`.
    #[arg(long, global = true, env = "WEFT_LOG")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    Analyze(analyze::Args),
    Control(control::Args),
    /// The mesh certificate authority (`rotate`: move the mesh to a new root).
    #[command(subcommand)]
    Ca(ca::CaCommand),
    Node(node::Args),
    Cni(cni::Args),
    Status(status::Args),
    Dashboard(dashboard::Args),
    Up(up::UpArgs),
    Down(up::DownArgs),
    Restart(up::RestartArgs),
    Logs(up::LogsArgs),
    Exec(up::ExecArgs),
    Waypoint(waypoint::Args),
    Gateway(gateway::Args),
    Install(install::InstallArgs),
    Uninstall(install::UninstallArgs),
    /// Kubernetes manifests of the install (`generate`).
    #[command(subcommand)]
    Manifest(install::ManifestCommand),
    /// Experimental and developer tools.
    #[command(subcommand)]
    X(XCommand),
}

/// `weft x ...`: experimental and developer tools.
#[derive(Debug, Subcommand)]
enum XCommand {
    /// Built-in test workload: answers HTTP/1.1 and h2c with what it saw, echoes raw TCP.
    Echo(echo::EchoArgs),
    /// Certificate tools (`inspect FILE`).
    Cert(cert::CertArgs),
    /// Print the workload API resources a config translates to (no servers started).
    Translate(translate::TranslateArgs),
    /// Print the Gateway API status (conditions, listeners, route parents) weft computes
    /// for a config, as Kubernetes-shaped YAML (no servers started).
    Status(x_status::XStatusArgs),
    /// Policy tools (`check`: would this connection be allowed?).
    Authz(authz::AuthzArgs),
    /// Tiny client: HTTP GET a URL or send bytes to HOST:PORT, print the answer or the error.
    Call(call::CallArgs),
    /// The waypoint's HTTP engine as a plain reverse proxy to one upstream (benchmarks;
    /// access log off).
    #[command(name = "l7-proxy", hide = true)]
    L7Proxy(l7_proxy::L7ProxyArgs),
}

/// Sets up logging to stderr, with a filter that can be changed at runtime (`weft node`'s
/// `/logging` admin page): see `weft_serve::logging`.
pub fn init_tracing(filter: Option<&str>) {
    weft_serve::logging::init(filter);
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => Ok(validate::run(&args)),
        Command::Analyze(args) => Ok(analyze::run(&args)),
        Command::Control(args) => control::run_command(args),
        Command::Ca(command) => ca::run(&command),
        Command::Node(args) => node::run(args),
        Command::Cni(args) => cni::run(args),
        Command::Status(args) => status::run(&args),
        Command::Dashboard(args) => dashboard::run(&args),
        Command::Up(args) => up::up(args),
        Command::Down(args) => up::down(&args),
        Command::Restart(args) => up::restart(&args),
        Command::Logs(args) => up::logs(&args),
        Command::Exec(args) => up::exec(&args),
        Command::Waypoint(args) => waypoint::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Install(args) => install::install(&args),
        Command::Uninstall(args) => install::uninstall(&args),
        Command::Manifest(command) => install::manifest(&command),
        Command::X(XCommand::Echo(args)) => echo::run(args),
        Command::X(XCommand::Authz(args)) => authz::run(args),
        Command::X(XCommand::Call(args)) => call::run(&args),
        Command::X(XCommand::L7Proxy(args)) => l7_proxy::run(&args),
        Command::X(XCommand::Cert(args)) => cert::run(args),
        Command::X(XCommand::Translate(args)) => translate::run(args),
        Command::X(XCommand::Status(args)) => x_status::run(&args),
    }
}
