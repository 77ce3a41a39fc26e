// weft dashboard: the Traces panel. Recent request traces (the spans waypoints and gateways
// keep, joined by trace id) from /api/view; clicking a trace lists its spans with a bar per
// span on the trace's time line. app.js calls renderTraces() after each refresh.
"use strict";

let selectedTrace = null;

function renderTraces() {
  const traces = view.traces || [];
  table("traces", ["time", "trace id", "from", "to", "request", "status", "duration", "spans"],
    traces.map((t) => el("tr", {
      "data-trace": t.trace_id, "data-status": t.status, "data-spans": t.spans.length,
      class: t.trace_id === selectedTrace ? "clickable selected" : "clickable",
      onclick: () => { selectedTrace = t.trace_id; renderTraces(); },
    },
    el("td", {}, fmt.time(t.start_unix_ms)), el("td", {}, el("code", {}, t.trace_id)),
    el("td", {}, t.source), el("td", {}, t.destination), el("td", {}, `${t.method} ${t.path}`),
    el("td", { class: statusClass(t.status) }, t.status), el("td", {}, fmt.ms(t.duration_ms)),
    el("td", {}, t.spans.map((s) => s.proxy).join(" → ")))));
  renderTraceSpans(traces.find((t) => t.trace_id === selectedTrace));
}

function statusClass(status) {
  return status >= 500 || status === 403 ? "bad" : status >= 400 ? "warn" : "ok";
}

function renderTraceSpans(trace) {
  const box = document.getElementById("trace-spans");
  if (!trace) {
    const hint = (view.traces || []).length ? "Click a trace to see its spans."
      : "No traces: waypoints and gateways keep spans with --recent-spans N (weft up --trace-sampling does).";
    box.replaceChildren(el("p", { class: "muted" }, hint));
    return;
  }
  const start = trace.start_unix_ms;
  const end = Math.max(...trace.spans.map((s) => s.start_unix_ms + s.duration_ms), start + 1);
  const bar = (s) => {
    const left = ((s.start_unix_ms - start) / (end - start)) * 100;
    const width = Math.max((s.duration_ms / (end - start)) * 100, 0.5);
    return el("div", { class: "span-track" }, el("div", { class: `span-bar ${statusClass(s.status)}`, style: `margin-left:${left}%;width:${width}%` }));
  };
  box.replaceChildren(el("h3", {}, `trace ${trace.trace_id}`),
    el("table", { id: "trace-span-table" },
      el("thead", {}, el("tr", {}, ["proxy", "span (parent)", "route", "upstream", "status", "start", "duration", "upstream time", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, trace.spans.map((s) => el("tr", { "data-span": s.span_id, "data-proxy": s.proxy },
        el("td", {}, s.proxy), el("td", {}, el("code", {}, s.span_id), s.parent_span_id ? ` (${s.parent_span_id})` : ""),
        el("td", {}, s.route || "–"), el("td", {}, [s.upstream_service, s.upstream_host].filter((v) => v && v !== "-").join(" at ") || "–"),
        el("td", { class: statusClass(s.status) }, s.flags && s.flags !== "-" ? `${s.status} ${s.flags}` : s.status),
        el("td", {}, `+${s.start_unix_ms - start} ms`), el("td", {}, fmt.ms(s.duration_ms)),
        el("td", {}, s.upstream_ms === null || s.upstream_ms === undefined ? "–" : fmt.ms(s.upstream_ms)),
        el("td", { class: "span-cell" }, bar(s)))))));
}
