// The facedb API reference: reads /openapi.json (same origin) and lists every route with its
// parameters, request body, answers and errors. Plain JavaScript, nothing fetched from elsewhere.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(schema.items)}`;
  if (schema.format === "binary") return "file";
  let t = schema.type || "object";
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`>= ${schema.minimum}`);
  if (schema.maximum !== undefined) bounds.push(`<= ${schema.maximum}`);
  if (bounds.length) t += ` (${bounds.join(", ")})`;
  return t;
}

function fieldTable(rows) {
  const table = el("table", {}, el("tr", {}, el("th", { text: "name" }), el("th", { text: "type" }),
    el("th", { text: "required" }), el("th", { text: "description" })));
  for (const r of rows) {
    const def = r.schema && r.schema.default !== undefined ? ` (default ${JSON.stringify(r.schema.default)})` : "";
    table.append(el("tr", {}, el("td", {}, el("code", { text: r.name })), el("td", { text: typeOf(r.schema) }),
      el("td", { text: r.required ? "yes" : "" }), el("td", { text: (r.description || "") + def })));
  }
  return table;
}

function bodyOf(op) {
  const content = (op.requestBody || {}).content || {};
  const out = [];
  for (const [type, media] of Object.entries(content)) {
    const schema = media.schema || {};
    const required = new Set(schema.required || []);
    out.push(el("p", {}, "Body: ", el("code", { text: type })));
    out.push(fieldTable(Object.entries(schema.properties || {}).map(([name, s]) => (
      { name, schema: s, required: required.has(name), description: s.description }))));
  }
  return out;
}

function operation(path, method, op) {
  const id = `${method}-${path}`.replace(/[^a-z0-9]+/gi, "-");
  const secured = (op.security || []).length > 0;
  const box = el("section", { class: "op", id },
    el("h3", {}, el("span", { class: `method ${method}`, text: method }), el("code", { text: path })),
    el("p", { class: "scope", text: secured ? "Needs an API key (Authorization: Bearer), or the home's unix socket."
      : "No key needed." }),
    el("p", { text: op.description || op.summary || "" }));
  const params = op.parameters || [];
  if (params.length) {
    box.append(el("p", { text: "Parameters:" }), fieldTable(params.map((p) => (
      { name: `${p.name} (${p.in})`, schema: p.schema, required: p.required, description: p.description }))));
  }
  box.append(...bodyOf(op));
  const answers = el("table", {}, el("tr", {}, el("th", { text: "status" }), el("th", { text: "body" }),
    el("th", { text: "meaning" })));
  for (const [status, res] of Object.entries(op.responses || {})) {
    const media = Object.entries(res.content || {}).map(([type, m]) => `${typeOf(m.schema) || type}`).join(", ");
    answers.append(el("tr", {}, el("td", { text: status }), el("td", { text: media }),
      el("td", { text: res.description || "" })));
  }
  box.append(el("p", { text: "Answers:" }), answers);
  return [id, box];
}

async function main() {
  const res = await fetch("/openapi.json", { cache: "no-store", credentials: "omit" });
  const spec = await res.json();
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description || "";
  const routes = document.getElementById("routes");
  const toc = el("ul");
  routes.replaceChildren();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const [id, box] = operation(path, method, op);
      toc.append(el("li", {}, el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`)));
      routes.append(box);
    }
  }
  document.getElementById("toc").append(toc);
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
    schemas.append(el("details", { id: `schema-${name}` }, el("summary", {}, el("code", { text: name })),
      el("pre", { text: JSON.stringify(schema, null, 2) })));
  }
}

main().catch((err) => {
  document.getElementById("routes").textContent = `Could not read /openapi.json: ${err}`;
});
