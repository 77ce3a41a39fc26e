//! `weft x authz check`: would a connection be allowed? Translates the config as the control
//! plane would and runs the node proxy's own L4 policy evaluator, without starting anything.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::translate::{ADDRESS, AUTHORIZATION};
use weft_identity::SpiffeId;
use weft_node::authz_check::{AuthzQuery, Source, Target, check};
use weft_node::state::LocalConfig;

/// `weft x authz ...`
#[derive(Debug, clap::Args)]
pub struct AuthzArgs {
    #[command(subcommand)]
    command: AuthzCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuthzCommand {
    /// Print `ALLOW` or `DENY`, the deciding policy and rule, for one connection.
    Check(CheckArgs),
}

/// One connection to decide.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("client").required(true).args(["from", "plaintext"])))]
struct CheckArgs {
    /// Config files or directories, translated as `weft control` would.
    #[arg(required = true, value_name = "DIR|FILE")]
    paths: Vec<PathBuf>,
    /// Destination: `<namespace>/<pod>` or a workload IP.
    #[arg(long, value_name = "NS/POD|IP")]
    to: String,
    /// Destination (target) port.
    #[arg(long)]
    port: u16,
    /// The client's identity (`spiffe://<td>/ns/<ns>/sa/<sa>`), arriving over mTLS.
    #[arg(long, value_name = "SPIFFE-ID")]
    from: Option<String>,
    /// The client arrives in plaintext (no identity).
    #[arg(long)]
    plaintext: bool,
    /// The client's IP address.
    #[arg(long, value_name = "IP")]
    source_ip: Option<IpAddr>,
    #[command(flatten)]
    mesh: super::mesh_flags::MeshFlags,
}

/// Exit 0 for either decision; 1 for config errors; 2 (via `Err`) for bad arguments.
pub fn run(args: AuthzArgs) -> anyhow::Result<ExitCode> {
    let AuthzCommand::Check(args) = args.command;
    let to: Target = args
        .to
        .parse()
        .map_err(|err| anyhow::anyhow!("--to {}: {err}", args.to))?;
    let from = match &args.from {
        Some(id) => Source::Identity(
            SpiffeId::parse_uri_or_principal(id)
                .map_err(|err| anyhow::anyhow!("--from {id}: {err}"))?,
        ),
        None => Source::Plaintext,
    };
    let output = match super::mesh_flags::load_and_translate(&args.paths, &args.mesh.options()) {
        Ok(output) => output,
        Err(code) => return Ok(code),
    };
    let invalid = |err: &dyn std::fmt::Display| {
        anyhow::anyhow!("translated config is not valid for the node proxy: {err}")
    };
    let addresses = output.decode_all(ADDRESS.type_url);
    let authorizations = output.decode_all(AUTHORIZATION.type_url);
    let config = LocalConfig::from_resources(
        addresses.map_err(|err| invalid(&err))?,
        authorizations.map_err(|err| invalid(&err))?,
    )
    .map_err(|err| invalid(&err))?;
    let state = config.to_state();
    let query = AuthzQuery {
        to,
        port: args.port,
        from,
        source_ip: args.source_ip,
    };
    let result = check(&state, &query).map_err(|err| anyhow::anyhow!("{err}"))?;
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}
