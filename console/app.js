// The modelmux console: plain modules, no framework, no build step, nothing fetched from
// elsewhere. Every text from the gateway is put in the page as text, never as HTML.

import {$, $$, el, state, api, stream, showReadOnly, chatModels} from "./lib.js";
import {initFlows} from "./flows.js";
import {initLogs} from "./logs.js";
import {initKeys} from "./keys.js";
import {initReference} from "./reference.js";

// --- sign-in ------------------------------------------------------------------------------------

async function start() {
  const s = await api("GET", "/console/api/session");
  if (s.ok) {
    state.csrf = s.data.csrf;
    return showApp();
  }
  $("#login").hidden = false;
  $("#app").hidden = true;
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await api("POST", "/console/login", {key: $("#login-key").value});
  if (!r.ok) {
    $("#login-error").textContent = r.data?.error?.message || "Sign-in failed.";
    return;
  }
  state.csrf = r.data.csrf;
  $("#login-key").value = "";
  $("#login-error").textContent = "";
  showApp();
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/console/logout");
  state.csrf = null;
  location.reload();
});

async function showApp() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  state.overview = (await api("GET", "/console/api/overview")).data;
  buildPlayground();
  initFlows();
  initLogs();
  initKeys();
  initReference();
  refreshStatus();
  setInterval(refreshStatus, 2000);
  loadRoutes();
}

for (const b of $$("header .tab")) {
  b.addEventListener("click", () => {
    for (const t of $$("header .tab")) t.classList.toggle("active", t === b);
    for (const p of $$(".tab-page")) p.hidden = p.id !== `tab-${b.dataset.tab}`;
  });
}

// --- status -------------------------------------------------------------------------------------

const fmt = (v, unit = "") => (v === null || v === undefined ? "–" : `${Math.round(v * 10) / 10}${unit}`);

function sparkline(points, key, cls, max) {
  const w = 120, h = 26;
  const values = points.map((p) => p[key] ?? 0);
  const top = max ?? Math.max(1, ...values);
  const coords = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - 2 - (v / top) * (h - 4)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("class", cls);
  line.setAttribute("points", coords);
  svg.append(line);
  return svg;
}

const openErrors = new Set();

async function refreshStatus() {
  const r = await api("GET", "/admin/status");
  if (!r.ok) return;
  const s = r.data;
  const root = $("#status-providers");
  root.replaceChildren(...s.providers.map((p) => {
    const rows = p.targets.map((t) => {
      const id = `${p.name}/${t.model}`;
      const recent = t.recent;
      const last = recent.last_error;
      const errorRow = el("tr", {class: "last-error"}, el("td", {colspan: 9},
        last ? `${new Date(last.at * 1000).toLocaleTimeString()}: ${last.message}` : "No error in this process's memory."));
      errorRow.hidden = !openErrors.has(id);
      const toggle = el("button", {class: "quiet", onclick: () => {
        openErrors.has(id) ? openErrors.delete(id) : openErrors.add(id);
        errorRow.hidden = !openErrors.has(id);
      }}, last ? "last error" : "no errors");
      return [el("tr", {"data-target": id},
        el("td", {}, t.model, el("div", {class: "muted"}, t.serves.join(", "))),
        el("td", {}, el("span", {class: `badge ${t.breaker}`}, t.breaker)),
        el("td", {}, String(t.in_flight)),
        el("td", {}, String(recent.requests)),
        el("td", {}, fmt(recent.error_rate * 100, "%")),
        el("td", {}, `${fmt(recent.p50_ms, " ms")} / ${fmt(recent.p99_ms, " ms")}`),
        el("td", {}, `${fmt(recent.ttft_p50_ms, " ms")} / ${fmt(recent.ttft_p99_ms, " ms")}`),
        el("td", {}, sparkline(recent.series, "p50_ms", "lat"), sparkline(recent.series, "error_rate", "err", 1)),
        el("td", {}, toggle)), errorRow];
    });
    return el("div", {class: "provider card"},
      el("h2", {}, p.name, el("span", {class: "muted"}, `${p.kind}, at most ${p.max_in_flight} in flight`)),
      el("table", {}, el("thead", {}, el("tr", {}, ...["target", "breaker", "in flight", "requests", "errors", "p50 / p99", "first token p50 / p99", "latency · errors", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows.flat())));
  }));
  const limits = [...s.keys.map((k) => ["key", k]), ...s.models.map((m) => ["model", m])]
    .filter(([, l]) => l.rpm !== null || l.tpm !== null);
  const none = el("tr", {}, el("td", {colspan: 6, class: "muted"}, "No key or model has a rate limit."));
  $("#status-limits tbody").replaceChildren(...(limits.length ? limits.map(([scope, l]) => el("tr", {},
    el("td", {}, scope), el("td", {}, l.name), el("td", {}, fmt(l.rpm)), el("td", {}, fmt(l.remaining_requests)),
    el("td", {}, fmt(l.tpm)), el("td", {}, fmt(l.remaining_tokens)))) : [none]));
  $("#status-updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

// --- playground ---------------------------------------------------------------------------------

const VENDORS = {openai: "OpenAI", anthropic: "Anthropic", dashscope: "Alibaba DashScope", qianfan: "Baidu Qianfan",
  gemini: "Google Gemini", openai_compatible: "OpenAI-compatible"};
const PARAMS = ["temperature", "max_tokens", "top_p", "stop", "seed"];
let codeLang = "curl";
let lastCode = null;

function buildPlayground() {
  $("#pg-key").replaceChildren(...state.overview.keys.map((k) => el("option", {value: k}, k)));
  $("#pg-form").addEventListener("input", formChanged);
  $("#pg-form").addEventListener("change", formChanged);
  $("#pg-preview-model").addEventListener("change", refreshVendorPreview);
  $("#pg-form").addEventListener("submit", (ev) => { ev.preventDefault(); send(); });
  for (const b of $$(".code-tabs .tab")) {
    b.addEventListener("click", () => {
      codeLang = b.dataset.lang;
      for (const t of $$(".code-tabs .tab")) t.classList.toggle("active", t === b);
      showCode();
    });
  }
  $("#code-copy").addEventListener("click", () => navigator.clipboard?.writeText($("#code").textContent));
  buildPlaygroundGroups(new Set(chatModels().slice(0, 1).map((m) => m.name)));
}

function checkedModels() {
  return $$("#pg-models input:checked").map((i) => i.value);
}

function params() {
  const out = {};
  for (const p of PARAMS) {
    if (!$(`#on-${p}`).checked) continue;
    const raw = $(`#p-${p}`).value;
    if (p === "stop") out.stop = raw.split(",").map((s) => s.trim()).filter(Boolean);
    else if (p === "max_tokens" || p === "seed") out[p] = parseInt(raw, 10);
    else out[p] = parseFloat(raw);
  }
  return out;
}

function messages() {
  const m = [];
  const system = $("#pg-system").value.trim();
  if (system) m.push({role: "system", content: system});
  m.push({role: "user", content: $("#pg-prompt").value});
  return m;
}

const API_PATHS = {responses: "/v1/responses", messages: "/v1/messages"};

/// The parameters in the chosen API's names (as the generated code has them): what an API has
/// no name for is left out.
function apiParams(api) {
  const out = {};
  for (const [k, v] of Object.entries(params())) {
    if (api === "responses" && (k === "stop" || k === "seed")) continue;
    if (api === "messages" && k === "seed") continue;
    const name = api === "responses" && k === "max_tokens" ? "max_output_tokens"
      : api === "messages" && k === "stop" ? "stop_sequences" : k;
    out[name] = v;
  }
  return out;
}

/// One model's body in the Responses API or Anthropic's Messages API, streamed.
function apiBody(api, model) {
  const system = $("#pg-system").value.trim();
  const prompt = $("#pg-prompt").value;
  if (api === "responses") {
    return {model, ...(system ? {instructions: system} : {}), input: prompt, ...apiParams(api), stream: true};
  }
  return {model, max_tokens: params().max_tokens ?? 1024, ...(system ? {system} : {}),
    messages: [{role: "user", content: prompt}], ...apiParams(api), stream: true};
}

/// The body the playground sends: in chat, a compare over the checked models; in the other
/// APIs, one request per model (shown for the first).
function requestBody() {
  const api = $("#pg-api").value;
  if (api !== "chat") return apiBody(api, checkedModels()[0] ?? "");
  return {models: checkedModels(), messages: messages(), ...params(), stream: true};
}

let previewTimer = null;

function formChanged() {
  for (const p of ["temperature", "top_p"]) $(`#v-${p}`).textContent = $(`#p-${p}`).value;
  for (const p of PARAMS) $(`#p-${p}`).disabled = !$(`#on-${p}`).checked;
  $("#pg-request").textContent = JSON.stringify(requestBody(), null, 2);
  const models = checkedModels();
  const select = $("#pg-preview-model");
  const keep = select.value;
  select.replaceChildren(...models.map((m) => el("option", {value: m}, m)));
  if (models.includes(keep)) select.value = keep;
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => { refreshVendorPreview(); refreshCode(); }, 150);
}

let previewSeq = 0;
let codeSeq = 0;

/// The vendor preview and the code follow the latest form: a late answer to an older one is dropped.
async function refreshVendorPreview() {
  const model = $("#pg-preview-model").value;
  const root = $("#pg-vendor");
  if (!model) return root.replaceChildren(el("p", {class: "muted"}, "Check a model."));
  const seq = ++previewSeq;
  const r = await api("POST", "/console/api/preview", {model, messages: messages(), ...params()});
  if (seq !== previewSeq) return;
  if (!r.ok) return root.replaceChildren(el("p", {class: "error"}, r.data?.error?.message || "No preview."));
  root.replaceChildren(...r.data.targets.map((t) => el("div", {class: "vendor-preview", "data-kind": t.kind},
    el("p", {}, el("strong", {}, t.target), ` (${t.kind}) `, t.url ? el("code", {}, `${t.method} ${t.url}`) : ""),
    t.error ? el("p", {class: "error"}, t.error) : el("pre", {}, JSON.stringify(t.body, null, 2)))));
}

async function refreshCode() {
  const models = checkedModels();
  if (!models.length) return;
  const routes = Object.fromEntries(state.overview.models.filter((m) => models.includes(m.name)).map((m) => [m.name, m.route]));
  const seq = ++codeSeq;
  const r = await api("POST", "/console/api/code", {base_url: state.overview.base_url, models, system: $("#pg-system").value.trim() || null,
    prompt: $("#pg-prompt").value, params: params(), stream: false, routes, api: $("#pg-api").value});
  if (r.ok && seq === codeSeq) {
    lastCode = r.data;
    showCode();
  }
}

function showCode() {
  $("#code").textContent = lastCode ? lastCode[codeLang] : "";
}

async function send() {
  const models = checkedModels();
  if (!models.length) return;
  const api = $("#pg-api").value;
  const cards = {};
  const price = Object.fromEntries(state.overview.models.map((m) => [m.name, m.price]));
  $("#pg-answers").replaceChildren(...models.map((m) => {
    cards[m] = {text: el("div", {class: "text"}), stats: el("div", {class: "stats"}, "waiting…")};
    return el("div", {class: "answer", "data-model": m, "data-api": api}, el("h3", {}, m), cards[m].text, cards[m].stats);
  }));
  $("#pg-send").disabled = true;
  try {
    if (api === "chat") {
      const failed = await stream($("#pg-key").value, null, requestBody(), (e) => onEvent(e, cards, price));
      if (failed) for (const c of Object.values(cards)) c.stats.textContent = failed;
    } else {
      await Promise.all(models.map((m) => sendOne(api, m, cards[m], price[m])));
    }
  } finally {
    $("#pg-send").disabled = false;
  }
}

/// One model's streamed answer in the Responses API or Anthropic's Messages API, timed here.
async function sendOne(api, model, card, price) {
  const start = performance.now();
  let first = null;
  const u = {};
  const answer = card.text.parentElement;
  const fail = (message) => { answer.classList.add("failed"); card.stats.textContent = message; };
  const onText = (t) => { first ??= performance.now(); card.text.append(t); };
  const failed = await stream($("#pg-key").value, API_PATHS[api], apiBody(api, model), (e) => {
    if (e.type === "response.output_text.delta") onText(e.delta);
    else if (e.type === "content_block_delta" && e.delta?.type === "text_delta") onText(e.delta.text);
    else if (e.type === "message_start") u.prompt_tokens = e.message?.usage?.input_tokens;
    else if (e.type === "message_delta") u.completion_tokens = e.usage?.output_tokens;
    else if (e.type === "response.completed" || e.type === "response.incomplete") {
      u.prompt_tokens = e.response?.usage?.input_tokens;
      u.completion_tokens = e.response?.usage?.output_tokens;
    } else if (e.type === "response.failed" || e.type === "error") {
      u.error = e.response?.error?.message || e.error?.message || "error";
    }
  });
  if (failed || u.error) return fail(failed || u.error);
  answer.classList.add("done");
  const cost = price && u.prompt_tokens !== undefined
    ? ` · $${((u.prompt_tokens * price.prompt + u.completion_tokens * price.completion) / 1e6).toFixed(6)}` : "";
  const ttft = first === null ? "–" : Math.round(first - start);
  card.stats.textContent = `first token ${ttft} ms · ${Math.round(performance.now() - start)} ms · ${u.prompt_tokens ?? "?"} prompt + ${u.completion_tokens ?? "?"} completion tokens${cost}`;
  card.stats.dataset.tokens = u.completion_tokens ?? "";
}

function onEvent(e, cards, price) {
  const card = cards[e.model];
  if (!card) return;
  if (e.object === "compare.result") {
    const answer = card.text.parentElement;
    if (e.error) {
      answer.classList.add("failed");
      card.stats.textContent = `${e.error.message || "error"} (${e.error.status ?? ""})`;
      return;
    }
    answer.classList.add("done");
    const u = e.usage || {};
    const p = price[e.model];
    const cost = p && u.prompt_tokens !== undefined
      ? ` · $${((u.prompt_tokens * p.prompt + u.completion_tokens * p.completion) / 1e6).toFixed(6)}` : "";
    card.stats.textContent = `first token ${e.ttft_ms ?? "–"} ms · ${e.latency_ms} ms · ${u.prompt_tokens ?? "?"} prompt + ${u.completion_tokens ?? "?"} completion tokens${cost}`;
    card.stats.dataset.tokens = u.completion_tokens ?? "";
    return;
  }
  const delta = e.choices?.[0]?.delta;
  if (delta?.content) card.text.append(delta.content);
}

// --- routes ---------------------------------------------------------------------------------------

let routes = {};

async function loadRoutes() {
  const r = await api("GET", "/console/api/routes");
  if (!r.ok) return;
  $("#routes-path").textContent = r.data.path;
  $("#routes-yaml").value = r.data.yaml;
  routes = r.data.models || {};
  renderRoutesForm([]);
  showReadOnly(r.data.read_only, "#routes-save", "#routes-message");
}

const fieldPath = (name, rest) => `models.${name}${rest}`;

function input(path, value, onchange, cls = "", type = "text") {
  return el("input", {type, class: cls, value: value ?? "", "data-path": path, onchange: (ev) => onchange(ev.target.value)});
}

function num(v) {
  return v === "" ? undefined : Number(v);
}

function renderRoutesForm(problems) {
  const providers = state.overview.providers.map((p) => p.name);
  const blocks = Object.entries(routes).map(([name, m]) => {
    m.targets ??= [];
    const rename = (v) => {
      if (!v || v === name || routes[v]) return;
      routes = Object.fromEntries(Object.entries(routes).map(([k, x]) => [k === name ? v : k, x]));
      formEdited(true);
    };
    const targets = m.targets.map((t, i) => el("div", {class: "row"},
      el("select", {"data-path": fieldPath(name, `.targets[${i}].provider`), onchange: (ev) => { t.provider = ev.target.value; formEdited(); }},
        // A provider the config lacks stays shown (and flagged by the check), never swapped.
        [...new Set([...providers, t.provider])].map((p) => el("option", {value: p, selected: p === t.provider}, p))),
      input(fieldPath(name, `.targets[${i}].model`), t.model, (v) => { t.model = v; formEdited(); }),
      el("label", {}, "weight"), input(fieldPath(name, `.targets[${i}].weight`), t.weight, (v) => { t.weight = num(v); formEdited(); }, "small", "number"),
      el("label", {}, "priority"), input(fieldPath(name, `.targets[${i}].priority`), t.priority, (v) => { t.priority = num(v); formEdited(); }, "small", "number"),
      el("button", {class: "quiet", type: "button", onclick: () => { m.targets.splice(i, 1); formEdited(true); }}, "×")));
    const limits = (m.limits ??= {});
    const timeouts = (m.timeouts ??= {});
    const setOpt = (obj, k, v) => { if (v === "" || v === undefined) delete obj[k]; else obj[k] = v; formEdited(); };
    return el("div", {class: "route", "data-model": name},
      el("div", {class: "row"}, el("strong", {}, "model"), input(fieldPath(name, ""), name, rename, "model-name"),
        el("button", {class: "quiet", type: "button", onclick: () => { delete routes[name]; formEdited(true); }}, "remove")),
      targets,
      el("button", {class: "quiet", type: "button", onclick: () => { m.targets.push({provider: providers[0], model: ""}); formEdited(true); }}, "+ target"),
      el("div", {class: "row"},
        el("label", {}, "rpm"), input(fieldPath(name, ".limits.rpm"), limits.rpm, (v) => setOpt(limits, "rpm", num(v)), "small", "number"),
        el("label", {}, "tpm"), input(fieldPath(name, ".limits.tpm"), limits.tpm, (v) => setOpt(limits, "tpm", num(v)), "small", "number"),
        el("label", {}, "first byte"), input(fieldPath(name, ".timeouts.first_byte"), timeouts.first_byte, (v) => setOpt(timeouts, "first_byte", v), "small"),
        el("label", {}, "total"), input(fieldPath(name, ".timeouts.total"), timeouts.total, (v) => setOpt(timeouts, "total", v), "small"),
        el("label", {}, "cache ttl"), input(fieldPath(name, ".cache.ttl"), m.cache?.ttl, (v) => { if (v) m.cache = {...(m.cache || {}), ttl: v}; else delete m.cache; formEdited(); }, "small")),
      el("div", {class: "problem", "data-problems": name}));
  });
  // The form is drawn anew; the field being edited keeps the focus (and its caret).
  const active = document.activeElement?.dataset?.path;
  const caret = document.activeElement?.selectionStart;
  $("#routes-form").replaceChildren(...blocks);
  const again = active && $$("#routes-form [data-path]").find((f) => f.dataset.path === active);
  if (again) {
    again.focus();
    if (typeof caret === "number" && again.setSelectionRange && again.type === "text") again.setSelectionRange(caret, caret);
  }
  showProblems(problems);
}

/// Each problem at its field when the form has one, else at its model, else above the form.
function showProblems(problems) {
  for (const i of $$("#routes-form .invalid")) i.classList.remove("invalid");
  const list = $("#routes-problems");
  list.replaceChildren();
  for (const p of problems) {
    const field = $$("#routes-form [data-path]").find((f) => f.dataset.path === p.path);
    if (field) {
      field.classList.add("invalid");
      field.title = p.message;
    }
    const model = p.path.split(".")[1]?.split("[")[0];
    const at = model && $(`#routes-form [data-problems="${CSS.escape(model)}"]`);
    if (at) at.append(el("div", {}, `${p.path}: ${p.message}`));
    list.append(el("li", {"data-path": p.path}, `${p.path}: ${p.message}`));
  }
}

function clean(models) {
  const out = JSON.parse(JSON.stringify(models));
  for (const m of Object.values(out)) {
    for (const k of ["limits", "timeouts"]) if (m[k] && !Object.keys(m[k]).length) delete m[k];
    for (const t of m.targets || []) for (const k of ["weight", "priority"]) if (t[k] === undefined || Number.isNaN(t[k])) delete t[k];
  }
  return out;
}

let editTimer = null;
/// Counts form edits and checks: only the answer to the latest check, sent after the latest
/// edit, may update the form (an older one arriving late would undo what was typed since).
let checkSeq = 0;

/// A form edit: the form is drawn again only when its shape changed (a model or target added,
/// removed or renamed); a field's new value is already on screen, so the focus stays put.
function formEdited(structural = false) {
  checkSeq++; // an edit makes every check already under way stale
  if (structural) renderRoutesForm([]);
  clearTimeout(editTimer);
  editTimer = setTimeout(() => checkRoutes({models: clean(routes)}), 100);
}

async function checkRoutes(edit, save = false) {
  const seq = ++checkSeq;
  const r = await api("POST", save ? "/console/api/routes/save" : "/console/api/routes/check", edit);
  if (seq !== checkSeq) return;
  const d = r.data;
  if (d.yaml !== undefined) $("#routes-yaml").value = d.yaml;
  $("#routes-diff").textContent = d.diff || "";
  const problems = d.problems || d.reload?.error?.problems || [];
  if (edit.models) {
    showProblems(problems); // the form already shows what was checked
  } else {
    if (d.models && typeof d.models === "object") routes = d.models;
    renderRoutesForm(problems);
  }
  const msg = $("#routes-message");
  if (save && r.ok) {
    msg.textContent = "Saved and reloaded.";
    state.overview = (await api("GET", "/console/api/overview")).data;
    buildPlaygroundGroups(new Set(checkedModels()));
  } else if (!r.ok) {
    msg.textContent = problems.length ? `${problems.length} problem(s); nothing was saved.` : (d.error?.message || "Failed.");
  } else {
    msg.textContent = "Valid.";
  }
}

/// The model checkboxes, grouped by vendor.
function buildPlaygroundGroups(checked) {
  const groups = {};
  for (const m of chatModels()) (groups[m.vendor] ??= []).push(m);
  $("#pg-models").replaceChildren(...Object.entries(groups).map(([vendor, models]) => el("div", {class: "vendor-group"},
    el("h3", {}, VENDORS[vendor] || vendor),
    models.map((m) => el("label", {}, el("input", {type: "checkbox", name: "model", value: m.name, checked: checked.has(m.name)}), m.name)))));
  formChanged();
}

$("#routes-check").addEventListener("click", () => checkRoutes({yaml: $("#routes-yaml").value}));
$("#routes-save").addEventListener("click", () => checkRoutes({yaml: $("#routes-yaml").value}, true));
$("#routes-add").addEventListener("click", () => {
  let n = 1;
  while (routes[`new-model-${n}`]) n++;
  // The new model goes first, where the buttons are, with its name ready to type.
  routes = {[`new-model-${n}`]: {targets: [{provider: state.overview.providers[0]?.name, model: ""}]}, ...routes};
  formEdited(true);
  const name = $(`#routes-form [data-path="models.new-model-${n}"]`);
  name?.scrollIntoView({block: "center"});
  name?.focus();
  name?.select();
});

start();
