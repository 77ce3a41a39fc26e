//! `weft dashboard` against the loopback mesh: its data API over a real control plane and
//! two node proxies (edge rates, mTLS, denials, workloads, the authz answer, a proxy that
//! stops answering).

use super::*;

/// `weft dashboard --control ... --listen 127.n.0.1:0`; its process and where it serves.
fn start_dashboard(net: Net, dir: &Path) -> (Proc, SocketAddr) {
    let mut child = weft()
        .args([
            "dashboard",
            "--control",
            &net.control_admin(),
            "--interval",
            "1",
        ])
        .args(["--listen", &format!("{}:0", net.control())])
        .stdout(Stdio::piped())
        .stderr(log_file(dir, "dashboard"))
        .spawn()
        .expect("spawn weft dashboard");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("read the dashboard's first line");
    let addr = line
        .strip_prefix("dashboard: http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no dashboard URL in {line:?}"));
    let proc = Proc {
        child,
        name: "weft dashboard",
    };
    (proc, addr)
}

/// A page of the dashboard's data API, parsed.
fn dashboard_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let page = http_get(&addr.to_string(), path).unwrap_or_default();
    let body = page.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn edge_from<'a>(
    graph: &'a serde_json::Value,
    from: &str,
    to: &str,
) -> Option<&'a serde_json::Value> {
    graph["edges"].as_array()?.iter().find(|e| {
        e["source"].as_str().is_some_and(|s| s.starts_with(from))
            && e["destination"].as_str().is_some_and(|d| d.starts_with(to))
            && e["protocol"] == "tcp"
    })
}

fn signal(proc: &Proc, signal: &str) {
    let pid = proc.child.id().to_string();
    let sent = Command::new("kill").args([signal, &pid]).status();
    assert!(
        sent.is_ok_and(|s| s.success()),
        "kill {signal} {}",
        proc.name
    );
}

/// Each node proxy's `cert_expiry` in `/api/proxies` is the certificate of its own
/// `/certs` page that expires first, read from the proxy's metrics page.
fn assert_soonest_certificate_expiry(mesh: &Mesh, addr: SocketAddr) {
    for (id, node) in [
        ("weft-node~node-a", mesh.net.node_a()),
        ("weft-node~node-b", mesh.net.node_b()),
    ] {
        let (mut held, mut proxy) = (Vec::new(), serde_json::Value::Null);
        wait_for(
            &format!("{id}'s soonest certificate in /api/proxies"),
            || {
                held = valid_certificates(mesh, node);
                proxy = dashboard_json(addr, "/api/proxies")["proxies"]
                    .as_array()
                    .and_then(|list| list.iter().find(|p| p["id"] == id).cloned())
                    .unwrap_or_default();
                proxy["cert_expiry"]["certificates"] == held.len()
            },
        );
        let soonest = held
            .iter()
            .min_by_key(|c| c["not_after_unix"].as_u64())
            .unwrap_or_else(|| panic!("{id} holds no certificate"));
        let expiry = &proxy["cert_expiry"];
        assert_eq!(expiry["expires_unix"], soonest["not_after_unix"], "{proxy}");
        assert_eq!(
            expiry["not_before_unix"], soonest["not_before_unix"],
            "{proxy}"
        );
        assert_eq!(expiry["identity"], soonest["identity"], "{proxy}");
        assert_eq!(expiry["state"], "valid", "{proxy}");
        assert!(expiry["seconds_left"].as_i64() > Some(0), "{proxy}");
    }
}

/// The certificates a node proxy's `/certs` admin page lists as valid.
fn valid_certificates(mesh: &Mesh, node: Ipv4Addr) -> Vec<serde_json::Value> {
    let page = mesh.node_page(node, "/certs");
    let body = page.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let certs: serde_json::Value = serde_json::from_str(body).expect("/certs JSON");
    certs["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"] == "valid")
        .cloned()
        .collect()
}

#[test]
fn dashboard_data_api_shows_rates_denials_workloads_authz_and_an_unreachable_proxy() {
    let net = Net(net());
    let mesh = Mesh::start(net);
    wait_for("both nodes SYNCED in `weft status`", || {
        let out = weft_status(net);
        let table = String::from_utf8_lossy(&out.stdout);
        out.status.success() && node_synced(&table, "node-a") && node_synced(&table, "node-b")
    });
    let (dashboard, addr) = start_dashboard(net, mesh.dir.path());
    // The dashboard's first scrape is the baseline the rates count from.
    wait_for("the dashboard to scrape both node proxies", || {
        let proxies = dashboard_json(addr, "/api/proxies");
        let reachable = proxies["proxies"].as_array().map_or(0, |list| {
            list.iter()
                .filter(|p| p["reachable"] == true && p["kind"] == "node")
                .count()
        });
        reachable == 2
    });
    assert_soonest_certificate_expiry(&mesh, addr);
    for _ in 0..6 {
        assert_eq!(mesh.call_catalog(WEB), SOCKS_OK, "web -> catalog");
    }
    for _ in 0..3 {
        assert_eq!(
            mesh.call_catalog(REPORTS),
            SOCKS_NOT_ALLOWED,
            "reports -> catalog"
        );
    }

    // Edges: web -> catalog with a rate and mTLS; reports -> catalog with its 3 denials.
    let mut view = serde_json::Value::Null;
    wait_for("both edges in /api/view", || {
        view = dashboard_json(addr, "/api/view");
        let allowed = edge_from(&view["graph"], "frontend/web", "shop/catalog");
        let denied = edge_from(&view["graph"], "frontend/reports", "shop/catalog");
        allowed.is_some_and(|e| e["total"].as_f64() >= Some(6.0) && e["rate"].as_f64() > Some(0.0))
            && denied.is_some_and(|e| e["denied"].as_f64() >= Some(3.0))
    });
    let last = &view["graph"];
    let allowed = edge_from(last, "frontend/web", "shop/catalog").expect("edge");
    assert_eq!(allowed["mtls"], true, "{allowed}");
    assert_eq!(allowed["success_rate"], 1.0, "{allowed}");
    // The rate is the window's connections over the window (both proxies scraped together).
    let rate = allowed["rate"].as_f64().unwrap_or_default();
    let count = allowed["count"].as_f64().unwrap_or_default();
    let window = view["window_seconds"].as_f64().unwrap_or_default();
    assert!(count >= 6.0, "{allowed}");
    assert!(
        (rate * window - count).abs() < 0.01 * count,
        "window {window}s: {allowed}"
    );
    let denied = edge_from(last, "frontend/reports", "shop/catalog").expect("edge");
    assert_eq!(denied["success_rate"], 0.0, "{denied}");

    // The node proxy's policy denial counter, by policy, and the recent events.
    let events = dashboard_json(addr, "/api/events");
    let denials = events["denials"].as_array().cloned().unwrap_or_default();
    assert!(
        denials.iter().any(|d| d["layer"] == "L4"
            && d["destination"] == "shop"
            && d["total"].as_f64() >= Some(3.0)),
        "{events}"
    );
    assert!(
        events["events"]
            .as_array()
            .is_some_and(|list| list.iter().any(|e| e["kind"] == "denied")),
        "{events}"
    );

    // Workloads with identity, node, enrollment and policies; authz check answers.
    let workloads = dashboard_json(addr, "/api/workloads");
    let find = |id: &str| {
        workloads
            .as_array()
            .and_then(|l| l.iter().find(|w| w["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no workload {id}: {workloads}"))
    };
    let web = find("frontend/web-0");
    assert_eq!(
        web["identity"],
        format!("spiffe://{WEB_PRINCIPAL}"),
        "{web}"
    );
    assert_eq!(web["node"], "node-a", "{web}");
    assert_eq!(web["enrolled"], true, "{web}");
    assert_eq!(find("legacy/legacy-client-0")["enrolled"], false);
    let catalog = find("shop/catalog-0");
    assert!(
        catalog["policies"]
            .to_string()
            .contains("catalog-allow-web"),
        "{catalog}"
    );
    let check = |from: &str| {
        let from: String = from.replace(':', "%3A").replace('/', "%2F");
        dashboard_json(
            addr,
            &format!("/api/authz?to=shop/catalog-0&port=8080&from={from}"),
        )
    };
    let web_answer = check(&format!("spiffe://{WEB_PRINCIPAL}"));
    assert_eq!(web_answer["allowed"], true, "{web_answer}");
    let reports_answer = check(&format!("spiffe://{REPORTS_PRINCIPAL}"));
    assert_eq!(reports_answer["allowed"], false, "{reports_answer}");
    assert!(
        reports_answer["answer"]
            .as_str()
            .is_some_and(|a| a.starts_with("DENY")),
        "{reports_answer}"
    );

    // A proxy that stops answering (stopped, its xDS stream still open) is shown as
    // unreachable with the reason; the rest of the view is still served.
    signal(&mesh.node_b, "-STOP");
    wait_for("node-b shown unreachable", || {
        let proxies = dashboard_json(addr, "/api/proxies");
        proxies["proxies"].as_array().is_some_and(|list| {
            list.iter().any(|p| {
                p["id"] == "weft-node~node-b"
                    && p["reachable"] == false
                    && p["error"].is_string()
                    && p["cert_expiry"].is_null()
            }) && list
                .iter()
                .any(|p| p["id"] == "weft-node~node-a" && p["reachable"] == true)
        })
    });
    signal(&mesh.node_b, "-CONT");
    let page = http_get(&addr.to_string(), "/").unwrap_or_default();
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("weft dashboard"),
        "{page}"
    );
    drop(dashboard);
}
