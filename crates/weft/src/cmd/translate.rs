//! `weft x translate`: prints the resources a node proxy would receive for a config directory,
//! without starting anything.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_api::{ConfigSnapshot, Severity, load_paths};
use weft_control::translate::render::{render_resources, warning_lines};
use weft_control::translate::{TranslateOptions, translate};

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

    /// SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,

    /// DNS suffix of service hostnames.
    #[arg(long, default_value = "cluster.local")]
    domain_suffix: String,

    /// Root namespace: policies there apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,

    /// Cluster id (first part of workload uids).
    #[arg(long, default_value = "Kubernetes")]
    cluster_id: String,

    /// Network of every address (empty: the default network).
    #[arg(long, default_value = "")]
    network: String,
}

/// Runs `weft x translate`. Exits 1 when the config has load errors (nothing is printed).
pub fn run(args: TranslateArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_paths(&args.paths);
    let errors: Vec<_> = loaded
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        for finding in errors {
            eprintln!("error: {finding}");
        }
        eprintln!("not translated: fix the errors above (see `weft validate`)");
        return Ok(ExitCode::from(1));
    }
    let options = TranslateOptions {
        trust_domain: args.trust_domain,
        domain_suffix: args.domain_suffix,
        root_namespace: args.root_namespace,
        cluster_id: args.cluster_id,
        network: args.network,
    };
    let output = translate(&ConfigSnapshot::new(loaded.objects), &options);
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
