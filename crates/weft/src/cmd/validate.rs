//! `weft validate`: checks each object on its own against its schema.

use super::report_args::{OutputFormat, print_report};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check manifests object by object: YAML syntax, schema (unknown fields, types, required
/// fields, enums), port ranges, CIDRs, label selectors, duplicates. Exits 1 on any error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Runs `weft validate`.
pub fn run(args: &Args) -> ExitCode {
    print_report(&weft_api::validate_paths(&args.paths), args.output)
}
