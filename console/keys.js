// The Keys tab: client keys made, rotated and revoked at runtime (the config's own listed
// read-only), and the audit trail of admin actions. A new secret is shown once, here, with a
// snippet to use it; the gateway keeps only its hash.

import {$, el, state, api} from "./lib.js";

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function labels(text) {
  const out = {};
  for (const pair of list(text)) {
    const [k, ...v] = pair.split("=");
    if (k && v.length) out[k.trim()] = v.join("=").trim();
  }
  return out;
}

function fields() {
  const num = (id) => ($(id).value.trim() ? Number($(id).value) : null);
  const body = {name: $("#key-name").value.trim()};
  const models = list($("#key-models").value);
  if (models.length) body.models = models;
  const [rpm, tpm] = [num("#key-rpm"), num("#key-tpm")];
  if (rpm !== null || tpm !== null) body.limits = {rpm, tpm};
  const [tokens, cost] = [num("#key-budget-tokens"), num("#key-budget-cost")];
  if (tokens !== null || cost !== null) body.budgets = [{tokens, cost, period: $("#key-budget-period").value}];
  const ips = list($("#key-ips").value);
  if (ips.length) body.allow_ips = ips;
  if ($("#key-expires").value) body.expires_at = Math.floor(new Date($("#key-expires").value).getTime() / 1000);
  if ($("#key-team").value.trim()) body.team = $("#key-team").value.trim();
  const l = labels($("#key-labels").value);
  if (Object.keys(l).length) body.labels = l;
  return body;
}

// The secret, once: with a snippet that uses it.
function showSecret(r) {
  const base = state.overview?.base_url || location.origin;
  const model = (r.models || []).find((m) => m !== "*") || "gpt-4o-mini";
  const snippet = `curl ${base}/v1/chat/completions -H "Authorization: Bearer ${r.key}" -H "Content-Type: application/json" -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello"}]}'`;
  $("#key-secret").replaceChildren(
    el("p", {}, el("strong", {}, `${r.name}: `), "copy it now, it is not shown again."),
    el("pre", {class: "secret"}, r.key),
    el("pre", {class: "body"}, snippet),
    el("button", {class: "quiet", onclick: () => navigator.clipboard?.writeText(r.key)}, "Copy key"));
  $("#key-secret").hidden = false;
}

async function act(method, path, body) {
  const r = await api(method, path, body);
  $("#key-message").textContent = r.ok ? "" : (r.data?.error?.message || `HTTP ${r.status}`);
  if (r.ok) await loadKeys();
  return r;
}

async function loadKeys() {
  const r = await api("GET", "/admin/keys");
  const rows = $("#keys-rows");
  if (!r.ok) return rows.replaceChildren(el("tr", {}, el("td", {colspan: 8, class: "error"}, r.data?.error?.message || "No keys.")));
  const when = (s) => (s ? new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ") : "–");
  rows.replaceChildren(...r.data.data.map((k) => {
    const actions = k.read_only || k.revoked_at ? [] : [
      el("button", {class: "quiet", onclick: async () => {
        const grace = Number(prompt("Keep the old secret working for how many seconds?", "3600") || 0);
        const done = await act("POST", `/admin/keys/${encodeURIComponent(k.name)}/rotate`, {grace_seconds: grace});
        if (done.ok) showSecret(done.data);
      }}, "Rotate"),
      el("button", {class: "quiet danger", onclick: () => act("DELETE", `/admin/keys/${encodeURIComponent(k.name)}`)}, "Revoke")];
    const limits = [k.limits?.rpm && `${k.limits.rpm} rpm`, k.limits?.tpm && `${k.limits.tpm} tpm`].filter(Boolean).join(", ");
    const budget = (k.budgets || []).map((b) => [b.tokens && `${b.tokens} tokens`, b.cost && `$${b.cost}`].filter(Boolean).join(" + ") + ` / ${b.period}`).join(", ");
    return el("tr", {"data-key": k.name, class: k.revoked_at ? "revoked" : ""},
      el("td", {}, k.name), el("td", {}, k.read_only ? "config (read-only)" : "runtime"),
      el("td", {}, k.prefix ? `${k.prefix}…` : ""), el("td", {}, (k.models || []).join(", ")),
      el("td", {}, [limits, budget].filter(Boolean).join(" · ")),
      el("td", {}, [k.team && `team ${k.team}`, ...Object.entries(k.labels || {}).map(([a, b]) => `${a}=${b}`)].filter(Boolean).join(", ")),
      el("td", {class: "status"}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : k.expires_at ? `until ${when(k.expires_at)}` : "active"),
      el("td", {}, ...actions));
  }));
  loadAudit();
}

async function loadAudit() {
  const r = await api("GET", "/admin/audit");
  const rows = $("#audit-rows");
  if (!r.ok) return rows.replaceChildren(el("tr", {}, el("td", {colspan: 5, class: "error"}, r.data?.error?.message || "No audit trail.")));
  rows.replaceChildren(...r.data.data.slice(0, 100).map((e) => el("tr", {},
    el("td", {}, new Date(e.time_ms).toLocaleString()), el("td", {}, e.actor), el("td", {}, e.ip ?? ""),
    el("td", {}, e.action), el("td", {}, e.target ?? ""))));
}

export function initKeys() {
  $("#key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await act("POST", "/admin/keys", fields());
    if (r.ok) {
      showSecret(r.data);
      $("#key-form").reset();
    }
  });
  document.querySelector("header [data-tab=keys]").addEventListener("click", loadKeys);
}
