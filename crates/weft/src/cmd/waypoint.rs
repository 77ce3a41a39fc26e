//! `weft waypoint apply|list|delete`: waypoint Gateways (and the labels that enroll traffic
//! into them) in a config directory. The file logic lives in `weft_api::waypoint`.

use super::report_args::OutputFormat;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_api::waypoint::{self, ApplyRequest, Outcome, TrafficType, WaypointEntry};

/// Waypoints: write, list and delete the `istio-waypoint` Gateways of a config directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WaypointCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WaypointCommand {
    /// Write a waypoint Gateway (its own file `waypoint-<ns>-<name>.yaml`); idempotent.
    Apply(ApplyArgs),
    /// Waypoints of the directory and what uses each (NAMESPACE NAME FOR ENROLLED FILE).
    List(ListArgs),
    /// Remove a waypoint Gateway and the Namespace labels pointing at it.
    Delete(DeleteArgs),
}

/// Where the configuration is.
#[derive(Debug, clap::Args)]
struct DirArg {
    /// Config directory (as given to `weft up` / `weft control`).
    #[arg(long, value_name = "DIR", default_value = ".")]
    config_dir: PathBuf,
}

/// Which waypoint.
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Namespace of the waypoint.
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: String,
    /// Name of the waypoint Gateway.
    #[arg(long, value_name = "N", default_value = "waypoint")]
    name: String,
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Label the Namespace `istio.io/use-waypoint: <name>` (in its file, in place).
    #[arg(long)]
    enroll_namespace: bool,
    /// Which traffic the waypoint takes (label `istio.io/waypoint-for`).
    #[arg(long = "for", value_enum, default_value_t = ForArg::Service)]
    traffic: ForArg,
    /// Replace an `istio.io/use-waypoint` label that names another waypoint.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ForArg {
    Service,
    Workload,
    All,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only waypoints of this namespace (default: all).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    #[command(flatten)]
    dir: DirArg,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    #[command(flatten)]
    target: TargetArgs,
}

/// Runs `weft waypoint ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        WaypointCommand::Apply(args) => apply(args),
        WaypointCommand::List(args) => list(&args),
        WaypointCommand::Delete(args) => {
            let target = args.target;
            let outcome =
                waypoint::delete(&target.dir.config_dir, &target.namespace, &target.name)?;
            Ok(print_outcome(&outcome))
        }
    }
}

fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let request = ApplyRequest {
        namespace: args.target.namespace,
        name: args.target.name,
        traffic: match args.traffic {
            ForArg::Service => TrafficType::Service,
            ForArg::Workload => TrafficType::Workload,
            ForArg::All => TrafficType::All,
        },
        enroll_namespace: args.enroll_namespace,
        overwrite: args.overwrite,
    };
    let outcome = waypoint::apply(&args.target.dir.config_dir, &request)?;
    Ok(print_outcome(&outcome))
}

/// Messages to stdout, warnings to stderr.
fn print_outcome(outcome: &Outcome) -> ExitCode {
    for message in &outcome.messages {
        println!("{message}");
    }
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let entries = waypoint::list(&args.dir.config_dir, args.namespace.as_deref())?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        OutputFormat::Text => print!("{}", table(&entries)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAMESPACE NAME FOR ENROLLED FILE`, columns padded to their widest cell.
fn table(entries: &[WaypointEntry]) -> String {
    let header = ["NAMESPACE", "NAME", "FOR", "ENROLLED", "FILE"].map(str::to_owned);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(entries.iter().map(|e| {
            let enrolled = if e.enrolled.is_empty() {
                "-".to_owned()
            } else {
                e.enrolled.join(",")
            };
            let file = format!("{}:{}", e.file.display(), e.line);
            [
                e.namespace.clone(),
                e.name.clone(),
                e.traffic.clone(),
                enrolled,
                file,
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|r| r[column].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}
