//! Request traces: the last sampled spans every waypoint and gateway keeps
//! (`/debug/traces` on its metrics port, when started with `--recent-spans`), joined by
//! trace id into one [`TraceView`] per request, newest first.

use crate::fetch::{Dialer, get_json};
use crate::proxies::ProxyView;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::task::JoinSet;

/// How many traces the view keeps.
pub const TRACES_KEPT: usize = 100;

/// One proxy's span of a request, as its `/debug/traces` gives it (see
/// `docs/dashboard.md`), with `proxy` set to the dashboard's id of that proxy.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct SpanView(serde_json::Map<String, Value>);

impl SpanView {
    fn text(&self, key: &str) -> &str {
        self.0.get(key).and_then(Value::as_str).unwrap_or_default()
    }

    fn number(&self, key: &str) -> u64 {
        self.0.get(key).and_then(Value::as_u64).unwrap_or_default()
    }

    /// The dashboard's id of the proxy that reported it.
    #[must_use]
    pub fn proxy(&self) -> &str {
        self.text("proxy")
    }

    fn start(&self) -> u64 {
        self.number("start_unix_ms")
    }
}

/// Per span, how many of its callers (parent, its parent, ...) are among `spans`. A
/// cycle, which only bogus spans make, is cut where the walk meets itself.
fn depths(spans: &[SpanView]) -> Vec<usize> {
    let parent_of: HashMap<&str, &str> = (spans.iter())
        .map(|s| (s.text("span_id"), s.text("parent_span_id")))
        .filter(|(id, _)| !id.is_empty())
        .collect();
    let mut known: HashMap<&str, usize> = HashMap::new();
    // The depth of a span called by `id`: 0 when `id` is not among the spans. Walks from
    // `id` up through its callers until one whose depth is known, or a root.
    let mut depth_of = |id: &str| -> usize {
        let (mut path, mut on_path) = (Vec::new(), HashSet::new());
        let mut at = parent_of.get_key_value(id).map(|(k, _)| *k);
        let mut above = None;
        while let Some(span) = at {
            if let Some(&depth) = known.get(span) {
                above = Some(depth);
                break;
            }
            if !on_path.insert(span) {
                break;
            }
            path.push(span);
            at = parent_of
                .get(span)
                .and_then(|p| parent_of.get_key_value(*p))
                .map(|(k, _)| *k);
        }
        let mut depth = above.map_or(0, |d| d + 1);
        for span in path.into_iter().rev() {
            known.insert(span, depth);
            depth += 1;
        }
        depth
    };
    (spans.iter())
        .map(|s| depth_of(s.text("parent_span_id")))
        .collect()
}

/// One request across the proxies it passed.
#[derive(Debug, Clone, Serialize)]
pub struct TraceView {
    /// W3C trace id.
    pub trace_id: String,
    /// The first proxy's caller (a SPIFFE id, or `plaintext`).
    pub source: String,
    /// Where the last proxy sent it: its upstream service, else the authority.
    pub destination: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The status the caller got (the first proxy's).
    pub status: u64,
    /// The first proxy's duration, milliseconds.
    pub duration_ms: u64,
    /// Start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Its spans, in start order (a parent before its children).
    pub spans: Vec<SpanView>,
}

/// Reads every waypoint's and gateway's kept spans (concurrently) and joins them. A proxy
/// that keeps none (404, tracing off) or does not answer adds nothing; its metrics scrape
/// reports why it is unreachable.
pub async fn collect(dialer: &Arc<dyn Dialer>, proxies: &[ProxyView]) -> Vec<TraceView> {
    let mut tasks = JoinSet::new();
    let l7 = proxies
        .iter()
        .filter(|p| p.kind == "waypoint" || p.kind == "gateway");
    for proxy in l7 {
        let Some(addr) = proxy.metrics_addr else {
            continue;
        };
        let (id, dialer) = (proxy.id.clone(), Arc::clone(dialer));
        tasks.spawn(async move {
            let page = get_json(&dialer, addr, "/debug/traces").await;
            page.map(|page| spans_of(&id, &page)).unwrap_or_default()
        });
    }
    let mut spans = Vec::new();
    while let Some(done) = tasks.join_next().await {
        spans.extend(done.unwrap_or_default());
    }
    join(spans)
}

/// The spans of one proxy's `/debug/traces` answer, named by `proxy`.
#[must_use]
pub fn spans_of(proxy: &str, page: &Value) -> Vec<(String, SpanView)> {
    let spans = page["spans"].as_array().into_iter().flatten();
    spans.filter_map(|span| span_of(proxy, span)).collect()
}

fn span_of(proxy: &str, span: &Value) -> Option<(String, SpanView)> {
    let mut fields = span.as_object()?.clone();
    let trace_id = fields.get("trace_id")?.as_str()?.to_owned();
    fields.insert("proxy".to_owned(), Value::from(proxy));
    Some((trace_id, SpanView(fields)))
}

/// Joins spans by trace id: the newest [`TRACES_KEPT`] traces, newest first.
#[must_use]
pub fn join(spans: Vec<(String, SpanView)>) -> Vec<TraceView> {
    let mut by_trace: BTreeMap<String, Vec<SpanView>> = BTreeMap::new();
    for (trace_id, span) in spans {
        by_trace.entry(trace_id).or_default().push(span);
    }
    let mut traces: Vec<TraceView> = by_trace
        .into_iter()
        .filter_map(|(trace_id, spans)| trace(trace_id, spans))
        .collect();
    traces.sort_by(|a, b| (b.start_unix_ms, &b.trace_id).cmp(&(a.start_unix_ms, &a.trace_id)));
    traces.truncate(TRACES_KEPT);
    traces
}

fn trace(trace_id: String, spans: Vec<SpanView>) -> Option<TraceView> {
    // A proxy starts before the ones it calls; at an equal start, the caller (fewer
    // callers above it) comes first. The key is a total order whatever the spans claim.
    let depths = depths(&spans);
    let mut keyed: Vec<_> = depths.into_iter().zip(spans).collect();
    keyed.sort_by(|(da, a), (db, b)| {
        let key = |depth: &usize, s: &SpanView| (s.start(), *depth, s.text("span_id").to_owned());
        key(da, a).cmp(&key(db, b))
    });
    let spans: Vec<SpanView> = keyed.into_iter().map(|(_, span)| span).collect();
    let (first, last) = (spans.first()?, spans.last()?);
    let source = match first.text("source_principal") {
        "" => "plaintext",
        principal => principal,
    };
    let destination = match last.text("upstream_service") {
        "" | "-" => last.text("authority"),
        service => service,
    };
    Some(TraceView {
        trace_id,
        source: source.to_owned(),
        destination: destination.to_owned(),
        method: first.text("method").to_owned(),
        path: first.text("path").to_owned(),
        status: first.number("status"),
        duration_ms: first.number("duration_ms"),
        start_unix_ms: first.start(),
        spans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(spans: &[Value]) -> Value {
        json!({ "spans": spans })
    }

    #[test]
    fn spans_of_one_request_through_two_proxies_make_one_trace() {
        let gateway = page(&[json!({
            "trace_id": "t1", "span_id": "a", "parent_span_id": null, "reporter": "source",
            "method": "GET", "path": "/cart", "status": 503, "source_principal": "",
            "start_unix_ms": 1000, "duration_ms": 12, "upstream_service": "shop/web",
        })]);
        let waypoint = page(&[
            json!({
                "trace_id": "t1", "span_id": "b", "parent_span_id": "a",
                "reporter": "waypoint", "method": "GET", "path": "/cart", "status": 503,
                "source_principal": "spiffe://cluster.local/ns/shop/sa/gw",
                "start_unix_ms": 1000, "duration_ms": 10, "upstream_service": "shop/cart",
            }),
            json!({"trace_id": "t0", "span_id": "c", "start_unix_ms": 900, "status": 200}),
            json!({"no": "trace id"}),
        ]);
        let mut spans = spans_of("waypoint shop/waypoint", &waypoint);
        spans.extend(spans_of("gateway shop/gw", &gateway));
        let traces = join(spans);
        assert_eq!(traces.len(), 2);
        let t1 = &traces[0];
        assert_eq!(t1.trace_id, "t1", "newest first");
        assert_eq!(t1.source, "plaintext");
        assert_eq!(t1.destination, "shop/cart");
        assert_eq!((t1.status, t1.duration_ms), (503, 12));
        let proxies: Vec<&str> = t1.spans.iter().map(SpanView::proxy).collect();
        assert_eq!(proxies, ["gateway shop/gw", "waypoint shop/waypoint"]);
    }

    /// 64 spans of one trace starting in the same millisecond, each calling back to an
    /// earlier one (3 in 4) in a scrambled order: callers come before the spans they
    /// called, and the sort never sees an inconsistent order (Rust's sort may panic on one).
    #[test]
    fn spans_starting_together_are_ordered_callers_first_without_panicking() {
        let mut x: u64 = 3;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = 64;
        let spans: Vec<Value> = (0..n)
            .map(|k| {
                let i = (k * 37) % n + 1;
                let parent =
                    (i > 1 && next() % 4 != 0).then(|| format!("s{}", next() % (i - 1) + 1));
                json!({"trace_id": "t", "span_id": format!("s{i}"), "parent_span_id": parent,
                    "start_unix_ms": 5})
            })
            .collect();
        let traces = join(spans_of("p", &page(&spans)));
        let order: Vec<&str> = traces[0].spans.iter().map(|s| s.text("span_id")).collect();
        assert_eq!(order.len(), 64);
        for (at, span) in traces[0].spans.iter().enumerate() {
            let parent = span.text("parent_span_id");
            if let Some(p) = order.iter().position(|id| *id == parent) {
                assert!(p < at, "{parent} after its callee {}", order[at]);
            }
        }
    }

    #[test]
    fn spans_calling_each_other_in_a_cycle_are_all_kept() {
        let spans: Vec<Value> = ["a", "b", "c"]
            .iter()
            .zip(["c", "a", "b"])
            .map(|(id, parent)| json!({"trace_id": "t", "span_id": id, "parent_span_id": parent}))
            .collect();
        let traces = join(spans_of("p", &page(&spans)));
        assert_eq!(traces[0].spans.len(), 3);
    }

    #[test]
    fn only_the_newest_traces_are_kept() {
        let spans: Vec<Value> = (0..TRACES_KEPT as u64 + 5)
            .map(|i| json!({"trace_id": format!("t{i}"), "start_unix_ms": i}))
            .collect();
        let traces = join(spans_of("p", &page(&spans)));
        assert_eq!(traces.len(), TRACES_KEPT);
        assert_eq!(traces[0].start_unix_ms, TRACES_KEPT as u64 + 4);
    }
}
