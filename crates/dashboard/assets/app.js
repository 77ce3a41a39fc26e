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
  const colWidth = 230, rowHeight = 86, top = 50;
  const positions = new Map();
  const boxes = [];
  names.forEach((name, i) => {
    const members = columns.get(name);
    const x = 30 + i * colWidth;
    boxes.push({ name, x, y: 10, w: colWidth - 30, h: top + members.length * rowHeight });
    members.forEach((node, j) => positions.set(node.id, { x: x + (colWidth - 30) / 2, y: top + 30 + j * rowHeight }));
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

function renderGraph() {
  const svg = document.getElementById("graph");
  const { nodes, edges } = view.graph;
  const { positions, boxes, width, height } = layout(nodes);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.minWidth = Math.min(width, 1200) + "px";
  svg.replaceChildren();
  svg.append(el("svg:defs", {}, ["mtls", "plain", "bad"].map((kind) =>
    el("svg:marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: kind === "mtls" ? "#1f8a4c" : kind === "plain" ? "#c07a00" : "#c62828" })))));
  for (const box of boxes) {
    svg.append(el("svg:rect", { class: "ns-box", x: box.x, y: box.y, width: box.w, height: box.h, rx: 8 }));
    svg.append(el("svg:text", { class: "ns-label", x: box.x + 10, y: box.y + 18 }, box.name));
  }
  const pairs = new Map();
  for (const edge of edges) {
    const from = positions.get(edge.source), to = positions.get(edge.destination);
    if (!from || !to) continue;
    const pair = [edge.source, edge.destination].sort().join("|");
    const index = pairs.get(pair) || 0;
    pairs.set(pair, index + 1);
    svg.append(drawEdge(edge, from, to, index));
  }
  for (const node of nodes) {
    const at = positions.get(node.id);
    const kind = node.kind === "workload" && !node.enrolled ? "outside" : node.kind;
    const classes = ["node", kind, selected && selected.kind === "node" && selected.id === node.id ? "selected" : ""].join(" ");
    const label = node.id.includes("/") ? node.id.split("/").slice(1).join("/") : node.id;
    svg.append(el("svg:g", { class: classes, "data-node": node.id, "data-kind": node.kind, "data-enrolled": node.enrolled,
        onclick: () => select("node", node.id) },
      el("svg:circle", { cx: at.x, cy: at.y, r: 16 }),
      el("svg:text", { x: at.x, y: at.y + 32, "text-anchor": "middle" }, label)));
  }
}

function drawEdge(edge, from, to, index) {
  const r = 18;
  const dx = to.x - from.x, dy = to.y - from.y;
  const length = Math.hypot(dx, dy) || 1;
  const bend = (index % 2 ? -1 : 1) * (25 + 20 * Math.floor(index / 2)) + (from.x === to.x ? 40 : 0);
  const nx = -dy / length, ny = dx / length;
  const start = { x: from.x + (dx / length) * r, y: from.y + (dy / length) * r };
  const end = { x: to.x - (dx / length) * r, y: to.y - (dy / length) * r };
  const control = { x: (from.x + to.x) / 2 + nx * bend, y: (from.y + to.y) / 2 + ny * bend };
  const cls = edgeClass(edge);
  const isSelected = selected && selected.kind === "edge" && selected.id === edgeKey(edge);
  const mid = { x: 0.25 * start.x + 0.5 * control.x + 0.25 * end.x, y: 0.25 * start.y + 0.5 * control.y + 0.25 * end.y };
  return el("svg:g", {
      class: `edge ${cls} ${isSelected ? "selected" : ""}`,
      "data-edge": edge.id, "data-protocol": edge.protocol, "data-rate": edge.rate.toFixed(4),
      "data-total": edge.total, "data-denied": edge.denied, "data-failed": edge.failed,
      "data-mtls": edge.mtls, "data-success": edge.success_rate === null ? "" : edge.success_rate.toFixed(4),
      onclick: () => select("edge", edgeKey(edge)) },
    el("svg:title", {}, `${edge.id} (${edge.protocol})`),
    el("svg:path", { d: `M${start.x},${start.y} Q${control.x},${control.y} ${end.x},${end.y}`, "marker-end": `url(#arrow-${cls})` }),
    el("svg:text", { x: mid.x, y: mid.y - 4, "text-anchor": "middle" }, edgeLabel(edge)));
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
  table("proxies", ["proxy", "kind", "sync", "versions (acked)", "metrics", "open conns", "rps", "connected"],
    view.proxies.map((p) => el("tr", { "data-proxy": p.id, "data-reachable": p.reachable },
      el("td", {}, p.id),
      el("td", {}, p.kind),
      el("td", { class: p.in_sync ? "ok" : "bad" }, p.in_sync ? "SYNCED" : p.types.filter((t) => t.state !== "SYNCED").map((t) => `${t.resource}: ${t.state}`).join("; ")),
      el("td", {}, p.types.map((t) => `${t.resource} ${t.acked || "–"}`).join(", ")),
      el("td", { class: p.reachable ? "ok" : "bad" }, p.reachable ? `${p.metrics_addr}` : `unreachable: ${p.error || ""}`),
      el("td", {}, p.reachable ? p.open_connections : "–"),
      el("td", {}, p.reachable ? fmt.rate(p.requests_per_second) : "–"),
      el("td", {}, p.connected_at_unix ? fmt.time(p.connected_at_unix * 1000) : "–"))));
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
  table("workloads", ["workload", "identity", "node", "enrolled", "waypoint", "policies", `authz from caller`],
    view.workloads.map((w) => {
      const port = w.ports[0];
      const key = `${caller}|${w.id}|${port}`;
      const answer = authzAnswers[key];
      if (port && answer === undefined) {
        authzAnswers[key] = null;
        checkAuthz(caller, w.id, port).then((a) => { authzAnswers[key] = a; renderWorkloads(); });
      }
      const verdict = !port ? "no service port" : !answer ? "…" : `port ${port}: ${answer.answer}`;
      return el("tr", { "data-workload": w.id },
        el("td", {}, w.id), el("td", {}, w.identity), el("td", {}, w.node || "–"),
        el("td", { class: w.enrolled ? "ok" : "warn" }, w.enrolled ? "yes" : "no"),
        el("td", {}, w.waypoint || "–"), el("td", {}, w.policies.join(", ") || "none"),
        el("td", { class: answer ? (answer.allowed ? "ok" : "bad") : "muted", "data-authz": answer ? (answer.allowed ? "ALLOW" : "DENY") : "" }, verdict));
    }));
}

async function checkAuthz(from, to, port) {
  const query = new URLSearchParams({ to, port, from });
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

document.getElementById("authz-from").addEventListener("change", () => view && renderWorkloads());
refresh();
setInterval(refresh, REFRESH_MS);
