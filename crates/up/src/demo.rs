//! `weft up --demo`: a scripted tour of the bundled mesh, run from inside pods with the weft
//! binary as the client (`weft x call URL`), each step reported with what the client got
//! and what the server-side node proxy logged about it (its access log, JSON lines).
//!
//! 1. frontend/web -> catalog.shop: allowed; the server's proxy saw web's SPIFFE identity.
//! 2. frontend/reports -> catalog.shop: denied by the AuthorizationPolicy.
//! 3. legacy/legacy-client -> catalog.shop: plaintext from outside the mesh, refused (STRICT).
//! 4. frontend/web -> httpbin.legacy: a destination outside the mesh, passed through.
//! 5. and 6. through the waypoint of shop/reviews ([`crate::demo_l7`]): an L7 traffic split
//!    and an L7 denial.
//! 7. (network namespaces only) this machine's shell -> the shop gateway's address
//!    ([`crate::demo_gateway`]): ingress routed 90/10 to catalog's versions.

use crate::layout::SYSTEM_NAMESPACE;
use crate::mesh::Mesh;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How long one call may take.
const CALL_TIMEOUT_SECS: &str = "3";
/// How long to wait for the node proxy's access-log line of a call.
const LOG_WAIT: Duration = Duration::from_secs(3);

/// One step of the tour.
#[derive(Debug, Clone, Copy)]
struct Step {
    title: &'static str,
    from: &'static str,
    url: &'static str,
    /// What should happen: the call succeeds.
    expect_success: bool,
    /// The workload whose proxy logs the server side (prefix of `ns/name`), if meshed.
    server: Option<&'static str>,
}

const STEPS: [Step; 4] = [
    Step {
        title: "allowed: frontend/web -> catalog.shop (policy allows web's identity)",
        from: "frontend/web-0",
        url: "http://catalog.shop/",
        expect_success: true,
        server: Some("shop/catalog"),
    },
    Step {
        title: "denied by policy: frontend/reports -> catalog.shop",
        from: "frontend/reports-0",
        url: "http://catalog.shop/",
        expect_success: false,
        server: Some("shop/catalog"),
    },
    Step {
        title: "rejected by STRICT mTLS: legacy/legacy-client (not in the mesh) -> catalog.shop",
        from: "legacy/legacy-client-0",
        url: "http://catalog.shop/",
        expect_success: false,
        server: Some("shop/catalog"),
    },
    Step {
        title: "passed through: frontend/web -> httpbin.legacy (outside the mesh)",
        from: "frontend/web-0",
        url: "http://httpbin.legacy:8000/",
        expect_success: true,
        server: None,
    },
];

/// What one call returned.
#[derive(Debug)]
pub(crate) struct CallResult {
    /// Exit status 0: a 2xx answer.
    pub(crate) ok: bool,
    /// What the client printed (status line, then the body).
    pub(crate) output: String,
}

/// What the tour showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    /// One paragraph per step, then a summary line.
    pub text: String,
    /// Whether every step went as expected.
    pub all_as_expected: bool,
}

/// Runs the tour.
#[must_use]
pub fn run(mesh: &Mesh) -> DemoReport {
    let mut report = String::from("demo:\n");
    if mesh.is_explicit() {
        report.push_str(
            "(explicit mode: clients call through their node proxy's SOCKS5 port; servers see \
             the proxy's connection, so the caller's identity is what the server-side proxy \
             logged)\n",
        );
    }
    let mut as_expected = 0;
    for (index, step) in STEPS.iter().enumerate() {
        let _ = writeln!(report, "({}) {}", index + 1, step.title);
        let Some(call) = call_from(mesh, step) else {
            let _ = writeln!(report, "    skipped: pod {} is not running", step.from);
            continue;
        };
        if call.ok == step.expect_success {
            as_expected += 1;
        }
        let verdict = match (call.ok, step.expect_success) {
            (true, true) => "OK, as expected",
            (false, false) => "REFUSED, as expected",
            (true, false) => "UNEXPECTED: the call succeeded",
            (false, true) => "UNEXPECTED: the call failed",
        };
        let _ = writeln!(report, "    result: {verdict}");
        let _ = writeln!(report, "    client: {}", describe_answer(&call));
        if let Some(server) = step.server {
            let _ = writeln!(
                report,
                "    server proxy: {}",
                server_view(mesh, step, server)
            );
        }
    }
    let (l7_expected, l7_steps) = crate::demo_l7::run(mesh, &mut report, STEPS.len() + 1);
    let next = STEPS.len() + l7_steps + 1;
    let (gateway_expected, gateway_steps) = crate::demo_gateway::run(mesh, &mut report, next);
    let as_expected = as_expected + l7_expected + gateway_expected;
    let steps = STEPS.len() + l7_steps + gateway_steps;
    let _ = writeln!(report, "{as_expected}/{steps} steps as expected");
    DemoReport {
        text: report,
        all_as_expected: as_expected == steps,
    }
}

fn call_from(mesh: &Mesh, step: &Step) -> Option<CallResult> {
    call(mesh, step.from, step.url)
}

/// `weft x call URL` as pod `from` (`None` when that pod is not running).
pub(crate) fn call(mesh: &Mesh, from: &str, url: &str) -> Option<CallResult> {
    let output = mesh
        .pod_command(from, mesh.weft_binary())?
        .args(["x", "call", url, "--timeout", CALL_TIMEOUT_SECS])
        .output();
    Some(match output {
        Ok(out) => CallResult {
            ok: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        },
        Err(e) => CallResult {
            ok: false,
            output: format!("cannot run weft x call: {e}"),
        },
    })
}

/// The status line and, for an echo answer, who answered and which caller address it saw.
fn describe_answer(call: &CallResult) -> String {
    let mut lines = call.output.lines();
    let first = lines.next().unwrap_or("(no output)").trim().to_owned();
    let body: String = lines.collect::<Vec<_>>().join("\n");
    match serde_json::from_str::<Value>(&body) {
        Ok(echo) if call.ok => format!(
            "{first}; answered by {} which saw the caller as {}",
            echo["pod"].as_str().unwrap_or("?"),
            echo["source"].as_str().unwrap_or("?")
        ),
        _ => first,
    }
}

/// The destination-side access-log entry of this call, from any node proxy's log.
fn server_view(mesh: &Mesh, step: &Step, server: &str) -> String {
    let Some(client) = mesh.plan().pods.get(step.from) else {
        return "client pod unknown".into();
    };
    if mesh.is_explicit() && !client.enrolled {
        return format!(
            "never reached: in explicit mode the node proxy of {} refuses it as not enrolled \
             (it has no mesh identity, so no mTLS tunnel can be made for it)",
            step.from
        );
    }
    let client_ip = client.ip.to_string();
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        if let Some(entry) = find_access_entry(mesh, &client_ip, server) {
            return describe_entry(&entry);
        }
        if Instant::now() >= deadline {
            return "no access-log line for this connection (see `weft logs node-NODE`)".into();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn describe_entry(entry: &Value) -> String {
    let field = |key: &str| entry[key].as_str().unwrap_or("-").to_owned();
    let mut text = format!(
        "{} {} -> {}, peer identity {}",
        field("result"),
        field("src_addr"),
        field("dst_workload"),
        field("src_identity")
    );
    if let Some(reason) = entry["reason"].as_str() {
        let _ = write!(text, " ({reason})");
    }
    text
}

/// The newest `reporter=destination` entry from `client_ip` to a workload named `server*`.
fn find_access_entry(mesh: &Mesh, client_ip: &str, server: &str) -> Option<Value> {
    let layout = mesh.layout();
    let mut newest: Option<Value> = None;
    for node in &mesh.plan().nodes {
        let log = layout.container_log(SYSTEM_NAMESPACE, &format!("node-{}", node.name), "node");
        let Ok(text) = std::fs::read_to_string(log) else {
            continue;
        };
        for entry in text.lines().filter_map(access_entry) {
            let from_client = entry["src_addr"]
                .as_str()
                .is_some_and(|a| a.rsplit_once(':').is_some_and(|(ip, _)| ip == client_ip));
            let to_server = entry["dst_workload"]
                .as_str()
                .is_some_and(|w| w.starts_with(server));
            let is_destination = entry["reporter"] == "destination";
            let later = newest
                .as_ref()
                .is_none_or(|n| entry["start_unix_ms"].as_u64() >= n["start_unix_ms"].as_u64());
            if from_client && to_server && is_destination && later {
                newest = Some(entry);
            }
        }
    }
    newest
}

/// The JSON object of an access-log line (`... weft::access: {...}`).
fn access_entry(line: &str) -> Option<Value> {
    let (_, rest) = line.split_once("weft::access")?;
    let json = &rest[rest.find('{')?..];
    serde_json::from_str(json.trim_end()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_entries_are_read_from_log_lines() {
        let line = r#"2025-01-01T00:00:00Z  INFO weft::access: {"reporter":"destination","src_addr":"10.244.1.5:4000","src_identity":"spiffe://cluster.local/ns/frontend/sa/web","dst_workload":"shop/catalog-v1-0","result":"ok"}"#;
        let entry = access_entry(line).expect("parsed");
        assert_eq!(
            describe_entry(&entry),
            "ok 10.244.1.5:4000 -> shop/catalog-v1-0, peer identity spiffe://cluster.local/ns/frontend/sa/web"
        );
        assert!(access_entry("INFO weft_node: started").is_none());
    }

    #[test]
    fn echo_answers_name_the_pod_and_the_caller() {
        let call = CallResult {
            ok: true,
            output: "HTTP 200 OK\n{\"pod\":\"catalog-v1\",\"source\":\"10.244.1.5:4000\"}\n".into(),
        };
        assert_eq!(
            describe_answer(&call),
            "HTTP 200 OK; answered by catalog-v1 which saw the caller as 10.244.1.5:4000"
        );
        let failed = CallResult {
            ok: false,
            output: "error: connection reset by peer\n".into(),
        };
        assert_eq!(describe_answer(&failed), "error: connection reset by peer");
    }
}
