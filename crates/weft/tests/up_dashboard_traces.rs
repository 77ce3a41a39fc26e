//! `weft up --demo --trace-sampling 1` (root: network namespaces; never skipped): requests
//! from frontend/web to reviews.shop pass the `shop/waypoint` waypoint, which keeps their
//! spans; the dashboard's `/api/traces` shows them joined by trace id, and its `/api/authz`
//! gives the waypoint's L7 answer (the demo's `reviews-deny-admin` policy) before the
//! destination's L4 one, as `weft x authz check` does. Every wait polls with a deadline.

mod up_harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use up_harness::{Up, eventually, require_root_and_curl, unique_prefix};

const WAIT: Duration = Duration::from_secs(90);
const WEB: &str = "spiffe://cluster.local/ns/frontend/sa/web";

/// `curl` GET of `path` on the dashboard: the body of a 2xx, else the status and body.
fn http_get_ok(addr: SocketAddr, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    if !status.starts_with('2') {
        return Err(format!("{path}: HTTP {status}: {body}"));
    }
    Ok(body.to_owned())
}

fn api(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let body = http_get_ok(addr, path)?;
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
}

/// The trace of a request for `path` whose waypoint span answered `status`.
fn waypoint_trace(
    traces: &serde_json::Value,
    path: &str,
    status: u64,
) -> Option<serde_json::Value> {
    let traces = traces.as_array()?;
    traces
        .iter()
        .find(|t| {
            t["path"] == path
                && t["spans"].as_array().is_some_and(|spans| {
                    spans.iter().any(|s| {
                        s["proxy"]
                            .as_str()
                            .is_some_and(|p| p.ends_with("shop~waypoint"))
                            && s["reporter"] == "waypoint"
                            && s["status"] == status
                    })
                })
        })
        .cloned()
}

#[test]
fn weft_up_with_tracing_shows_waypoint_traces_and_l7_authz_answers_in_the_dashboard() {
    require_root_and_curl();
    let state = tempfile::tempdir().expect("temp state dir");
    let mut up = Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        env!("CARGO_BIN_EXE_weft").into(),
        state,
        unique_prefix('t'),
        &[
            "--demo",
            "--dashboard",
            "127.0.0.1:0",
            "--trace-sampling",
            "1",
        ],
        WAIT,
    );
    let line = up.wait_line("dashboard: ");
    let addr: SocketAddr = line
        .trim_start_matches("dashboard: http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("dashboard line {line:?}: {e}"));
    up.wait_line("mesh is up");
    for url in ["http://reviews.shop/", "http://reviews.shop/admin"] {
        up.call_from("frontend/web-0", url);
    }

    let (allowed, denied) = eventually(WAIT, || {
        let traces = api(addr, "/api/traces")?;
        let allowed = waypoint_trace(&traces, "/", 200);
        let denied = waypoint_trace(&traces, "/admin", 403);
        allowed
            .zip(denied)
            .ok_or(format!("no waypoint traces for / and /admin yet: {traces}"))
    });
    for trace in [&allowed, &denied] {
        assert_eq!(
            trace["trace_id"].as_str().map(str::len),
            Some(32),
            "{trace}"
        );
        assert_eq!(trace["source"], WEB, "{trace}");
        assert_eq!(trace["method"], "GET", "{trace}");
    }
    let span = &allowed["spans"][0];
    assert!(
        span["upstream_host"]
            .as_str()
            .is_some_and(|h| h.ends_with(":9080")),
        "the waypoint sent the request to a reviews pod: {span}"
    );

    let check = |path: &str| {
        let query = format!(
            "/api/authz?to=shop/reviews-v1-0&port=9080&from={}&method=GET&path={path}",
            WEB.replace(':', "%3A").replace('/', "%2F")
        );
        eventually(WAIT, || api(addr, &query))
    };
    let allow = check("/");
    assert_eq!(allow["allowed"], true, "{allow}");
    assert_eq!(allow["waypoint"]["waypoint"], "shop/waypoint", "{allow}");
    assert_eq!(allow["waypoint"]["allowed"], true, "{allow}");
    let deny = check("/admin");
    assert_eq!(deny["allowed"], false, "{deny}");
    assert_eq!(deny["waypoint"]["allowed"], false, "{deny}");
    let answer = deny["answer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("reviews-deny-admin") && answer.ends_with("(at waypoint shop/waypoint)"),
        "the waypoint's policy decides: {deny}"
    );
    let bad = http_get_ok(
        addr,
        "/api/authz?to=shop/reviews-v1-0&port=9080&header=nocolon",
    );
    assert!(
        bad.is_err_and(|e| e.contains("400")),
        "a bad header is refused"
    );
}
