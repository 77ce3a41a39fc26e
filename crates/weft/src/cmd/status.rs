//! `weft status`: which proxies are connected to the control plane and whether each has
//! acknowledged the latest configuration, the address of each gateway and where a CA root
//! rotation stands; with
//! `--gateways`, every Gateway's listeners and the status of each route on it.

use clap::Args as ClapArgs;
use serde_json::Value;
use std::process::ExitCode;
use weft_api::gateway_status::ObjectStatus;

mod gateways;
mod rotation;

/// Show the proxies connected to the control plane and whether each is in sync.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Control plane admin address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    control: String,
    /// Print the raw JSON of /debug/syncz (with --gateways: of /debug/gatewayz).
    #[arg(long)]
    json: bool,
    /// Show Gateways: addresses, listeners (port, protocol, conditions, attached routes)
    /// and each route's Accepted/ResolvedRefs per parent, from /debug/gatewayz.
    #[arg(long)]
    gateways: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let page = if args.gateways {
        "/debug/gatewayz"
    } else {
        "/debug/syncz"
    };
    let body = runtime.block_on(fetch(&args.control, page))?;
    let value: Value = serde_json::from_slice(&body)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.gateways {
        let statuses: Vec<ObjectStatus> = serde_json::from_value(value)?;
        print!("{}", gateways::render(&statuses));
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_table(&value));
    // A control plane without the page (older) just shows no gateway addresses.
    if let Ok(body) = runtime.block_on(fetch(&args.control, "/debug/gatewayz")) {
        let statuses: Vec<ObjectStatus> = serde_json::from_slice(&body).unwrap_or_default();
        print!("{}", gateways::render_addresses(&statuses));
    }
    if let Ok(body) = runtime.block_on(fetch(&args.control, "/debug/caz")) {
        let caz: Value = serde_json::from_slice(&body).unwrap_or_default();
        print!("{}", rotation::render(&caz));
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of an admin page, or an error naming the address and page.
async fn fetch(control: &str, page: &str) -> anyhow::Result<Vec<u8>> {
    let (status, body) = weft_serve::get(control, page)
        .await
        .map_err(|err| anyhow::anyhow!("{err} (is `weft control` running? see --control)"))?;
    if !status.is_success() {
        anyhow::bail!("{control} answered {status} for {page}");
    }
    Ok(body.to_vec())
}

/// One row per proxy and type: node id, cluster, type, sent/acked versions, sync state.
fn render_table(proxies: &Value) -> String {
    let mut rows = vec![[
        "PROXY".to_owned(),
        "CLUSTER".to_owned(),
        "TYPE".to_owned(),
        "SENT".to_owned(),
        "ACKED".to_owned(),
        "STATUS".to_owned(),
    ]];
    for proxy in proxies.as_array().into_iter().flatten() {
        let node = text(&proxy["node_id"]);
        let cluster = match &proxy["cluster"] {
            Value::String(cluster) if cluster.is_empty() => "-".to_owned(),
            other => text(other),
        };
        for (type_url, state) in proxy["types"].as_object().into_iter().flatten() {
            let short_type = type_url.rsplit('.').next().unwrap_or(type_url).to_owned();
            let sent = text(&state["last_sent"]["version"]);
            let acked = text(&state["last_acked"]["version"]);
            let status = if !state["last_nack"].is_null() {
                format!("NACK: {}", text(&state["last_nack"]["error"]))
            } else if state["in_sync"] == Value::Bool(true) {
                "SYNCED".to_owned()
            } else {
                "NOT SYNCED".to_owned()
            };
            rows.push([
                node.clone(),
                cluster.clone(),
                short_type,
                sent,
                acked,
                status,
            ]);
        }
    }
    if rows.len() == 1 {
        return "no proxies connected\n".to_owned();
    }
    columns(&rows, "")
}

/// Rows as left-aligned columns two spaces apart, each line starting with `indent`.
fn columns<R: AsRef<[String]>>(rows: &[R], indent: &str) -> String {
    let count = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .map(|row| row.as_ref()[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        let row = row.as_ref();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_sync_state_and_nack_reason() {
        let proxies = serde_json::json!([
            {"node_id": "node-a", "cluster": "Kubernetes", "types": {
                "type.googleapis.com/istio.workload.Address": {
                    "last_sent": {"version": "7", "nonce": "n1"},
                    "last_acked": {"version": "7", "nonce": "n1"},
                    "last_nack": null, "in_sync": true},
                "type.googleapis.com/istio.security.Authorization": {
                    "last_sent": {"version": "8", "nonce": "n2"},
                    "last_acked": {"version": "6", "nonce": "n0"},
                    "last_nack": {"response": {"version": "8", "nonce": "n2"}, "error": "bad cidr"},
                    "in_sync": false}
            }}
        ]);
        let table = render_table(&proxies);
        assert!(table.starts_with("PROXY"), "{table}");
        assert!(table.contains("node-a  Kubernetes  Address"), "{table}");
        assert!(table.contains("SYNCED"), "{table}");
        assert!(table.contains("NACK: bad cidr"), "{table}");
        assert_eq!(
            render_table(&serde_json::json!([])),
            "no proxies connected\n"
        );
    }
}
