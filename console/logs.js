// The Logs and Usage tabs: the request log store read through the admin API (a console session
// may GET it). Everything from the gateway goes into the page as text.

import {$, el, api} from "./lib.js";

let liveTimer = null;
let cursor = null;

function filters() {
  const q = new URLSearchParams();
  for (const f of ["key", "model", "provider", "status", "error", "request_id"]) {
    const v = $(`#logs-${f}`).value.trim();
    if (v) q.set(f, v);
  }
  const since = Number($("#logs-since").value);
  if (since) q.set("since", String(Date.now() - since * 1000));
  q.set("limit", "50");
  return q;
}

const num = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const cost = (v) => (v === null || v === undefined ? "unpriced" : `$${Number(v).toFixed(6)}`);

let logLoads = 0;

async function loadLogs(more = false) {
  const mine = ++logLoads;
  const q = filters();
  if (more && cursor !== null) q.set("before", cursor);
  const r = await api("GET", `/admin/logs?${q}`);
  // A live-tail load that started before the filters changed draws nothing.
  if (mine !== logLoads) return;
  const body = $("#logs-rows");
  if (!r.ok) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 9, class: "error"}, r.data?.error?.message || "No logs.")));
    return;
  }
  cursor = r.data.next;
  // The same filters, every matching row (up to the page limit), as CSV.
  const all = filters();
  all.set("limit", "1000");
  all.set("format", "csv");
  $("#logs-csv").href = `/admin/logs?${all}`;
  $("#logs-more").hidden = cursor === null;
  const rows = r.data.data.map((row) => el("tr", {class: row.status >= 400 ? "failed" : "", "data-request-id": row.request_id,
      onclick: () => showDetail(row)},
    el("td", {}, new Date(row.time_ms).toLocaleTimeString()), el("td", {}, row.key ?? "–"), el("td", {}, row.model ?? "–"),
    el("td", {}, row.provider ?? "–"), el("td", {class: "status"}, row.status), el("td", {}, `${num(row.duration_ms)} ms`),
    el("td", {}, `${num(row.prompt_tokens)} + ${num(row.completion_tokens)}`), el("td", {}, cost(row.cost)),
    el("td", {}, row.error ?? "")));
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
}

// A request's attempts on a timeline: each bar as long as the attempt took, of the whole.
function timeline(row) {
  const total = Math.max(row.duration_ms, 1e-3);
  return row.attempts.map((a, i) => {
    const bar = el("span", {class: "bar-fill"});
    bar.style.width = `${Math.min(100, (100 * a.duration_ms) / total)}%`;
    const what = `attempt ${i + 1}: ${a.outcome}${a.status ? ` (HTTP ${a.status})` : ""}`;
    return el("li", {class: a.outcome === "ok" ? "ok" : "bad"},
      el("span", {}, `${what} · ${a.provider}/${a.model} · ${num(a.duration_ms, 1)} ms`),
      el("span", {class: "bar"}, bar));
  });
}

function showDetail(row) {
  const bodies = [["request", row.request_body], ["response", row.response_body]]
    .filter(([, b]) => b).flatMap(([name, b]) => [el("h3", {}, `${name} body`), el("pre", {class: "body"}, b)]);
  $("#logs-detail").replaceChildren(
    el("h2", {}, row.request_id),
    el("p", {}, `${row.method} ${row.path} · ${row.api} · ${row.stream ? "stream" : "whole"} · status ${row.status}`),
    el("p", {}, `first byte ${num(row.ttfb_ms)} ms · first token ${num(row.ttft_ms)} ms · total ${num(row.duration_ms)} ms`),
    el("p", {}, `tokens: ${num(row.prompt_tokens)} prompt (${num(row.cached_tokens)} cached, ${num(row.cache_write_tokens)} written to cache), ${num(row.completion_tokens)} completion (${num(row.reasoning_tokens)} reasoning) · ${cost(row.cost)}`),
    el("ol", {class: "attempts"}, timeline(row)),
    ...bodies,
    el("pre", {}, JSON.stringify(row, null, 2)));
}

// --- usage ----------------------------------------------------------------------------------------

// What each metric reads off a usage row, and whether it adds up across a stack.
const METRICS = {
  requests: {value: (u) => u.requests, adds: true, text: (u) => `${u.requests} requests, ${u.errors} errors`},
  tokens: {value: (u) => u.prompt_tokens + u.completion_tokens, adds: true, text: (u) => `${u.prompt_tokens + u.completion_tokens} tokens`},
  cost: {value: (u) => u.cost, adds: true, text: (u) => `$${u.cost.toFixed(6)}${u.unpriced ? ` + ${u.unpriced} unpriced` : ""}`},
  errors: {value: (u) => (u.requests ? (100 * u.errors) / u.requests : 0), adds: false, text: (u) => `${(u.requests ? (100 * u.errors) / u.requests : 0).toFixed(1)}% errors`},
  p99: {value: (u) => u.p99_ms, adds: false, text: (u) => `p99 ≤ ${u.p99_ms} ms, mean ${u.mean_ms.toFixed(0)} ms`},
};

const colour = (i) => `hsl(${(i * 67) % 360} 55% 55%)`;

// Only the newest of several loads in flight draws (changing three selects starts three).
let usageLoads = 0;

async function loadUsage() {
  const mine = ++usageLoads;
  const group = $("#usage-group").value;
  const metric = METRICS[$("#usage-metric").value];
  // A rate or a percentile does not add up: those are drawn for the whole group.
  const stack = metric.adds ? $("#usage-stack").value : "";
  const r = await api("GET", `/admin/usage?group=${encodeURIComponent(group)}&stack=${encodeURIComponent(stack)}`);
  if (mine !== usageLoads) return;
  const root = $("#usage-chart");
  if (!r.ok) return root.replaceChildren(el("p", {class: "error"}, r.data?.error?.message || "No usage."));
  // Each group's rows (one per stacked series), in the order the store gave them.
  const groups = new Map();
  for (const u of r.data.data) {
    const g = u.group ?? "";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(u);
  }
  const series = [...new Set(r.data.data.map((u) => u.stack ?? "(none)"))];
  const total = (rows) => rows.reduce((t, u) => t + metric.value(u), 0);
  const max = Math.max(1e-12, ...[...groups.values()].map(total));
  // Widths and colours are set through the CSSOM: the console's CSP allows no inline style.
  const segment = (u) => {
    const f = el("span", {class: "bar-fill", title: `${u.stack ?? ""} ${metric.text(u)}`, "data-stack": u.stack ?? ""});
    f.style.width = `${(100 * metric.value(u)) / max}%`;
    if (stack) f.style.background = colour(series.indexOf(u.stack ?? "(none)"));
    return f;
  };
  const summed = (rows) => rows.reduce((t, u) => {
    for (const k of ["requests", "errors", "prompt_tokens", "completion_tokens", "cost", "unpriced"]) t[k] += u[k];
    return t;
  }, {requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cost: 0, unpriced: 0, p99_ms: rows[0].p99_ms, mean_ms: rows[0].mean_ms});
  // Days in order; keys, models and providers from the top down (top keys first).
  const order = [...groups.entries()];
  if (group !== "day") order.sort((a, b) => total(b[1]) - total(a[1]));
  const bars = order.map(([g, rows]) => el("div", {class: "bar-row", "data-group": g},
    el("span", {class: "bar-label"}, g || "(none)"),
    el("span", {class: "bar stacked"}, ...rows.map(segment)),
    el("span", {class: "bar-value"}, metric.text(summed(rows)))));
  const legend = stack ? [el("p", {class: "legend"}, ...series.map((s, i) => {
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = colour(i);
    return el("span", {}, swatch, s);
  }))] : [];
  root.replaceChildren(...legend, ...bars);
}

// Each budgeted key: the larger of its token and cost use, against its budget.
async function loadBudgets() {
  const r = await api("GET", "/admin/budgets");
  const root = $("#usage-budgets");
  if (!r.ok) return root.replaceChildren(el("p", {class: "error"}, r.data?.error?.message || "No budgets."));
  if (!r.data.data.length) return root.replaceChildren(el("p", {class: "muted"}, "No key has a budget."));
  root.replaceChildren(...r.data.data.map((b) => {
    const parts = [];
    if (b.tokens.limit) parts.push([b.tokens.spent / b.tokens.limit, `${b.tokens.spent} of ${b.tokens.limit} tokens`]);
    if (b.cost.limit) parts.push([b.cost.spent / b.cost.limit, `$${b.cost.spent.toFixed(4)} of $${b.cost.limit}`]);
    const used = Math.max(0, ...parts.map(([f]) => f));
    const fill = el("span", {class: used >= 0.9 ? "bar-fill warn" : "bar-fill"});
    fill.style.width = `${Math.min(100, 100 * used)}%`;
    const who = b.team && !b.key ? `team ${b.team}` : `${b.key}${b.team ? ` (team ${b.team})` : ""}`;
    return el("div", {class: "bar-row", "data-key": b.key ?? "", "data-team": b.key ? "" : b.team},
      el("span", {class: "bar-label"}, `${who}, per ${b.period}`),
      el("span", {class: "bar"}, fill),
      el("span", {class: "bar-value"}, `${(100 * used).toFixed(0)}% · ${parts.map(([, t]) => t).join(" · ")}`));
  }));
}

export function initLogs() {
  $("#logs-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadLogs(); });
  $("#logs-more").addEventListener("click", () => loadLogs(true));
  $("#logs-live").addEventListener("change", (ev) => {
    clearInterval(liveTimer);
    if (ev.target.checked) liveTimer = setInterval(() => loadLogs(), 2000);
  });
  for (const s of ["#usage-group", "#usage-metric", "#usage-stack"]) $(s).addEventListener("change", loadUsage);
  for (const tab of ["logs", "usage"]) {
    document.querySelector(`header [data-tab=${tab}]`).addEventListener("click", tab === "logs" ? () => loadLogs() : () => { loadUsage(); loadBudgets(); });
  }
}
