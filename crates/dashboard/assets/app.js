// weft dashboard: polls /api/view and renders the graph, proxies, workloads, denials,
// events and findings. Plain DOM and SVG, no dependencies, nothing fetched from elsewhere.
"use strict";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
let view = null;
let selected = null; // {kind: "edge"|"node", id}
let authzAnswers = {}; // "caller|workload|port" -> answer

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  rate: (v) => (v >= 10 ? v.toFixed(0) : v >= 0.1 ? v.toFixed(2) : v > 0 ? v.toFixed(3) : "0"),
  pct: (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(v >= 0.999 || v === 0 ? 0 : 1) + "%"),
  ms: (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) + " ms" : v.toFixed(0) + " ms"),
  bytes: (v) => (v >= 1e6 ? (v / 1e6).toFixed(1) + " MB/s" : v >= 1e3 ? (v / 1e3).toFixed(1) + " kB/s" : v.toFixed(0) + " B/s"),
  time: (ms) => new Date(ms).toLocaleTimeString(),
  duration: (s) => (s < 120 ? `${Math.max(0, Math.round(s))}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`),
};

async function refresh() {
  try {
    const response = await fetch("/api/view", { cache: "no-store" });
    if (!response.ok) throw new Error(`dashboard answered ${response.status}`);
    view = await response.json();
    render();
  } catch (err) {
    const status = document.getElementById("control-status");
    status.textContent = `dashboard unreachable: ${err.message}`;
    status.className = "pill bad";
  }
}

function render() {
  const status = document.getElementById("control-status");
  if (view.control.reachable) {
    status.textContent = `control plane ${view.control.addr}`;
    status.className = "pill ok";
  } else {
    status.textContent = `control plane ${view.control.addr} unreachable: ${view.control.error || "not read yet"}`;
    status.className = "pill bad";
  }
  document.getElementById("updated").textContent = view.updated_unix_ms ? `updated ${fmt.time(view.updated_unix_ms)}` : "";
  document.getElementById("window").textContent = view.window_seconds ? `(rates over the last ${Math.round(view.window_seconds)} s)` : "(rates after the second scrape)";
  renderGraph();
  renderDetail();
  renderProxies();
  renderWorkloads();
  renderDenials();
  renderEvents();
  renderFindings();
  renderTraces();
}

// --- graph ---------------------------------------------------------------------------

function layout(nodes) {
  const columns = new Map();
  for (const node of nodes) {
    const column = node.namespace || "(outside the mesh)";
    if (!columns.has(column)) columns.set(column, []);
    columns.get(column).push(node);
  }
  const names = [...columns.keys()].sort((a, b) => (a.startsWith("(") ? 1 : b.startsWith("(") ? -1 : a.localeCompare(b)));
  const colWidth = 270, rowHeight = 96, top = 50;
  const positions = new Map();
  const boxes = [];
  names.forEach((name, i) => {
    const members = columns.get(name);
    const x = 30 + i * colWidth;
    boxes.push({ name, x, y: 10, w: colWidth - 40, h: top + members.length * rowHeight });
    members.forEach((node, j) => positions.set(node.id, { x: x + (colWidth - 40) / 2, y: top + 30 + j * rowHeight }));
  });
  const height = Math.max(360, ...boxes.map((b) => b.h + 30));
  return { positions, boxes, width: Math.max(600, 30 + names.length * colWidth), height };
}

function edgeClass(edge) {
  if (edge.denied > 0 || edge.failed > 0) return "bad";
  return edge.mtls ? "mtls" : "plain";
}

function edgeLabel(edge) {
  const unit = edge.protocol === "http" ? "rps" : "cps";
  const parts = [`${fmt.rate(edge.rate)} ${unit}`];
  if (edge.success_rate !== null) parts.push(fmt.pct(edge.success_rate));
  if (edge.p99_ms !== null) parts.push(`p99 ${fmt.ms(edge.p99_ms)}`);
  if (edge.denied > 0) parts.push(`${edge.denied} denied`);
  else if (edge.failed > 0) parts.push(`${edge.failed} failed`);
  return parts.join(" · ");
}

// Drawn in three layers: edge paths, then nodes, then edge labels on top (each on a
// white box, placed where it covers no node and no other label).
function renderGraph() {
  const svg = document.getElementById("graph");
  const { nodes, edges } = view.graph;
  const { positions, boxes, width, height } = layout(nodes);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.minWidth = Math.min(width, 1200) + "px";
  // A small mesh is not blown up on a large screen: text stays at most 1.6 times its size.
  svg.style.maxWidth = Math.round(width * 1.6) + "px";
  svg.replaceChildren();
  svg.append(el("svg:defs", {}, ["mtls", "plain", "bad"].map((kind) =>
    el("svg:marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: kind === "mtls" ? "#1f8a4c" : kind === "plain" ? "#c07a00" : "#c62828" })))));
  for (const box of boxes) {
    svg.append(el("svg:rect", { class: "ns-box", x: box.x, y: box.y, width: box.w, height: box.h, rx: 8 }));
    svg.append(el("svg:text", { class: "ns-label", x: box.x + 10, y: box.y + 18 }, box.name));
  }
  const curves = edgeCurves(edges, positions);
  const edgeLayer = el("svg:g", { class: "edges" }), nodeLayer = el("svg:g", { class: "nodes" });
  const labelLayer = el("svg:g", { class: "edge-labels" });
  svg.append(edgeLayer, nodeLayer, labelLayer);
  for (const { edge, curve } of curves) edgeLayer.append(drawEdge(edge, curve));
  const taken = [];
  for (const node of nodes) {
    const at = positions.get(node.id);
    const kind = node.kind === "workload" && !node.enrolled ? "outside" : node.kind;
    const classes = ["node", kind, selected && selected.kind === "node" && selected.id === node.id ? "selected" : ""].join(" ");
    const label = node.id.includes("/") ? node.id.split("/").slice(1).join("/") : node.id;
    const text = el("svg:text", { x: at.x, y: at.y + 32, "text-anchor": "middle" }, label);
    nodeLayer.append(el("svg:g", { class: classes, "data-node": node.id, "data-kind": node.kind, "data-enrolled": node.enrolled,
        onclick: () => select("node", node.id) },
      el("svg:circle", { cx: at.x, cy: at.y, r: 16 }), text));
    const w = textWidth(text, label);
    taken.push({ x: at.x - 18, y: at.y - 18, w: 36, h: 36 }, { x: at.x - w / 2, y: at.y + 20, w, h: 16 });
  }
  for (const { edge, curve } of curves) drawLabel(edge, curve, taken, labelLayer);
}

// One quadratic curve per edge. Edges between the same two nodes (both directions, and
// tcp beside http) are spread symmetrically around one middle line, measured in one frame
// for the pair so that A->B and B->A never coincide; the middle line is straight unless
// it would cross another node, then it bows out (see BOWS).
function edgeCurves(edges, positions) {
  const pairs = new Map();
  for (const edge of edges) {
    if (!positions.get(edge.source) || !positions.get(edge.destination)) continue;
    const pair = [edge.source, edge.destination].sort().join("|");
    if (!pairs.has(pair)) pairs.set(pair, []);
    pairs.get(pair).push(edge);
  }
  const curves = [];
  for (const [pair, group] of pairs) {
    const [first, second] = pair.split("|").map((id) => positions.get(id));
    const dx = second.x - first.x, dy = second.y - first.y;
    const length = Math.hypot(dx, dy) || 1;
    const normal = { x: -dy / length, y: dx / length };
    const others = [...positions].filter(([id]) => !pair.split("|").includes(id)).map(([, at]) => at);
    const bow = BOWS.find((b) => clearOf(others, curveBetween(first, second, normal, b))) ?? BOWS[BOWS.length - 1];
    group.sort((a, b) => edgeKey(a).localeCompare(edgeKey(b)));
    group.forEach((edge, i) => {
      const offset = bow + (i - (group.length - 1) / 2) * 48;
      curves.push({ edge, curve: curveBetween(positions.get(edge.source), positions.get(edge.destination), normal, offset) });
    });
  }
  return curves;
}

// Bends tried, in order, for the middle of a pair's edges: straight, then further and
// further to either side, until the curve passes no other node.
const BOWS = [0, 50, -50, 90, -90, 130, -130];

function clearOf(nodes, curve) {
  for (let t = 0.1; t < 0.95; t += 0.05) {
    const at = pointAt(curve, t);
    if (nodes.some((n) => Math.hypot(n.x - at.x, n.y - at.y) < 30)) return false;
  }
  return true;
}

function curveBetween(from, to, normal, offset) {
  const r = 18;
  const control = { x: (from.x + to.x) / 2 + normal.x * offset, y: (from.y + to.y) / 2 + normal.y * offset };
  const toward = (p, q) => {
    const d = Math.hypot(q.x - p.x, q.y - p.y) || 1;
    return { x: p.x + ((q.x - p.x) / d) * r, y: p.y + ((q.y - p.y) / d) * r };
  };
  return { start: toward(from, control), control, end: toward(to, control) };
}

function pointAt(curve, t) {
  const a = (1 - t) * (1 - t), b = 2 * (1 - t) * t, c = t * t;
  return { x: a * curve.start.x + b * curve.control.x + c * curve.end.x, y: a * curve.start.y + b * curve.control.y + c * curve.end.y };
}

function drawEdge(edge, curve) {
  const cls = edgeClass(edge);
  const isSelected = selected && selected.kind === "edge" && selected.id === edgeKey(edge);
  const { start, control, end } = curve;
  return el("svg:g", {
      class: `edge ${cls} ${isSelected ? "selected" : ""}`,
      "data-edge": edge.id, "data-protocol": edge.protocol, "data-rate": edge.rate.toFixed(4),
      "data-total": edge.total, "data-denied": edge.denied, "data-failed": edge.failed,
      "data-mtls": edge.mtls, "data-success": edge.success_rate === null ? "" : edge.success_rate.toFixed(4),
      onclick: () => select("edge", edgeKey(edge)) },
    el("svg:title", {}, `${edge.id} (${edge.protocol})`),
    el("svg:path", { d: `M${start.x},${start.y} Q${control.x},${control.y} ${end.x},${end.y}`, "marker-end": `url(#arrow-${cls})` }));
}

// Width of an SVG text in the drawing's units (an estimate while the page is hidden).
function textWidth(node, text) {
  const measured = node.isConnected ? node.getComputedTextLength() : 0;
  return measured > 0 ? measured : text.length * 6.2;
}

// Where a label may go: points along its edge (the middle first), then, as a last
// resort, just above or below them.
const LABEL_AT = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85];
const LABEL_NUDGE = [0, -17, 17];

// The edge's label on a box, at the first point along the edge where the box overlaps
// nothing in `taken` (else where it overlaps least); the box is then taken too.
function drawLabel(edge, curve, taken, layer) {
  const cls = edgeClass(edge);
  const content = edgeLabel(edge);
  const text = el("svg:text", { x: 0, y: 0, "text-anchor": "middle", "dominant-baseline": "central" }, content);
  const group = el("svg:g", { class: `edge-label ${cls}`, "data-edge-label": edge.id, "data-protocol": edge.protocol,
    onclick: () => select("edge", edgeKey(edge)) }, el("svg:title", {}, `${edge.id} (${edge.protocol})`), text);
  layer.append(group); // measured in place
  const w = textWidth(text, content) + 8, h = 16;
  let best = null;
  for (const nudge of LABEL_NUDGE) {
    for (const t of LABEL_AT) {
      const on = pointAt(curve, t), at = { x: on.x, y: on.y + nudge };
      const box = { x: at.x - w / 2, y: at.y - h / 2, w, h };
      const overlap = taken.reduce((sum, other) => sum + overlapArea(box, other), 0);
      if (!best || overlap < best.overlap) best = { box, at, overlap };
      if (overlap === 0) break;
    }
    if (best.overlap === 0) break;
  }
  taken.push(best.box);
  group.setAttribute("transform", `translate(${best.at.x.toFixed(1)},${best.at.y.toFixed(1)})`);
  group.insertBefore(el("svg:rect", { x: -w / 2, y: -h / 2, width: w, height: h, rx: 3 }), text);
}

function overlapArea(a, b) {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

const edgeKey = (edge) => `${edge.protocol} ${edge.id}`;

function select(kind, id) {
  selected = { kind, id };
  render();
}

// --- detail --------------------------------------------------------------------------

function dl(rows) {
  return el("dl", {}, rows.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value)]));
}

function renderDetail() {
  const body = document.getElementById("detail-body");
  if (!selected) return;
  body.className = "";
  if (selected.kind === "edge") {
    const edge = view.graph.edges.find((e) => edgeKey(e) === selected.id);
    if (!edge) return body.replaceChildren("This edge has no traffic in the latest scrape.");
    const unit = edge.protocol === "http" ? "requests" : "connections";
    body.replaceChildren(el("h3", {}, edge.id), dl([
      ["protocol", edge.protocol], ["reported by", edge.reporter],
      [`${unit}/s`, fmt.rate(edge.rate)], [`${unit} in window`, edge.count], [`${unit} total`, edge.total],
      ["success", fmt.pct(edge.success_rate)], ["p50", fmt.ms(edge.p50_ms)], ["p99", fmt.ms(edge.p99_ms)],
      ["bytes", fmt.bytes(edge.bytes_per_second)], ["mTLS", edge.mtls ? "yes (mutual_tls)" : "no"],
      ["denied", edge.denied], ["failed", edge.failed],
    ]));
  } else {
    const node = view.graph.nodes.find((n) => n.id === selected.id);
    if (!node) return body.replaceChildren("Gone from the mesh.");
    const pods = view.workloads.filter((w) => w.group === node.id);
    const inbound = view.graph.edges.filter((e) => e.destination === node.id);
    const outbound = view.graph.edges.filter((e) => e.source === node.id);
    body.replaceChildren(el("h3", {}, node.id), dl([
      ["kind", node.kind], ["enrolled", node.enrolled ? "yes" : "no"], ["waypoint", node.waypoint || "–"],
      ["identity", pods.map((p) => p.identity).filter((v, i, a) => a.indexOf(v) === i).join(", ") || "–"],
      ["pods", pods.map((p) => `${p.id} on ${p.node}`).join(", ") || "–"],
      ["policies", [...new Set(pods.flatMap((p) => p.policies))].join(", ") || "none"],
      ["calls in", inbound.map((e) => `${e.source} ${fmt.rate(e.rate)}/s`).join(", ") || "–"],
      ["calls out", outbound.map((e) => `${e.destination} ${fmt.rate(e.rate)}/s`).join(", ") || "–"],
    ]));
  }
}

// --- tables --------------------------------------------------------------------------

function table(id, headers, rows) {
  const node = document.getElementById(id);
  node.replaceChildren(el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function renderProxies() {
  table("proxies", ["proxy", "kind", "sync", "versions (acked)", "metrics", "open conns", "rps", "certificate expiry", "connected"],
    view.proxies.map((p) => el("tr", { "data-proxy": p.id, "data-reachable": p.reachable },
      el("td", {}, p.id),
      el("td", {}, p.kind),
      el("td", { class: p.in_sync ? "ok" : "bad" }, p.in_sync ? "SYNCED" : p.types.filter((t) => t.state !== "SYNCED").map((t) => `${t.resource}: ${t.state}`).join("; ")),
      el("td", {}, p.types.map((t) => `${t.resource} ${t.acked || "–"}`).join(", ")),
      el("td", { class: p.reachable ? "ok" : "bad" }, p.reachable ? `${p.metrics_addr}` : `unreachable: ${p.error || ""}`),
      el("td", {}, p.reachable ? p.open_connections : "–"),
      el("td", {}, p.reachable ? fmt.rate(p.requests_per_second) : "–"),
      certExpiryCell(p.cert_expiry),
      el("td", {}, p.connected_at_unix ? fmt.time(p.connected_at_unix * 1000) : "–"))));
}

// The certificate that expires first: "in 23h", "EXPIRED", or "unknown" when the proxy was
// not scraped or reports none; highlighted with under a tenth of its lifetime left.
function certExpiryCell(cert) {
  if (!cert) return el("td", { class: "muted", "data-cert-expiry": "unknown" }, "unknown");
  const text = cert.state === "expired" ? "EXPIRED" : `in ${fmt.duration(cert.seconds_left)}`;
  const cls = cert.state === "expired" ? "bad flag" : cert.state === "expiring" ? "warn flag" : "";
  const title = `${cert.identity}: expires ${new Date(cert.expires_unix * 1000).toISOString()}` +
    (cert.certificates > 1 ? ` (soonest of ${cert.certificates} certificates)` : "");
  return el("td", { class: cls, title, "data-cert-expiry": cert.state, "data-cert-expires": cert.expires_unix }, text);
}

function callerOptions() {
  const select = document.getElementById("authz-from");
  const identities = [...new Set(view.workloads.filter((w) => w.enrolled).map((w) => w.identity))].sort();
  const wanted = ["plaintext", ...identities];
  const current = [...select.options].map((o) => o.value);
  if (wanted.join() !== current.join()) {
    const keep = select.value;
    select.replaceChildren(...wanted.map((id) => el("option", { value: id }, id === "plaintext" ? "plaintext (no identity)" : id)));
    select.value = wanted.includes(keep) ? keep : identities[0] || "plaintext";
  }
  return select.value;
}

function renderWorkloads() {
  const caller = callerOptions();
  const request = authzRequest();
  table("workloads", ["workload", "identity", "node", "enrolled", "waypoint", "policies", `authz from caller`],
    view.workloads.map((w) => {
      const port = w.ports[0];
      const key = `${caller}|${w.id}|${port}|${new URLSearchParams(request)}`;
      const answer = authzAnswers[key];
      if (port && answer === undefined) {
        authzAnswers[key] = null;
        checkAuthz(caller, w.id, port, request).then((a) => { authzAnswers[key] = a; renderWorkloads(); });
      }
      return el("tr", { "data-workload": w.id },
        el("td", {}, w.id), el("td", {}, w.identity), el("td", {}, w.node || "–"),
        el("td", { class: w.enrolled ? "ok" : "warn" }, w.enrolled ? "yes" : "no"),
        el("td", {}, w.waypoint || "–"), el("td", {}, w.policies.join(", ") || "none"),
        authzCell(port, answer));
    }));
}

// The answer, and behind a waypoint its L7 decision and the destination's L4 one.
function authzCell(port, answer) {
  const verdict = !port ? "no service port" : !answer ? "…" : `port ${port}: ${answer.answer}`;
  const w = answer && answer.waypoint;
  const steps = w ? [el("div", { class: "muted", "data-authz-waypoint": w.allowed ? "ALLOW" : "DENY" }, `waypoint ${w.waypoint}: ${w.decision}`),
    el("div", { class: "muted" }, `destination (peer ${w.identity}): ${w.destination}`)] : [];
  return el("td", { class: answer ? (answer.allowed ? "ok" : "bad") : "muted", "data-authz": answer ? (answer.allowed ? "ALLOW" : "DENY") : "" }, verdict, steps);
}

// The request of the form, decided by a waypoint when one serves the workload.
function authzRequest() {
  const value = (id) => document.getElementById(id).value.trim();
  return { method: value("authz-method") || "GET", path: value("authz-path") || "/", header: value("authz-header") };
}

async function checkAuthz(from, to, port, request) {
  const query = new URLSearchParams({ to, port, from, ...request });
  const response = await fetch(`/api/authz?${query}`);
  if (!response.ok) return { allowed: false, answer: `cannot check: ${(await response.text()).trim()}` };
  return response.json();
}

function renderDenials() {
  table("denials", ["proxy", "layer", "policy", "reason", "from", "to", "total", "per s"],
    view.denials.map((d) => el("tr", { "data-denial": `${d.layer} ${d.policy} ${d.source}->${d.destination}`, "data-total": d.total },
      el("td", {}, d.proxy), el("td", {}, d.layer), el("td", {}, d.policy), el("td", {}, d.reason),
      el("td", {}, d.source), el("td", {}, d.destination), el("td", { class: "bad" }, d.total), el("td", {}, fmt.rate(d.rate)))));
}

function renderEvents() {
  const list = document.getElementById("events");
  list.replaceChildren(...(view.events.length ? view.events.map((e) =>
    el("li", { "data-event": e.kind, class: e.kind === "proxy" ? "" : "bad" }, `${fmt.time(e.unix_ms)} ${e.text}`)) : [el("li", { class: "muted" }, "nothing yet")]));
}

function renderFindings() {
  table("findings", ["severity", "from", "code", "object", "message"],
    view.findings.map((f) => el("tr", { "data-finding": f.code },
      el("td", { class: f.severity === "error" ? "bad" : f.severity === "warning" ? "warn" : "" }, f.severity),
      el("td", {}, f.origin), el("td", {}, f.code), el("td", {}, f.object), el("td", {}, f.message))));
}

for (const id of ["authz-from", "authz-method", "authz-path", "authz-header"]) {
  document.getElementById(id).addEventListener("change", () => view && renderWorkloads());
}
refresh();
setInterval(refresh, REFRESH_MS);
