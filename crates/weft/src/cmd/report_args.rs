//! Output shared by `weft validate` and `weft analyze`.

use std::io::Write;
use std::process::ExitCode;

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// `severity  code  kind/namespace/name  file:line  message`, one per line.
    Text,
    /// A JSON array of findings.
    Json,
}

/// Prints findings to stdout and a summary to stderr; exit code 1 if any error.
pub fn print_report(report: &weft_api::Report, format: OutputFormat) -> ExitCode {
    let body = match format {
        OutputFormat::Text => report.to_text(),
        OutputFormat::Json => report.to_json() + "\n",
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error worth a panic.
    let _ = stdout.write_all(body.as_bytes());
    let _ = stdout.flush();
    eprintln!("{}", report.summary());
    if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
