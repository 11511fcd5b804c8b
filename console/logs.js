// The Logs and Usage tabs: the request log store read through the admin API (a console session
// may GET it). Everything from the gateway goes into the page as text.

import {$, el, api} from "./lib.js";

let liveTimer = null;
let cursor = null;

function filters() {
  const q = new URLSearchParams();
  for (const f of ["key", "model", "status", "request_id"]) {
    const v = $(`#logs-${f}`).value.trim();
    if (v) q.set(f, v);
  }
  q.set("limit", "50");
  return q;
}

const num = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const cost = (v) => (v === null || v === undefined ? "unpriced" : `$${Number(v).toFixed(6)}`);

async function loadLogs(more = false) {
  const q = filters();
  if (more && cursor !== null) q.set("before", cursor);
  const r = await api("GET", `/admin/logs?${q}`);
  const body = $("#logs-rows");
  if (!r.ok) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 9, class: "error"}, r.data?.error?.message || "No logs.")));
    return;
  }
  cursor = r.data.next;
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

function showDetail(row) {
  const attempts = row.attempts.map((a, i) => el("li", {class: a === "ok" ? "ok" : "bad"}, `attempt ${i + 1}: ${a}`));
  $("#logs-detail").replaceChildren(
    el("h2", {}, row.request_id),
    el("p", {}, `${row.method} ${row.path} · ${row.api} · ${row.stream ? "stream" : "whole"} · status ${row.status}`),
    el("p", {}, `first byte ${num(row.ttfb_ms)} ms · first token ${num(row.ttft_ms)} ms · total ${num(row.duration_ms)} ms`),
    el("p", {}, `tokens: ${num(row.prompt_tokens)} prompt (${num(row.cached_tokens)} cached), ${num(row.completion_tokens)} completion (${num(row.reasoning_tokens)} reasoning) · ${cost(row.cost)}`),
    el("ol", {class: "attempts"}, attempts),
    el("pre", {}, JSON.stringify(row, null, 2)));
}

// --- usage ----------------------------------------------------------------------------------------

async function loadUsage() {
  const group = $("#usage-group").value;
  const r = await api("GET", `/admin/usage?group=${encodeURIComponent(group)}`);
  const root = $("#usage-chart");
  if (!r.ok) return root.replaceChildren(el("p", {class: "error"}, r.data?.error?.message || "No usage."));
  const rows = r.data.data;
  const metric = $("#usage-metric").value;
  const value = (u) => (metric === "cost" ? u.cost : metric === "tokens" ? u.prompt_tokens + u.completion_tokens : u.requests);
  const max = Math.max(1e-12, ...rows.map(value));
  // Widths are set through the CSSOM: the console's CSP allows no inline style attribute.
  const fill = (u) => {
    const f = el("span", {class: "bar-fill"});
    f.style.width = `${(100 * value(u)) / max}%`;
    return f;
  };
  root.replaceChildren(...rows.map((u) => el("div", {class: "bar-row", "data-group": u.group ?? ""},
    el("span", {class: "bar-label"}, u.group ?? "(no model)"),
    el("span", {class: "bar"}, fill(u)),
    el("span", {class: "bar-value"}, metric === "cost" ? `$${u.cost.toFixed(6)}${u.unpriced ? ` + ${u.unpriced} unpriced` : ""}`
      : metric === "tokens" ? `${value(u)} tokens` : `${u.requests} requests, ${u.errors} errors`))));
}

export function initLogs() {
  $("#logs-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadLogs(); });
  $("#logs-more").addEventListener("click", () => loadLogs(true));
  $("#logs-live").addEventListener("change", (ev) => {
    clearInterval(liveTimer);
    if (ev.target.checked) liveTimer = setInterval(() => loadLogs(), 2000);
  });
  for (const s of ["#usage-group", "#usage-metric"]) $(s).addEventListener("change", loadUsage);
  for (const tab of ["logs", "usage"]) {
    document.querySelector(`header [data-tab=${tab}]`).addEventListener("click", tab === "logs" ? () => loadLogs() : loadUsage);
  }
}
