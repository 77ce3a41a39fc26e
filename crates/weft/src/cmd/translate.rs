//! `weft x translate`: prints the resources a node proxy would receive for a config directory,
//! without starting anything.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::translate::render::{render_resources, warning_lines};

/// Output format of `weft x translate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAML (the proto JSON mapping, written as YAML).
    Yaml,
    /// JSON.
    Json,
}

/// Translate a config directory to workload API resources (Address, Authorization) in the
/// proto JSON mapping, grouped by type with name and version. Warnings go to stderr.
#[derive(Debug, clap::Args)]
pub struct TranslateArgs {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Yaml)]
    output: Format,

    #[command(flatten)]
    mesh: super::mesh_flags::MeshFlags,
}

/// Runs `weft x translate`. Exits 1 when the config has load errors (nothing is printed).
pub fn run(args: TranslateArgs) -> anyhow::Result<ExitCode> {
    let output = match super::mesh_flags::load_and_translate(&args.paths, &args.mesh.options()) {
        Ok(output) => output,
        Err(code) => return Ok(code),
    };
    let rendered = render_resources(&output)?;
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&rendered)? + "\n",
        Format::Yaml => serde_yaml::to_string(&rendered).context("rendering YAML")?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    for line in warning_lines(&output) {
        eprintln!("warning: {line}");
    }
    Ok(ExitCode::SUCCESS)
}
