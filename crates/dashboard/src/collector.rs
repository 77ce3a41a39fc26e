//! The dashboard's background loop: every few seconds it reads the control plane's admin
//! pages and every proxy's metrics, keeps each proxy's recent scrapes, and recomputes the
//! [`View`] the data API serves. A page or proxy that does not answer is reported in the
//! view (with the reason) and the rest is still shown.

use crate::fetch::{Dialer, get, get_json};
use crate::findings::{self, FindingView};
use crate::graph::{self, Edge};
use crate::history::{History, Increases, RATE_WINDOW, Scrape};
use crate::prom;
use crate::proxies::{self, ProxyView, cert_expiry};
use crate::traces::{self, TraceView};
use crate::workloads::{self, MeshConfig, WorkloadView};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinSet;

/// How many recent events the view keeps.
const EVENTS_KEPT: usize = 50;

/// Where the dashboard reads from.
#[derive(Clone)]
pub struct Sources {
    /// The control plane's admin address (15014).
    pub control: SocketAddr,
    /// Opens the connections.
    pub dialer: Arc<dyn Dialer>,
    /// Time between two collections.
    pub interval: Duration,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("control", &self.control)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Everything the page shows, as of the last collection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    /// When it was collected (milliseconds since the Unix epoch; 0 before the first).
    pub updated_unix_ms: u64,
    /// Seconds the rates look back (up to [`RATE_WINDOW`]).
    pub window_seconds: f64,
    /// The control plane.
    pub control: ControlView,
    /// Every connected proxy.
    pub proxies: Vec<ProxyView>,
    /// The service graph.
    pub graph: Graph,
    /// Every workload.
    pub workloads: Vec<WorkloadView>,
    /// Findings on the live configuration.
    pub findings: Vec<FindingView>,
    /// Denials by policy, per proxy and policy (L4) or edge (L7).
    pub denials: Vec<Denial>,
    /// Recent denials, failures and proxy changes, newest first.
    pub events: Vec<Event>,
    /// Recent request traces, newest first (empty when no proxy keeps spans).
    pub traces: Vec<TraceView>,
}

/// The control plane's admin address and whether it answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlView {
    /// Admin address.
    pub addr: String,
    /// Whether `/debug/syncz` answered.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Nodes and edges.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Graph {
    /// Workloads, waypoints, gateways, services and unknown callers.
    pub nodes: Vec<GraphNode>,
    /// Traffic between them.
    pub edges: Vec<Edge>,
}

/// A node of the graph: a workload (its pods together), or a service or `unknown` end of
/// an edge.
#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    /// `<namespace>/<name>`, or `unknown`.
    pub id: String,
    /// Namespace (empty for `unknown`).
    pub namespace: String,
    /// `workload`, `waypoint`, `gateway`, `service` or `unknown`.
    pub kind: &'static str,
    /// In the mesh (every pod HBONE).
    pub enrolled: bool,
    /// The waypoint its traffic goes through.
    pub waypoint: Option<String>,
    /// Its pods (`<namespace>/<pod>`).
    pub pods: Vec<String>,
}

/// Calls denied by policy.
#[derive(Debug, Clone, Serialize)]
pub struct Denial {
    /// The proxy that denied them.
    pub proxy: String,
    /// `L4` (node proxy, per connection) or `L7` (waypoint or gateway, per request).
    pub layer: &'static str,
    /// The deciding policy (`<ns>/<name>`, `none` when no ALLOW policy matched), or `-`.
    pub policy: String,
    /// Why (`deny_matched`, `no_allow_matched`, `RBAC`).
    pub reason: String,
    /// The caller (L7) or `-`.
    pub source: String,
    /// The destination workload's namespace (L4) or the destination (L7).
    pub destination: String,
    /// Denials since the proxy started.
    pub total: f64,
    /// Denials per second over the window.
    pub rate: f64,
}

/// Something that happened between two collections.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When it was noticed (milliseconds since the Unix epoch).
    pub unix_ms: u64,
    /// `denied`, `failed`, `proxy`.
    pub kind: &'static str,
    /// What happened.
    pub text: String,
}

/// Collects and holds the latest [`View`].
#[derive(Debug)]
pub struct Collector {
    sources: Sources,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    histories: HashMap<String, History>,
    mesh: Arc<MeshConfig>,
    /// Last totals of denial and failure counters, to turn increases into events.
    seen: HashMap<String, f64>,
    reachable: HashMap<String, bool>,
    events: VecDeque<Event>,
    view: Arc<View>,
}

impl Collector {
    /// A collector of `sources`; nothing is read before [`Collector::collect`].
    #[must_use]
    pub fn new(sources: Sources) -> Arc<Self> {
        Arc::new(Self {
            sources,
            state: Mutex::default(),
        })
    }

    /// The latest view.
    #[must_use]
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.lock().view)
    }

    /// The latest translated configuration read (for authorization checks).
    #[must_use]
    pub fn mesh(&self) -> Arc<MeshConfig> {
        Arc::clone(&self.lock().mesh)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collects every [`Sources::interval`] until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.sources.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.collect().await;
        }
    }

    /// Reads everything once and updates the view.
    pub async fn collect(&self) {
        let control = self.sources.control;
        let dialer = &self.sources.dialer;
        let mut view = View {
            control: ControlView {
                addr: control.to_string(),
                ..ControlView::default()
            },
            ..View::default()
        };
        match get_json(dialer, control, "/debug/syncz").await {
            Ok(syncz) => {
                view.control.reachable = true;
                view.proxies = proxies::from_syncz(&syncz);
            }
            Err(err) => view.control.error = Some(err),
        }
        let mesh = if view.control.reachable {
            self.read_config(&mut view).await
        } else {
            self.mesh()
        };
        let scrapes = scrape_all(dialer, &view.proxies).await;
        view.traces = traces::collect(dialer, &view.proxies).await;
        let mut state = self.lock();
        state.mesh = Arc::clone(&mesh);
        state.update(&mut view, scrapes, &mesh);
        state.view = Arc::new(view);
    }

    /// The translated config and the findings; the last good config when it cannot be read.
    async fn read_config(&self, view: &mut View) -> Arc<MeshConfig> {
        let (control, dialer) = (self.sources.control, &self.sources.dialer);
        let mut mesh = self.mesh();
        match get_json(dialer, control, "/debug/configz").await {
            Ok(configz) => {
                view.findings.extend(findings::from_lines(
                    &configz["warnings"],
                    "translation",
                    "warning",
                ));
                match MeshConfig::from_configz(&configz) {
                    Ok(config) => mesh = Arc::new(config),
                    Err(err) => view.findings.push(unreadable("/debug/configz", err)),
                }
            }
            Err(err) => view.findings.push(unreadable("/debug/configz", err)),
        }
        let pages: [(&str, FindingsOf); 3] = [
            ("/debug/analyzez", findings::from_analyze),
            ("/debug/config_errors", |v| {
                findings::from_lines(v, "config", "error")
            }),
            ("/debug/gatewayz", findings::from_gatewayz),
        ];
        for (page, read) in pages {
            match get_json(dialer, control, page).await {
                Ok(value) => view.findings.extend(read(&value)),
                Err(err) => view.findings.push(unreadable(page, err)),
            }
        }
        mesh
    }
}

/// Reads the findings of one admin page.
type FindingsOf = fn(&Value) -> Vec<FindingView>;

fn unreadable(page: &str, err: String) -> FindingView {
    FindingView {
        severity: "warning".into(),
        origin: "dashboard",
        code: "unreadable".into(),
        object: page.to_owned(),
        message: err,
    }
}

/// Each proxy's metrics page, read concurrently: proxy id -> samples or error.
async fn scrape_all(
    dialer: &Arc<dyn Dialer>,
    proxies: &[ProxyView],
) -> HashMap<String, Result<Vec<prom::Sample>, String>> {
    let mut tasks = JoinSet::new();
    for proxy in proxies {
        let (id, dialer) = (proxy.id.clone(), Arc::clone(dialer));
        let addr = proxy.metrics_addr;
        // No address: why (an announced address refused) is already in `error`.
        let why = proxy.error.clone();
        tasks.spawn(async move {
            let result = match addr {
                Some(addr) => get(&dialer, addr, "/metrics")
                    .await
                    .map(|t| prom::parse(&t)),
                None => Err(why.unwrap_or_else(|| "no metrics address known".to_owned())),
            };
            (id, result)
        });
    }
    let mut out = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((id, result)) = done {
            out.insert(id, result);
        }
    }
    out
}

impl State {
    fn update(
        &mut self,
        view: &mut View,
        mut scrapes: HashMap<String, Result<Vec<prom::Sample>, String>>,
        mesh: &MeshConfig,
    ) {
        let now = Instant::now();
        view.updated_unix_ms = unix_ms();
        let present: BTreeSet<String> = view.proxies.iter().map(|p| p.id.clone()).collect();
        self.histories.retain(|id, _| present.contains(id));
        for proxy in &mut view.proxies {
            match scrapes.remove(&proxy.id) {
                Some(Ok(samples)) => {
                    proxy.reachable = true;
                    proxy.cert_expiry = cert_expiry::soonest(&samples, unix_secs());
                    let history = self.histories.entry(proxy.id.clone()).or_default();
                    history.push(Scrape { at: now, samples });
                }
                Some(Err(err)) => proxy.error = Some(err),
                None => proxy.error = Some("not scraped".into()),
            }
            self.note_reachability(proxy);
        }
        let increases: Vec<(&ProxyView, Increases<'_>)> = view
            .proxies
            .iter()
            .filter(|p| p.reachable)
            .filter_map(|p| Some((p, self.histories.get(&p.id)?.increases())))
            .collect();
        view.window_seconds = increases
            .iter()
            .filter_map(|(_, i)| i.seconds)
            .fold(0.0, f64::max)
            .min(RATE_WINDOW.as_secs_f64() * 2.0);
        let summaries: HashMap<String, (f64, f64)> = increases
            .iter()
            .map(|(p, i)| (p.id.clone(), proxy_summary(i)))
            .collect();
        let denials: Vec<Denial> = increases.iter().flat_map(|(p, i)| denials(p, i)).collect();
        let only: Vec<Increases<'_>> = increases.into_iter().map(|(_, i)| i).collect();
        let edges = graph::edges(&only);
        for proxy in &mut view.proxies {
            if let Some((open, rps)) = summaries.get(&proxy.id) {
                proxy.open_connections = *open;
                proxy.requests_per_second = *rps;
            }
        }
        view.workloads = workloads::workloads(mesh);
        view.graph = build_graph(&view.workloads, &view.proxies, edges);
        self.note_counters(&view.graph.edges, &denials);
        view.denials = denials;
        view.events = self.events.iter().cloned().collect();
    }

    fn push_event(&mut self, kind: &'static str, text: String) {
        self.events.push_front(Event {
            unix_ms: unix_ms(),
            kind,
            text,
        });
        self.events.truncate(EVENTS_KEPT);
    }

    fn note_reachability(&mut self, proxy: &ProxyView) {
        let before = self.reachable.insert(proxy.id.clone(), proxy.reachable);
        if before != Some(proxy.reachable) {
            let text = match (&proxy.error, before) {
                (Some(err), _) => format!("{} is unreachable: {err}", proxy.id),
                (None, None) => format!("{} connected", proxy.id),
                (None, Some(_)) => format!("{} is reachable again", proxy.id),
            };
            self.push_event("proxy", text);
        }
    }

    /// Events for denial and failure counters that grew since the last collection.
    fn note_counters(&mut self, edges: &[Edge], denials: &[Denial]) {
        let mut grown = Vec::new();
        for edge in edges {
            for (kind, total) in [("denied", edge.denied), ("failed", edge.failed)] {
                let key = format!("{kind} {} {}", edge.protocol, edge.id);
                grown.push((
                    key,
                    total,
                    kind,
                    format!("{} {} ({})", edge.id, kind, edge.protocol),
                ));
            }
        }
        for denial in denials.iter().filter(|d| d.layer == "L4") {
            let key = format!(
                "policy {} {} {} {}",
                denial.proxy, denial.policy, denial.reason, denial.destination
            );
            let text = format!(
                "{} denied a connection to namespace {}: policy {} ({})",
                denial.proxy, denial.destination, denial.policy, denial.reason
            );
            grown.push((key, denial.total, "denied", text));
        }
        for (key, total, kind, text) in grown {
            let before = self.seen.insert(key, total).unwrap_or(0.0);
            if total > before {
                let count = total - before;
                self.push_event(kind, format!("{text}: {count}"));
            }
        }
    }
}

/// Open connections (opened minus closed, by the proxy's own reporter) and requests per
/// second.
fn proxy_summary(increases: &Increases<'_>) -> (f64, f64) {
    let (mut open, mut requests) = (0.0, 0.0);
    for change in &increases.series {
        match change.sample.name.as_str() {
            "istio_tcp_connections_opened_total" => open += change.sample.value,
            "istio_tcp_connections_closed_total" => open -= change.sample.value,
            "istio_requests_total" => requests += change.increase,
            _ => {}
        }
    }
    (open.max(0.0), increases.per_second(requests))
}

fn denials(proxy: &ProxyView, increases: &Increases<'_>) -> Vec<Denial> {
    // (policy, reason, source, destination, layer) -> (total, increase)
    type Key = (String, String, String, String, &'static str);
    let mut out: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
    for change in &increases.series {
        let sample = change.sample;
        let key = match sample.name.as_str() {
            "weft_policy_denials_total" => (
                sample.label("policy").to_owned(),
                sample.label("reason").to_owned(),
                "-".to_owned(),
                sample.label("destination_workload_namespace").to_owned(),
                "L4",
            ),
            "istio_requests_total" if sample.label("response_flags") == "RBAC" => (
                "-".to_owned(),
                "RBAC".to_owned(),
                graph::endpoint(sample, "source").id,
                graph::endpoint(sample, "destination").id,
                "L7",
            ),
            _ => continue,
        };
        let entry = out.entry(key).or_default();
        entry.0 += sample.value;
        entry.1 += change.increase;
    }
    out.into_iter()
        .map(
            |((policy, reason, source, destination, layer), (total, increase))| Denial {
                proxy: proxy.id.clone(),
                layer,
                policy,
                reason,
                source,
                destination,
                total,
                rate: increases.per_second(increase),
            },
        )
        .collect()
}

/// Graph nodes: every workload group, plus the ends of edges that are no workload.
fn build_graph(
    workloads: &[WorkloadView],
    proxies: &[ProxyView],
    edges: Vec<(Edge, graph::Endpoint, graph::Endpoint)>,
) -> Graph {
    let waypoints: BTreeSet<&str> = workloads
        .iter()
        .filter_map(|w| w.waypoint.as_deref())
        .collect();
    // A gateway's pods: its workload is named after the Gateway (`<gateway>` or
    // `<gateway>-<class>`).
    let gateways: Vec<&str> = proxies
        .iter()
        .filter(|p| p.kind == "gateway")
        .map(|p| p.name.as_str())
        .collect();
    let is_gateway = |group: &str| {
        gateways.iter().any(|g| {
            group == *g
                || group
                    .strip_prefix(g)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
    };
    let mut nodes: BTreeMap<String, GraphNode> = BTreeMap::new();
    for w in workloads {
        let node = nodes.entry(w.group.clone()).or_insert_with(|| GraphNode {
            id: w.group.clone(),
            namespace: w.namespace.clone(),
            kind: if waypoints.contains(w.group.as_str()) {
                "waypoint"
            } else if is_gateway(&w.group) {
                "gateway"
            } else {
                "workload"
            },
            enrolled: true,
            waypoint: w.waypoint.clone(),
            pods: Vec::new(),
        });
        node.enrolled &= w.enrolled;
        node.pods.push(w.id.clone());
    }
    let mut out_edges = Vec::new();
    for (edge, source, destination) in edges {
        for end in [source, destination] {
            nodes.entry(end.id.clone()).or_insert_with(|| GraphNode {
                namespace: end
                    .id
                    .split_once('/')
                    .map(|(ns, _)| ns.to_owned())
                    .unwrap_or_default(),
                id: end.id,
                kind: end.kind,
                enrolled: false,
                waypoint: None,
                pods: Vec::new(),
            });
        }
        out_edges.push(edge);
    }
    Graph {
        nodes: nodes.into_values().collect(),
        edges: out_edges,
    }
}

fn unix_secs() -> i64 {
    i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
