//! `weft analyze`: validation plus the checks between objects.

use super::report_args::{OutputFormat, print_report};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check a configuration as a whole: everything `weft validate` checks, plus references
/// between objects (routes, gateways, services, grants, waypoints) and how policies will be
/// enforced. Exits 1 on any error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json; a directory's
    /// `.weftignore` lists entries to skip).
    #[arg(required = true, value_name = "DIR|FILE")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Runs `weft analyze`.
pub fn run(args: &Args) -> ExitCode {
    print_report(&weft_api::analyze_paths(&args.paths), args.output)
}
