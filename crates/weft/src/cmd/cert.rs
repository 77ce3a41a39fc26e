//! `weft x cert`: certificate tools. `inspect FILE` prints each certificate of a PEM chain
//! (identity, issuer, validity) and whether the chain verifies; it also reads the JSON form
//! of an Istio CA response (`{"certChain": [...]}`).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weft_identity::inspect::inspect_chain_pem;

#[derive(Debug, Args)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Show identity, issuer and validity of each certificate and whether the chain verifies.
    /// Exit status 0 if it verifies, 1 if not.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// PEM chain (leaf first) or a JSON CA response with `certChain`.
    file: PathBuf,
    /// PEM root(s) to verify against; default: the chain's last certificate if self-signed.
    #[arg(long)]
    root: Option<PathBuf>,
}

pub fn run(args: CertArgs) -> anyhow::Result<ExitCode> {
    let CertCommand::Inspect(args) = args.command;
    let chain = read_chain(&args.file)?;
    let roots = args
        .root
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;
    let report = inspect_chain_pem(&chain, roots.as_deref())
        .with_context(|| format!("inspecting {}", args.file.display()))?;
    print!("{report}");
    Ok(if report.verification.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The chain as PEM text, from a PEM file or a JSON CA response.
fn read_chain(path: &PathBuf) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return Ok(text);
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let chain = json
        .get("certChain")
        .or_else(|| json.get("cert_chain"))
        .and_then(serde_json::Value::as_array)
        .with_context(|| format!("{}: no `certChain` array", path.display()))?;
    Ok(chain.iter().filter_map(serde_json::Value::as_str).collect())
}
