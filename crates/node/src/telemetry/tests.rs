//! Metrics text output and access-log formatting.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use super::*;
use crate::state::tests::{member, pod, service, svc_address, wl_address};
use crate::state::{MeshState, StateStore};
use weft_identity::SpiffeId;
use weft_policy::Transport;
use weft_policy::testing::{allow, deny, dry, mtls, plaintext, rule};

const DB_KEY: &str = "shop/db.shop.svc.cluster.local";

fn state() -> Arc<MeshState> {
    let store = StateStore::new();
    let mut web = pod("shop", "web-7d9-abc", "10.0.1.1");
    web.workload_name = "web".into();
    web.canonical_name = "web-frontend".into();
    web.canonical_revision = "v2".into();
    web.cluster_id = "east".into();
    let db = member(pod("shop", "db-0", "10.0.3.1"), DB_KEY, &[(5432, 5432)]);
    let outcome = store.update_addresses(
        [
            wl_address(web),
            wl_address(db),
            svc_address(service("shop", "db", "10.96.0.20", &[(5432, 0)])),
        ],
        &[],
    );
    assert!(outcome.rejected.is_empty());
    store.snapshot()
}

fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

/// The sample line of `metric` whose labels contain every `(name, value)` in `labels`.
fn sample<'a>(text: &'a str, metric: &str, labels: &[(&str, &str)]) -> Option<&'a str> {
    text.lines().find(|line| {
        line.starts_with(&format!("{metric}{{"))
            && labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
    })
}

#[test]
fn source_side_connection_metrics_carry_istio_names_and_labels() {
    let state = state();
    let web = state.workload_by_name("shop", "web-7d9-abc").unwrap();
    let db = state.workload_by_name("shop", "db-0").unwrap();
    let svc = state.service_by_key(DB_KEY).unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let labels = ConnectionLabels::derive(&ConnectionEnds {
        reporter: Reporter::Source,
        source_workload: Some(web),
        source_identity: Some(web.identity()),
        destination_workload: Some(db),
        destination_service: Some(svc),
        transport: Transport::Hbone,
    });
    let conn = metrics.connection_opened(&labels);
    conn.add_source_to_destination(1200);
    conn.add_source_to_destination(34);
    conn.add_destination_to_source(99);
    conn.closed();
    let text = render(&registry);
    let expected_labels = [
        ("reporter", "source"),
        ("source_workload", "web"),
        ("source_canonical_service", "web-frontend"),
        ("source_canonical_revision", "v2"),
        ("source_workload_namespace", "shop"),
        ("source_principal", "spiffe://cluster.local/ns/shop/sa/web"),
        ("source_app", "web-frontend"),
        ("source_version", "v2"),
        ("source_cluster", "east"),
        ("destination_service", "db.shop.svc.cluster.local"),
        ("destination_service_name", "db"),
        ("destination_service_namespace", "shop"),
        ("destination_workload", "db-0"),
        ("destination_canonical_service", "db-0"),
        ("destination_canonical_revision", "latest"),
        ("destination_workload_namespace", "shop"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/shop/sa/db",
        ),
        ("destination_cluster", "unknown"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
        ("connection_security_policy", "mutual_tls"),
    ];
    for (metric, value) in [
        ("istio_tcp_connections_opened_total", "1"),
        ("istio_tcp_connections_closed_total", "1"),
        ("istio_tcp_received_bytes_total", "1234"),
        ("istio_tcp_sent_bytes_total", "99"),
        ("istio_tcp_connections_failed_total", "0"),
    ] {
        let line = sample(&text, metric, &expected_labels)
            .unwrap_or_else(|| panic!("no {metric} sample with the expected labels in:\n{text}"));
        assert!(line.ends_with(&format!("}} {value}")), "{line}");
    }
    assert!(
        text.contains("# TYPE istio_tcp_connections_opened counter"),
        "{text}"
    );
}

#[test]
fn unknown_parties_are_labelled_unknown() {
    let state = state();
    let db = state.workload_by_name("shop", "db-0").unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let labels = ConnectionLabels::derive(&ConnectionEnds {
        reporter: Reporter::Destination,
        source_workload: None,
        source_identity: None,
        destination_workload: Some(db),
        destination_service: None,
        transport: Transport::Plaintext,
    });
    metrics.connection_failed(&labels);
    let text = render(&registry);
    let line = sample(
        &text,
        "istio_tcp_connections_failed_total",
        &[
            ("reporter", "destination"),
            ("source_workload", "unknown"),
            ("source_principal", "unknown"),
            ("source_workload_namespace", "unknown"),
            ("destination_service", "unknown"),
            ("destination_workload", "db-0"),
            ("destination_principal", "unknown"),
            ("connection_security_policy", "unknown"),
        ],
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("} 1"), "{line}");
    assert!(sample(&text, "istio_tcp_connections_opened_total", &[]).is_none());
}

#[test]
fn denials_dry_run_denials_and_pool_metrics_are_exported() {
    use weft_policy::{CompiledPolicy, PolicySet};
    let compile = |p| Arc::new(CompiledPolicy::compile(None, &p).unwrap());
    let strict = PolicySet::new([compile(allow("shop/none", vec![]))], vec![]);
    let trial = PolicySet::new(
        [compile(dry(deny("shop/trial", vec![rule(vec![])])))],
        vec![],
    );
    let blocked = PolicySet::new([compile(deny("shop/block", vec![rule(vec![])]))], vec![]);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let facts = mtls("cluster.local/ns/a/sa/b", "10.0.0.1", "10.0.3.1:5432");
    metrics.record_decision(&strict.evaluate(&facts), "shop");
    metrics.record_decision(
        &strict.evaluate(&plaintext("10.0.0.1", "10.0.3.1:5432")),
        "shop",
    );
    metrics.record_decision(&blocked.evaluate(&facts), "shop");
    metrics.record_decision(&trial.evaluate(&facts), "shop");
    metrics.pool.handshakes.inc();
    metrics.pool.streams.inc_by(3);
    metrics.pool.connections.set(1);
    let text = render(&registry);
    let none = sample(
        &text,
        "weft_policy_denials_total",
        &[("policy", "none"), ("reason", "no_allow_matched")],
    );
    assert!(none.is_some_and(|l| l.ends_with("} 2")), "{text}");
    let block = sample(
        &text,
        "weft_policy_denials_total",
        &[("policy", "shop/block"), ("reason", "deny_matched")],
    );
    assert!(block.is_some_and(|l| l.ends_with("} 1")), "{text}");
    let trial = sample(
        &text,
        "weft_policy_dry_run_denials_total",
        &[("policy", "shop/trial")],
    );
    assert!(trial.is_some_and(|l| l.ends_with("} 1")), "{text}");
    assert!(
        text.contains("weft_hbone_pool_handshakes_total 1"),
        "{text}"
    );
    assert!(text.contains("weft_hbone_pool_streams_total 3"), "{text}");
    assert!(text.contains("weft_hbone_pool_connections 1"), "{text}");
}

fn entry() -> AccessLogEntry {
    let state = state();
    let web = state.workload_by_name("shop", "web-7d9-abc").unwrap();
    let db = state.workload_by_name("shop", "db-0").unwrap();
    let entry = AccessLogEntry::new(
        Reporter::Destination,
        "10.0.1.1:40000".parse().unwrap(),
        "10.0.3.1:5432".parse().unwrap(),
        1_700_000_000_000,
    );
    let (web, db) = (web.names(), db.names());
    let mut entry = entry
        .with_source(Some(&web), Some(Arc::clone(&web.identity)))
        .with_destination(Some(&db), state.service_by_key(DB_KEY).map(AsRef::as_ref));
    entry.bytes_sent = 10;
    entry.bytes_received = 20;
    entry
}

#[test]
fn access_log_text_line() {
    let mut entry = entry();
    entry.finish(
        Duration::from_millis(1500),
        ConnectionResult::Denied,
        Some("DENY shop/block rule 0 (a DENY rule matched)".into()),
    );
    assert_eq!(
        entry.render(AccessLogFormat::Text),
        "reporter=destination start_unix_ms=1700000000000 src.addr=10.0.1.1:40000 \
         src.workload=shop/web-7d9-abc src.identity=spiffe://cluster.local/ns/shop/sa/web \
         dst.addr=10.0.3.1:5432 dst.service=db.shop.svc.cluster.local dst.workload=shop/db-0 \
         dst.identity=spiffe://cluster.local/ns/shop/sa/db bytes_sent=10 bytes_received=20 \
         duration_ms=1500 result=denied reason=\"DENY shop/block rule 0 (a DENY rule matched)\""
    );
}

#[test]
fn access_log_json_line_leaves_out_absent_fields() {
    let mut entry = AccessLogEntry::new(
        Reporter::Source,
        "10.0.1.1:40000".parse().unwrap(),
        "10.0.3.1:5432".parse().unwrap(),
        5,
    )
    .with_source(
        None,
        Some(SpiffeId::new("td", "a", "b").unwrap().to_string().into()),
    );
    entry.finish(
        Duration::from_millis(7),
        ConnectionResult::Failed,
        Some("connection refused".into()),
    );
    let json: serde_json::Value =
        serde_json::from_str(&entry.render(AccessLogFormat::Json)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "reporter": "source", "start_unix_ms": 5, "src_addr": "10.0.1.1:40000",
            "src_identity": "spiffe://td/ns/a/sa/b", "dst_addr": "10.0.3.1:5432",
            "bytes_sent": 0, "bytes_received": 0, "duration_ms": 7,
            "result": "failed", "reason": "connection refused"
        })
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn access_log_is_emitted_on_its_own_target() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter("weft::access=info")
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        entry().emit(AccessLogFormat::Text);
        tracing::info!(target: "weft::other", "not an access log");
    });
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = output.lines().collect();
    assert_eq!(lines.len(), 1, "{output}");
    assert!(lines[0].contains("weft::access"), "{output}");
    assert!(
        lines[0].contains("src.workload=shop/web-7d9-abc"),
        "{output}"
    );
    assert!(lines[0].contains("result=ok"), "{output}");
}
