//! `weft x translate`: prints the resources the proxies would receive for a config directory
//! (or, with `--for waypoint NS/NAME` / `--for gateway NS/NAME`, what one waypoint or
//! gateway receives), without starting anything. Private keys are shown as `<redacted>`.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::translate::render::{render_resources, render_selected, warning_lines};
use weft_control::translate::{GATEWAY, Output, ResourceKey, ResourceType, WAYPOINT};

/// Output format of `weft x translate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAML (the proto JSON mapping, written as YAML).
    Yaml,
    /// JSON.
    Json,
}

/// Translate a config directory to the xDS resources weft serves (Address, Authorization,
/// Waypoint, Gateway, ...) in the proto JSON mapping, grouped by type with name and version.
/// Gateway private keys are shown as `<redacted>`. Warnings go to stderr.
#[derive(Debug, clap::Args)]
pub struct TranslateArgs {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Yaml)]
    output: Format,

    /// Only what one proxy receives: `--for waypoint NS/NAME` prints that waypoint's
    /// `weft.l7.v1.Waypoint` resource, `--for gateway NS/NAME` that gateway's
    /// `weft.l7.v1.Gateway` resource (and only its warnings).
    #[arg(long = "for", num_args = 2, value_names = ["KIND", "NS/NAME"])]
    for_proxy: Option<Vec<String>>,

    #[command(flatten)]
    mesh: super::mesh_flags::MeshFlags,
}

/// Runs `weft x translate`. Exits 1 when the config has load errors (nothing is printed).
pub fn run(args: TranslateArgs) -> anyhow::Result<ExitCode> {
    let output = match super::mesh_flags::load_and_translate(&args.paths, &args.mesh.options()) {
        Ok(output) => output,
        Err(code) => return Ok(code),
    };
    let selected = match args.for_proxy.as_deref() {
        Some(target) => match selection(&output, target) {
            Ok(key) => Some(key),
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    let rendered = match &selected {
        Some(key) => render_selected(&output, std::slice::from_ref(key))?,
        None => render_resources(&output)?,
    };
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&rendered)? + "\n",
        Format::Yaml => weft_api::yaml::to_string(&rendered).context("rendering YAML")?,
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    let warnings = match &selected {
        Some(key) => output
            .warnings
            .get(key)
            .into_iter()
            .flatten()
            .map(ToString::to_string)
            .collect(),
        None => warning_lines(&output),
    };
    for line in warnings {
        eprintln!("warning: {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The resource `--for KIND NAME` names, or why there is none.
fn selection(output: &Output, target: &[String]) -> Result<ResourceKey, String> {
    let [kind, name] = target else {
        return Err("--for takes a kind and a name, e.g. --for waypoint shop/waypoint".into());
    };
    let (resource_type, what): (&ResourceType, &str) = match kind.as_str() {
        "waypoint" => (&WAYPOINT, "no Gateway of class istio-waypoint"),
        "gateway" => (
            &GATEWAY,
            "no Gateway of a class weft runs (controller weft.dev/gateway or \
             istio.io/gateway-controller)",
        ),
        other => {
            return Err(format!(
                "--for {other}: only `waypoint` and `gateway` are supported"
            ));
        }
    };
    let key = ResourceKey::new(resource_type.type_url, name.as_str());
    if output.get(&key).is_some() {
        return Ok(key);
    }
    let known: Vec<&str> = output
        .of_type(resource_type.type_url)
        .keys()
        .map(String::as_str)
        .collect();
    let known = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };
    Err(format!(
        "no {kind} {name}: {what} has that <namespace>/<name> ({kind}s in this config: {known})"
    ))
}
