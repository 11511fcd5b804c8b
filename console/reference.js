// The API tab: the gateway's OpenAPI document (/openapi.json, made for the config in force),
// rendered here: each operation with its parameters, request body and answers, schemas
// resolved from the document's components. Nothing is fetched from elsewhere; every text
// goes in as text (app and workflow descriptions come from files).

import {$, el, api} from "./lib.js";

let doc = null;

function resolve(schema) {
  let name = null;
  for (let depth = 0; schema && schema.$ref && depth < 10; depth++) {
    name = schema.$ref.split("/").pop();
    schema = doc.components?.schemas?.[name];
  }
  return [schema || {}, name];
}

function typeOf(schema) {
  const [s, name] = resolve(schema);
  if (name) return name;
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.anyOf || s.oneOf) return (s.anyOf || s.oneOf).map(typeOf).join(" | ");
  const t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
  if (t.includes("array") && s.items) return `${typeOf(s.items)}[]`;
  return t;
}

// An object schema's fields, a level or three deep.
function fieldsOf(schema, depth = 0) {
  const [s] = resolve(schema);
  const props = s.properties || {};
  if (!Object.keys(props).length || depth > 2) return null;
  const required = new Set(s.required || []);
  return el("ul", {class: "schema"}, Object.entries(props).map(([k, v]) => {
    const [inner] = resolve(v.items || v);
    const limits = ["minimum", "maximum", "minItems", "maxItems", "maxLength"]
      .filter((x) => v[x] !== undefined).map((x) => `${x} ${v[x]}`).join(", ");
    return el("li", {},
      el("code", {}, k), required.has(k) ? el("span", {class: "required"}, " required") : null,
      " ", el("span", {class: "type"}, typeOf(v)), limits ? ` (${limits})` : null,
      v.description || inner.description ? el("div", {class: "muted"}, v.description || inner.description) : null,
      inner.properties ? fieldsOf(v.items || v, depth + 1) : null);
  }));
}

function operation(path, method, op, item) {
  const params = [...(item.parameters || []), ...(op.parameters || [])];
  const body = op.requestBody?.content?.["application/json"]?.schema;
  const server = (item.servers || op.servers)?.[0]?.url;
  return el("details", {class: "card operation", "data-path": path},
    el("summary", {}, el("span", {class: `method ${method}`}, method.toUpperCase()), " ", el("code", {}, path), " ", el("span", {class: "muted"}, op.summary || "")),
    server ? el("p", {class: "muted"}, `On ${server}`) : null,
    params.length ? el("div", {}, el("h3", {}, "Parameters"), el("ul", {class: "schema"}, params.map((p) =>
      el("li", {}, el("code", {}, p.name), ` in ${p.in}`, p.required ? el("span", {class: "required"}, " required") : null, " ", el("span", {class: "type"}, typeOf(p.schema || {})),
        p.description ? el("div", {class: "muted"}, p.description) : null)))) : null,
    body ? el("div", {}, el("h3", {}, "Request body ", el("span", {class: "type"}, typeOf(body))), fieldsOf(body)) : null,
    el("h3", {}, "Answers"),
    el("ul", {class: "schema"}, Object.entries(op.responses || {}).map(([status, r]) =>
      el("li", {}, el("code", {}, status), " ", r.description || "", " ",
        Object.entries(r.content || {}).map(([type, c]) => el("span", {class: "type"}, ` ${type}: ${typeOf(c.schema || {})}`))))));
}

function render() {
  const filter = $("#api-filter").value.trim().toLowerCase();
  const out = [];
  for (const tag of doc.tags || []) {
    const ops = [];
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        const op = item[method];
        if (!op || !(op.tags || []).includes(tag.name)) continue;
        if (filter && !`${method} ${path} ${op.summary || ""}`.toLowerCase().includes(filter)) continue;
        ops.push(operation(path, method, op, item));
      }
    }
    if (ops.length) out.push(el("h2", {}, tag.name, " ", el("span", {class: "muted"}, tag.description || "")), ...ops);
  }
  $("#api-operations").replaceChildren(...out);
}

async function loadReference() {
  const r = await api("GET", "/openapi.json");
  if (!r.ok) return $("#api-operations").replaceChildren(el("p", {class: "error"}, r.data?.error?.message || `HTTP ${r.status}`));
  doc = r.data;
  $("#api-title").textContent = `${doc.info.title} ${doc.info.version} · OpenAPI ${doc.openapi}`;
  const blob = new Blob([JSON.stringify(doc, null, 2)], {type: "application/json"});
  $("#api-download").href = URL.createObjectURL(blob);
  render();
}

export function initReference() {
  $("#api-filter").addEventListener("input", () => doc && render());
  document.querySelector("header [data-tab=api]").addEventListener("click", loadReference);
}
