// Prompt apps and workflows: the app editor with its generated variables form and live
// preview, and the workflow canvas (drag nodes from the palette, wire ports, configure in the
// side panel, save as YAML, run with per-node events).

import {$, $$, el, state, api, stream, templateVariables, fillTemplate, showReadOnly, chatModels} from "./lib.js";

export function initFlows() {
  initApps();
  initWorkflows();
}

function showProblems(list, problems) {
  list.replaceChildren(...(problems || []).map((p) => el("li", {"data-path": p.path}, p.path ? `${p.path}: ${p.message}` : p.message)));
}

// --- apps -----------------------------------------------------------------------------------------

let apps = [];

async function initApps() {
  $("#app-model").replaceChildren(...chatModels().map((m) => el("option", {value: m.name}, m.name)));
  for (const id of ["#app-system", "#app-user"]) $(id).addEventListener("input", refreshAppVariables);
  $("#app-pick").addEventListener("change", () => showApp($("#app-pick").value));
  $("#app-new").addEventListener("click", () => showApp(null));
  $("#app-save").addEventListener("click", saveApp);
  $("#app-try").addEventListener("click", tryApp);
  await loadApps();
}

async function loadApps(select) {
  const data = (await api("GET", "/console/api/apps")).data;
  apps = data.apps || [];
  $("#app-pick").replaceChildren(el("option", {value: ""}, "(new app)"), ...apps.map((a) => el("option", {value: a.name}, a.name)));
  showApp(select ?? apps[0]?.name ?? null);
  showReadOnly(data.read_only, "#app-save", "#app-message");
}

function currentApp() {
  return apps.find((a) => a.name === $("#app-pick").value) || null;
}

function showApp(name) {
  $("#app-pick").value = name || "";
  const app = currentApp();
  $("#app-name").value = app?.name || "";
  $("#app-name").disabled = !!app;
  $("#app-description").value = app?.description || "";
  const latest = app ? app.versions.reduce((a, b) => (b.version > a.version ? b : a)) : null;
  $("#app-next").textContent = `(version ${latest ? latest.version + 1 : 1})`;
  if (latest) {
    $("#app-model").value = latest.model;
    $("#app-system").value = latest.system || "";
    $("#app-user").value = latest.user;
    $("#app-params").value = JSON.stringify(latest.params || {});
  }
  $("#app-versions").textContent = app
    ? app.versions.map((v) => `v${v.version} ${v.model}${Object.entries(app.labels || {}).filter(([, n]) => n === v.version).map(([l]) => ` [${l}]`).join("")}\n  ${v.user}`).join("\n")
    : "";
  refreshAppVariables();
}

function refreshAppVariables() {
  const vars = [...new Set([...templateVariables($("#app-system").value), ...templateVariables($("#app-user").value)])];
  const root = $("#app-variables");
  const old = Object.fromEntries($$("input", root).map((i) => [i.dataset.var, i.value]));
  root.replaceChildren(...vars.map((v) => el("label", {}, v, el("input", {"data-var": v, value: old[v] ?? "", oninput: previewApp}))));
  previewApp();
}

function appVariables() {
  return Object.fromEntries($$("#app-variables input").map((i) => [i.dataset.var, i.value]));
}

/// The chat messages the form makes with the variables filled in: what the preview shows.
function formMessages() {
  const vars = appVariables();
  const messages = [];
  if ($("#app-system").value.trim()) messages.push({role: "system", content: fillTemplate($("#app-system").value, vars)});
  messages.push({role: "user", content: fillTemplate($("#app-user").value, vars)});
  return messages;
}

function previewApp() {
  $("#app-preview").textContent = JSON.stringify(formMessages(), null, 2);
}

/// The saved version the form shows unchanged, or null when it has been edited.
function shownVersion(app) {
  if (!app) return null;
  const latest = app.versions.reduce((a, b) => (b.version > a.version ? b : a));
  let params;
  try {
    params = JSON.stringify(JSON.parse($("#app-params").value || "{}"));
  } catch {
    return null;
  }
  const same = latest.model === $("#app-model").value && (latest.system || "") === $("#app-system").value
    && latest.user === $("#app-user").value && JSON.stringify(latest.params || {}) === params;
  return same ? latest.version : null;
}

async function saveApp() {
  let params;
  try {
    params = JSON.parse($("#app-params").value || "{}");
  } catch {
    return showProblems($("#app-problems"), [{path: "params", message: "not valid JSON"}]);
  }
  const old = currentApp();
  const version = old ? Math.max(...old.versions.map((v) => v.version)) + 1 : 1;
  const next = {version, model: $("#app-model").value, user: $("#app-user").value, params};
  if ($("#app-system").value.trim()) next.system = $("#app-system").value;
  const app = {name: old?.name || $("#app-name").value.trim(), description: $("#app-description").value,
    labels: {...(old?.labels || {})}, versions: [...(old?.versions || []), next]};
  const label = $("#app-label").value;
  if (label) app.labels[label] = version;
  else if (!old) app.labels.production = version;
  const r = await api("POST", "/console/api/apps/save", {app});
  showProblems($("#app-problems"), r.data.problems);
  if (r.ok) {
    $("#app-message").textContent = `Saved ${app.name} version ${version}.`;
    await loadApps(app.name);
  } else {
    $("#app-message").textContent = r.data.error?.message || "Not saved.";
  }
}

/// Runs exactly what the form shows: the saved version it shows, pinned in the call, or, with
/// unsaved edits, the previewed messages on the form's model.
async function tryApp() {
  const app = currentApp();
  const version = shownVersion(app);
  const out = $("#app-answer");
  out.textContent = "";
  let path, body;
  if (app && version !== null) {
    path = `/v1/apps/${app.name}/completions`;
    body = {variables: appVariables(), version, stream: true};
  } else {
    let params = {};
    try {
      params = JSON.parse($("#app-params").value || "{}");
    } catch { /* shown as a problem on save */ }
    path = undefined; // a chat completion
    body = {...params, model: $("#app-model").value, messages: formMessages(), stream: true};
    out.textContent = "(unsaved: the form as shown)\n";
  }
  const failed = await stream(state.overview.keys[0], path, body, (e) => {
    const d = e.choices?.[0]?.delta?.content;
    if (d) out.textContent += d;
    if (e.error) out.textContent += `\n${e.error.message}`;
  });
  if (failed) out.textContent = failed;
}

// --- workflows ------------------------------------------------------------------------------------

const NODE_TYPES = {
  input: {},
  template: {template: "{{inputs.text}}"},
  llm: {model: "", prompt: "", params: {}},
  condition: {value: "", op: "contains", text: ""},
  http: {url: "http://", method: "GET"},
  merge: {},
  output: {value: ""},
};

let wf = null;
let selected = null;
let armed = null;

function blankWorkflow() {
  return {name: "", inputs: {text: "string"}, nodes: [], edges: [], layout: {}};
}

async function initWorkflows() {
  $("#wf-palette").replaceChildren(...Object.keys(NODE_TYPES).map((t) => el("div", {class: "palette-item", draggable: "true",
    "data-type": t, ondragstart: (ev) => ev.dataTransfer.setData("text/plain", t)}, t)));
  const canvas = $("#wf-canvas");
  canvas.addEventListener("dragover", (ev) => ev.preventDefault());
  canvas.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const type = ev.dataTransfer.getData("text/plain");
    if (!NODE_TYPES[type]) return;
    const box = canvas.getBoundingClientRect();
    addNode(type, ev.clientX - box.left - 75, ev.clientY - box.top - 15);
  });
  $("#wf-pick").addEventListener("change", () => showWorkflow($("#wf-pick").value));
  $("#wf-new").addEventListener("click", () => showWorkflow(null));
  $("#wf-name").addEventListener("change", () => { wf.name = $("#wf-name").value.trim(); });
  $("#wf-inputs").addEventListener("change", () => { wf.inputs = parseInputs($("#wf-inputs").value); renderRunInputs(); });
  $("#wf-save").addEventListener("click", saveWorkflow);
  $("#wf-run").addEventListener("click", runWorkflow);
  await loadWorkflows();
}

let saved = [];

async function loadWorkflows(select) {
  const data = (await api("GET", "/console/api/workflows")).data;
  saved = data.workflows || [];
  for (const w of saved) {
    w.workflow.layout ??= {};
    w.workflow.edges ??= [];
    w.workflow.inputs ??= {};
  }
  $("#wf-pick").replaceChildren(el("option", {value: ""}, "(new workflow)"), ...saved.map((w) => el("option", {value: w.name}, w.name)));
  showWorkflow(select ?? saved[0]?.name ?? null);
  showReadOnly(data.read_only, "#wf-save", "#wf-message");
}

function showWorkflow(name) {
  $("#wf-pick").value = name || "";
  const found = saved.find((w) => w.name === name);
  wf = found ? JSON.parse(JSON.stringify(found.workflow)) : blankWorkflow();
  wf.layout ??= {};
  wf.edges ??= [];
  wf.inputs ??= {};
  $("#wf-name").value = wf.name;
  $("#wf-inputs").value = Object.entries(wf.inputs).map(([k, t]) => `${k}:${t}`).join(", ");
  selected = null;
  $("#wf-yaml").textContent = found?.yaml || "";
  renderRunInputs();
  renderCanvas();
  renderPanel();
}

function parseInputs(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, type] = part.split(":").map((s) => s.trim());
    out[name] = type || "string";
  }
  return out;
}

function addNode(type, x, y) {
  let n = 1;
  while (wf.nodes.some((node) => node.id === `${type}-${n}`)) n++;
  const id = `${type}-${n}`;
  const node = {id, type, ...JSON.parse(JSON.stringify(NODE_TYPES[type]))};
  if (type === "llm") node.model = chatModels()[0]?.name || "";
  wf.nodes.push(node);
  wf.layout[id] = {x: Math.max(0, Math.round(x)), y: Math.max(0, Math.round(y))};
  selected = id;
  renderCanvas();
  renderPanel();
}

function summary(node) {
  return node.prompt ?? node.template ?? node.value ?? node.url ?? "";
}

function renderCanvas() {
  const canvas = $("#wf-canvas");
  for (const n of $$(".wf-node", canvas)) n.remove();
  wf.nodes.forEach((node, i) => {
    const pos = wf.layout[node.id] || {x: 20 + 170 * (i % 4), y: 30 + 110 * Math.floor(i / 4)};
    wf.layout[node.id] = pos;
    const header = el("header", {}, el("strong", {}, node.id), ` ${node.type}`);
    const box = el("div", {class: `wf-node${selected === node.id ? " selected" : ""}`, "data-node": node.id},
      el("button", {class: "port in", title: "in", type: "button", onclick: (ev) => { ev.stopPropagation(); connect(node.id); }}),
      header,
      el("div", {class: "body"}, summary(node)),
      el("button", {class: `port out${armed === node.id ? " armed" : ""}`, title: "out", type: "button",
        onclick: (ev) => { ev.stopPropagation(); armed = armed === node.id ? null : node.id; renderCanvas(); }}));
    box.style.left = `${pos.x}px`;
    box.style.top = `${pos.y}px`;
    box.addEventListener("click", () => { selected = node.id; renderCanvas(); renderPanel(); });
    header.addEventListener("pointerdown", (ev) => startMove(ev, node.id, box));
    canvas.append(box);
  });
  drawEdges();
}

/// Wires the armed node's output to `to`.
function connect(to) {
  if (!armed || armed === to || wf.edges.some((e) => e.from === armed && e.to === to)) return;
  const from = wf.nodes.find((n) => n.id === armed);
  const edge = {from: armed, to};
  if (from?.type === "condition") edge.when = !wf.edges.some((e) => e.from === armed && e.when === true);
  wf.edges.push(edge);
  armed = null;
  renderCanvas();
  renderPanel();
}

function startMove(ev, id, box) {
  ev.preventDefault();
  const start = {...wf.layout[id]};
  const move = (m) => {
    wf.layout[id] = {x: Math.max(0, Math.round(start.x + (m.clientX - ev.clientX))), y: Math.max(0, Math.round(start.y + (m.clientY - ev.clientY)))};
    box.style.left = `${wf.layout[id].x}px`;
    box.style.top = `${wf.layout[id].y}px`;
    drawEdges();
  };
  const up = () => { window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up); };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

function drawEdges() {
  const svg = $("#wf-edges");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren(...wf.edges.flatMap((e) => {
    const a = wf.layout[e.from], b = wf.layout[e.to];
    if (!a || !b) return [];
    const line = document.createElementNS(ns, "line");
    const [x1, y1, x2, y2] = [a.x + 150, a.y + 21, b.x, b.y + 21];
    for (const [k, v] of Object.entries({x1, y1, x2, y2})) line.setAttribute(k, v);
    line.dataset.edge = `${e.from}->${e.to}`;
    const parts = [line];
    if (e.when !== undefined) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", (x1 + x2) / 2);
      t.setAttribute("y", (y1 + y2) / 2 - 4);
      t.textContent = String(e.when);
      parts.push(t);
    }
    return parts;
  }));
}

const FIELDS = {
  template: [["template", "textarea"]],
  llm: [["model", "model"], ["system", "textarea"], ["prompt", "textarea"], ["params", "json"]],
  condition: [["value", "text"], ["op", ["contains", "equals", "not_empty"]], ["text", "text"]],
  http: [["url", "text"], ["method", ["GET", "POST"]], ["body", "textarea"]],
  output: [["value", "textarea"]],
};

function renderPanel() {
  const root = $("#wf-panel");
  const node = wf.nodes.find((n) => n.id === selected);
  if (!node) return root.replaceChildren(el("p", {class: "muted"}, "Select a node."));
  const fields = (FIELDS[node.type] || []).map(([key, kind]) => {
    const set = (v) => {
      if (v === "" && key !== "prompt" && key !== "template" && key !== "value") delete node[key]; else node[key] = v;
      renderCanvas();
    };
    let input;
    if (kind === "textarea") input = el("textarea", {rows: 3, "data-field": key, oninput: (ev) => set(ev.target.value)}, node[key] ?? "");
    else if (kind === "model") input = el("select", {"data-field": key, onchange: (ev) => set(ev.target.value)},
      chatModels().map((m) => el("option", {value: m.name, selected: m.name === node.model}, m.name)));
    else if (Array.isArray(kind)) input = el("select", {"data-field": key, onchange: (ev) => set(ev.target.value)},
      kind.map((o) => el("option", {value: o, selected: o === node[key]}, o)));
    else if (kind === "json") input = el("input", {"data-field": key, value: JSON.stringify(node[key] || {}),
      onchange: (ev) => { try { node[key] = JSON.parse(ev.target.value || "{}"); } catch { ev.target.classList.add("invalid"); } }});
    else input = el("input", {"data-field": key, value: node[key] ?? "", oninput: (ev) => set(ev.target.value)});
    return el("label", {}, key, input);
  });
  const edges = wf.edges.filter((e) => e.from === node.id || e.to === node.id).map((e) => el("div", {class: "row"},
    `${e.from} → ${e.to}`,
    e.when !== undefined ? el("select", {onchange: (ev) => { e.when = ev.target.value === "true"; drawEdges(); }},
      ["true", "false"].map((o) => el("option", {value: o, selected: String(e.when) === o}, o))) : "",
    el("button", {class: "quiet", type: "button", onclick: () => { wf.edges.splice(wf.edges.indexOf(e), 1); renderCanvas(); renderPanel(); }}, "×")));
  root.replaceChildren(
    el("p", {}, el("strong", {}, node.id), ` (${node.type}). Refer to other nodes as `, el("code", {}, "{{id.output}}"),
      ", to inputs as ", el("code", {}, "{{inputs.name}}"), "."),
    ...fields,
    el("h2", {}, "Edges"), ...edges,
    el("button", {class: "quiet", type: "button", onclick: () => {
      wf.nodes = wf.nodes.filter((n) => n.id !== node.id);
      wf.edges = wf.edges.filter((e) => e.from !== node.id && e.to !== node.id);
      delete wf.layout[node.id];
      selected = null;
      renderCanvas();
      renderPanel();
    }}, "Delete node"));
}

/// The run form for the workflow's inputs; values typed before are kept (a save re-renders it).
function renderRunInputs() {
  const typed = Object.fromEntries($$("#wf-run-inputs input").map((i) => [i.dataset.input, i.value]));
  $("#wf-run-inputs").replaceChildren(...Object.entries(wf.inputs || {}).map(([name, type]) =>
    el("label", {}, `${name} (${type})`, el("input", {"data-input": name, "data-type": type, value: typed[name] ?? ""}))));
}

async function saveWorkflow() {
  wf.name = $("#wf-name").value.trim();
  wf.inputs = parseInputs($("#wf-inputs").value);
  const r = await api("POST", "/console/api/workflows/save", {workflow: wf});
  showProblems($("#wf-problems"), r.data.problems);
  if (r.ok) {
    $("#wf-message").textContent = `Saved ${wf.name}.`;
    $("#wf-yaml").textContent = r.data.yaml;
    const name = wf.name;
    await loadWorkflows(name);
    $("#wf-yaml").textContent = r.data.yaml;
  } else {
    $("#wf-message").textContent = r.data.error?.message || "Not saved.";
  }
}

/// Runs the workflow as saved; says so when there is nothing saved to run, or when the canvas
/// holds changes that a run would not include.
async function runWorkflow() {
  const stored = saved.find((w) => w.name === wf.name);
  if (!wf.name || !stored) {
    $("#wf-message").textContent = "Save the workflow first: Run runs what is saved.";
    return;
  }
  const unsaved = JSON.stringify(stored.workflow) !== JSON.stringify(wf);
  $("#wf-message").textContent = unsaved ? "Running the saved version; the canvas has unsaved changes." : "";
  const inputs = {};
  for (const i of $$("#wf-run-inputs input")) {
    const t = i.dataset.type;
    inputs[i.dataset.input] = t === "number" ? Number(i.value) : t === "boolean" ? i.value === "true" : i.value;
  }
  const log = $("#wf-log");
  log.textContent = "";
  for (const n of $$(".wf-node")) n.classList.remove("running", "finished", "failed", "skipped");
  const failed = await stream(state.overview.keys[0], `/v1/workflows/${wf.name}/run`, {inputs, stream: true}, (e) => {
    const box = e.node && $(`.wf-node[data-node="${CSS.escape(e.node)}"]`);
    const status = {node_started: "running", node_finished: "finished", node_failed: "failed", node_skipped: "skipped"}[e.event];
    if (box && status) {
      box.classList.remove("running");
      box.classList.add(status);
    }
    log.textContent += `${e.event}${e.node ? ` ${e.node}` : ""}${e.output !== undefined ? `: ${e.output}` : ""}${e.error ? `: ${e.error.message}` : ""}${e.outputs ? `: ${JSON.stringify(e.outputs)}` : ""}\n`;
  });
  if (failed) log.textContent = failed;
}
