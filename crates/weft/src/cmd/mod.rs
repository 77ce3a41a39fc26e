//! Command-line surface: one module per subcommand. Each returns the process exit code.

mod analyze;
mod cert;
mod echo;
mod report_args;
mod translate;
mod validate;

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
}

/// Sets up logging to stderr.
pub fn init_tracing(filter: Option<&str>) {
    let filter = filter.map_or_else(
        || {
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        },
        tracing_subscriber::EnvFilter::new,
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => Ok(validate::run(&args)),
        Command::Analyze(args) => Ok(analyze::run(&args)),
        Command::X(XCommand::Echo(args)) => echo::run(args),
        Command::X(XCommand::Cert(args)) => cert::run(args),
        Command::X(XCommand::Translate(args)) => translate::run(args),
    }
}
