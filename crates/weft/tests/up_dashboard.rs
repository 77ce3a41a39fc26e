//! `weft dashboard` in a real browser (root: network namespaces; never skipped): `weft up
//! --demo` on the bundled mesh serves the dashboard and prints its URL; after the demo's
//! calls (allowed, denied by policy, refused by STRICT, an L7 denial at the waypoint) and a
//! few more allowed calls, headless Chromium renders the page. The rendered DOM must show
//! the expected edges with non-zero rates, mTLS, the denied calls and the policy denials,
//! and every proxy's certificate expiry; a screenshot is kept under `target/test-artifacts/`.
//!
//! Chromium (Debian's `chromium` package, installed by `scripts/deps.sh`) missing fails the
//! test. Every wait polls a condition with a deadline.

mod up_harness;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use up_harness::{Up, eventually, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(90);

fn chromium() -> &'static str {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "the dashboard test renders the page in headless Chromium: install Debian's `chromium` \
         package (scripts/deps.sh does)"
    );
    "chromium"
}

/// GET `path` from the dashboard; the body of a 200.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {head}"));
    }
    Ok(body.to_owned())
}

/// The attributes of every element of the serialized DOM that has a `marker` attribute.
fn rendered(dom: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    dom.match_indices(&format!(" {marker}=\""))
        .filter_map(|(at, _)| {
            let tag = &dom[dom[..at].rfind('<')? + 1..];
            Some(attributes(&tag[tag.find(' ')?..]))
        })
        .collect()
}

/// The value of `marker` and the text of every element of the serialized DOM that has it
/// (up to the element's first child tag).
fn cell_texts(dom: &str, marker: &str) -> Vec<(String, String)> {
    dom.match_indices(&format!(" {marker}=\""))
        .filter_map(|(at, found)| {
            let rest = &dom[at + found.len()..];
            let (value, rest) = rest.split_once('"')?;
            let text = &rest[rest.find('>')? + 1..];
            Some((value.to_owned(), text[..text.find('<')?].to_owned()))
        })
        .collect()
}

/// `name="value"` pairs up to the end of the tag, values unescaped.
fn attributes(mut rest: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        let Some((name, after)) = rest.split_once("=\"") else {
            break;
        };
        if name.contains(['>', ' ']) {
            break;
        }
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        let value = value
            .replace("&gt;", ">")
            .replace("&lt;", "<")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        attrs.insert(name.to_owned(), value);
        rest = after;
    }
    attrs
}

fn number(attrs: &BTreeMap<String, String>, key: &str) -> f64 {
    attrs.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

fn run_chromium(browser: &str, profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=8000", "--window-size=1400,900"])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn weft_up_dashboard_renders_the_demo_traffic_graph_with_rates_and_denials_in_chromium() {
    assert!(
        is_root(),
        "this test builds network namespaces and must run as root"
    );
    let browser = chromium();
    let state = tempfile::tempdir().expect("temp state dir");
    let mut up = Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        env!("CARGO_BIN_EXE_weft").into(),
        state,
        unique_prefix('d'),
        &["--demo", "--dashboard", "127.0.0.1:0"],
        WAIT,
    );
    let line = up.wait_line("dashboard: ");
    let url = line
        .strip_prefix("dashboard: ")
        .unwrap_or_else(|| panic!("dashboard line: {line}: {}", up.output()))
        .to_owned();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("dashboard URL {url}: {e}"));
    up.wait_line("mesh is up");
    // More allowed calls, so web -> catalog has a rate whatever the demo's timing.
    for _ in 0..5 {
        let (ok, text) = up.call_from("frontend/web-0", "http://catalog.shop/");
        assert!(ok, "web -> catalog: {text}");
    }

    // The data API first: wait until the proxies' scrapes carry the calls.
    let graph = eventually(WAIT, || {
        let body = get(addr, "/api/graph")?;
        let graph: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let edges = graph["edges"].as_array().cloned().unwrap_or_default();
        let find = |prefix: &str, protocol: &str| {
            edges.iter().find(|e| {
                e["id"].as_str().is_some_and(|id| id.starts_with(prefix))
                    && e["protocol"] == protocol
            })
        };
        let allowed = find("frontend/web->shop/catalog", "tcp")
            .ok_or(format!("no web -> catalog edge: {body}"))?;
        let denied = find("frontend/reports->shop/catalog", "tcp")
            .ok_or(format!("no reports -> catalog edge: {body}"))?;
        // Through the waypoint: requests routed to reviews' versions, and the /admin one
        // it denied itself (no workload chosen: the edge ends at the service).
        let l7_denied = edges.iter().any(|e| {
            e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("frontend/web->shop/reviews"))
                && e["protocol"] == "http"
                && e["denied"].as_f64() >= Some(1.0)
        });
        if allowed["rate"].as_f64().unwrap_or(0.0) <= 0.0 {
            return Err(format!("web -> catalog has no rate yet: {allowed}"));
        }
        if denied["denied"].as_f64().unwrap_or(0.0) < 1.0 || !l7_denied {
            return Err(format!("denials not counted yet: {body}"));
        }
        Ok(graph)
    });
    let web_catalog = graph["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("frontend/web->shop/catalog"))
        })
        .expect("edge");
    assert_eq!(web_catalog["mtls"], true, "{web_catalog}");
    assert_eq!(web_catalog["success_rate"], 1.0, "{web_catalog}");

    // The page, rendered by Chromium.
    let profile = tempfile::tempdir().expect("chromium profile");
    let out = run_chromium(browser, profile.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edges = rendered(&dom, "data-edge");
    let edge = |prefix: &str, protocol: &str| {
        edges
            .iter()
            .find(|e| {
                e["data-edge"].starts_with(prefix)
                    && e.get("data-protocol").map(String::as_str) == Some(protocol)
            })
            .unwrap_or_else(|| panic!("no rendered {prefix} {protocol} edge in: {edges:?}"))
    };
    let allowed = edge("frontend/web->shop/catalog", "tcp");
    assert!(number(allowed, "data-rate") > 0.0, "{allowed:?}");
    assert_eq!(allowed["data-mtls"], "true", "{allowed:?}");
    let denied = edge("frontend/reports->shop/catalog", "tcp");
    assert!(number(denied, "data-denied") >= 1.0, "{denied:?}");
    let l7: Vec<_> = edges
        .iter()
        .filter(|e| {
            e["data-edge"].starts_with("frontend/web->shop/reviews")
                && e.get("data-protocol").map(String::as_str) == Some("http")
        })
        .collect();
    assert!(l7.iter().any(|e| number(e, "data-rate") > 0.0), "{l7:?}");
    assert!(
        l7.iter().any(|e| number(e, "data-denied") >= 1.0),
        "the /admin request denied at the waypoint: {l7:?}"
    );
    // The policy denials table and the proxies, all reachable.
    let denials = rendered(&dom, "data-denial");
    assert!(
        denials
            .iter()
            .any(|d| d["data-denial"].starts_with("L4 shop/") && number(d, "data-total") >= 1.0),
        "{denials:?}"
    );
    assert!(
        denials.iter().any(|d| d["data-denial"].starts_with("L7 ")),
        "{denials:?}"
    );
    let proxies = rendered(&dom, "data-proxy");
    assert!(
        proxies
            .iter()
            .any(|p| p["data-proxy"].starts_with("weft-node~")),
        "{proxies:?}"
    );
    assert!(
        proxies
            .iter()
            .any(|p| p["data-proxy"].starts_with("weft-waypoint~")),
        "{proxies:?}"
    );
    assert!(
        proxies.iter().all(|p| p["data-reachable"] == "true"),
        "{proxies:?}"
    );
    // Every proxy's certificate expiry column: the node proxies', the waypoint's and the
    // gateway's own certificates were just issued, so each is valid for hours.
    assert!(dom.contains(">certificate expiry<"), "no column header");
    let expiries = cell_texts(&dom, "data-cert-expiry");
    assert_eq!(expiries.len(), proxies.len(), "{expiries:?}");
    assert!(
        expiries
            .iter()
            .all(|(state, text)| state == "valid" && text.starts_with("in ")),
        "{expiries:?}"
    );

    let screenshot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = format!("--screenshot={}", screenshot.display());
    let out = run_chromium(browser, profile.path(), &[&shot], &url);
    assert!(
        out.status.success(),
        "chromium screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} has {size} bytes",
        screenshot.display()
    );
    println!("dashboard screenshot: {}", screenshot.display());
}
