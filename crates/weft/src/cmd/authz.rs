//! `weft x authz check`: would a connection (and a request on it) be allowed? Translates the
//! config as the control plane would and runs the node proxy's own L4 policy evaluator,
//! without starting anything. When a waypoint serves the destination's port, the request
//! is first decided by the waypoint's L7 policies (`--method`, `--path`, `--header`...), and
//! the destination's node proxy then sees the waypoint's identity as the peer.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::authz::{Request, check_request};
use weft_identity::SpiffeId;
use weft_node::authz_check::{AuthzQuery, Source, Target};

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
    request: RequestArgs,
    #[command(flatten)]
    mesh: super::mesh_flags::MeshFlags,
}

/// The HTTP request, decided by the waypoint's L7 policies when one serves the destination.
#[derive(Debug, clap::Args)]
struct RequestArgs {
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path (a query string is ignored by path rules).
    #[arg(long, default_value = "/")]
    path: String,
    /// The service the request is addressed to, `NS/NAME` (default: the first, by name, of
    /// the destination's services that have a waypoint).
    #[arg(long, value_name = "NS/NAME")]
    service: Option<String>,
    /// Host / authority (default: the service's hostname).
    #[arg(long)]
    host: Option<String>,
    /// A request header, `NAME=VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `<issuer>/<subject>` of a valid JWT on the request (default: none).
    #[arg(long, value_name = "ISS/SUB")]
    request_principal: Option<String>,
}

fn parse_header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let name = http::HeaderName::try_from(name.trim())
        .map_err(|e| format!("header name {name:?}: {e}"))?;
    let value =
        http::HeaderValue::try_from(value).map_err(|e| format!("header value {value:?}: {e}"))?;
    Ok((name, value))
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
    let query = AuthzQuery {
        to,
        port: args.port,
        from,
        source_ip: args.source_ip,
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &args.request.headers {
        headers.append(name.clone(), value.clone());
    }
    let request = Request {
        method: &args.request.method,
        path: &args.request.path,
        service: args.request.service.as_deref(),
        host: args.request.host.as_deref(),
        headers: &headers,
        request_principal: args.request.request_principal.as_deref(),
    };
    let answer = check_request(&output, &args.mesh.trust_domain, &query, &request)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    print!("{answer}");
    Ok(ExitCode::SUCCESS)
}
