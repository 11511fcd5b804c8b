// What every console module shares: DOM helpers and the signed-in API client.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "value") e.value = v ?? "";
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/// The signed-in session's CSRF token and the gateway's overview (models, keys, providers).
export const state = {csrf: null, overview: null};

export async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") {
    headers["content-type"] = "application/json";
    if (state.csrf) headers["x-csrf-token"] = state.csrf;
  }
  const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin"});
  const data = await r.json().catch(() => ({}));
  return {status: r.status, ok: r.ok, data};
}

/// Streams the console's run of a gateway API path (`/console/api/playground`), calling `onEvent`
/// with each SSE event's JSON; the error message when it could not start.
export async function stream(key, path, body, onEvent) {
  const r = await fetch("/console/api/playground", {method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-csrf-token": state.csrf},
    body: JSON.stringify({key, path, body})});
  if (!r.ok || !r.body) {
    const err = await r.json().catch(() => ({}));
    return err?.error?.message || `HTTP ${r.status}`;
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
  return null;
}

/// `{{name}}` placeholders, as the gateway reads them.
export function templateVariables(t) {
  const out = [];
  for (const m of (t || "").matchAll(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g)) if (!out.includes(m[1])) out.push(m[1]);
  return out;
}

export function fillTemplate(t, values) {
  return (t || "").replace(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g, (m, name) => (name in values ? values[name] : m));
}

/// A place the gateway cannot write here (a read-only mount): saving is switched off and the
/// reason shown, instead of every save failing.
export function showReadOnly(reason, button, message) {
  $(button).disabled = Boolean(reason);
  if (reason) $(message).textContent = `Read-only: ${reason}`;
}

/// The models that answer chat (not embeddings or images): what the playground, apps and llm
/// nodes offer.
export function chatModels() {
  return state.overview.models.filter((m) => m.kind === "chat");
}
