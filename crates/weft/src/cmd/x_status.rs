//! `weft x status`: the Gateway API status weft computes for a config directory, printed as
//! Kubernetes-shaped documents (`apiVersion`, `kind`, `metadata` with `generation`,
//! `status`), without starting anything.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_api::gateway_status::{ObjectStatus, statuses_with};

/// Output format of `weft x status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A multi-document YAML stream, one document per object.
    Yaml,
    /// A JSON array (the control plane's `/debug/gatewayz` answer).
    Json,
}

/// Print the computed status of every GatewayClass, Gateway and route (HTTPRoute,
/// GRPCRoute, TLSRoute, TCPRoute) weft handles: conditions with the Gateway API's types and
/// reasons, listener and route-parent entries, addresses.
#[derive(Debug, clap::Args)]
pub struct XStatusArgs {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Yaml)]
    output: Format,
}

/// Runs `weft x status`. Exits 1 when the config has load errors (nothing is printed).
pub fn run(args: &XStatusArgs) -> anyhow::Result<ExitCode> {
    let loaded = weft_api::load_paths(&args.paths);
    let errors: Vec<_> = loaded
        .findings
        .iter()
        .filter(|f| f.severity == weft_api::Severity::Error)
        .collect();
    if !errors.is_empty() {
        for finding in errors {
            eprintln!("error: {finding}");
        }
        eprintln!("no status computed: fix the errors above (see `weft validate`)");
        return Ok(ExitCode::from(1));
    }
    let snapshot = weft_api::ConfigSnapshot::new(loaded.objects);
    let computed = statuses_with(&snapshot, &weft_control::admin::route_check);
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&computed)? + "\n",
        Format::Yaml => yaml_stream(&computed)?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// One YAML document per object, separated by `---`.
fn yaml_stream(computed: &[ObjectStatus]) -> anyhow::Result<String> {
    let documents: Vec<String> = computed
        .iter()
        .map(weft_api::yaml::to_string)
        .collect::<Result<_, _>>()
        .context("rendering YAML")?;
    Ok(documents
        .iter()
        .map(|d| format!("---\n{d}"))
        .collect::<String>())
}
