// Forms built from a JSON schema (a block type's fields, a deployment's parameters, the
// input a paused run waits for), the way Prefect's UI builds them: typed fields, defaults,
// enums, nested objects, arrays, nested blocks chosen from saved ones, secrets entered but
// never shown back. The raw JSON stays one click away. Values are checked by the API, which
// validates them as Prefect does; the form only turns fields into JSON.
//
// <div data-schema='{...}' data-value='{...}' data-blocks='{"slug": [["id", "name"]]}'
//      data-secrets='["password", "creds.*"]'></div>
// gets `el.schemaValue()`, which returns the value or throws an Error a person can read.
"use strict";

(function () {
  const OBFUSCATED = "**********";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }

  // `$ref`s into `definitions` / `$defs`, and pydantic's `allOf: [{$ref}]` wrapping.
  function resolve(schema, root, seen) {
    seen = seen || 0;
    if (!schema || typeof schema !== "object" || seen > 20) return schema || {};
    if (typeof schema.$ref === "string" && schema.$ref.startsWith("#/")) {
      let target = root;
      for (const part of schema.$ref.slice(2).split("/")) target = target && target[part];
      const { $ref, ...rest } = schema;
      return resolve({ ...(target || {}), ...rest }, root, seen + 1);
    }
    if (Array.isArray(schema.allOf) && schema.allOf.length === 1) {
      const { allOf, ...rest } = schema;
      return resolve({ ...resolve(allOf[0], root, seen + 1), ...rest }, root, seen + 1);
    }
    return schema;
  }

  // One option of an `anyOf`/`oneOf` when the rest only allow null: the field is optional.
  function nonNull(schema, root) {
    const options = schema.anyOf || schema.oneOf;
    if (!Array.isArray(options)) return null;
    const real = options.map((o) => resolve(o, root)).filter((o) => o.type !== "null");
    return real.length === 1 ? { ...real[0], title: schema.title || real[0].title, default: schema.default, description: schema.description || real[0].description } : null;
  }

  function typeOf(schema) {
    if (Array.isArray(schema.type)) return schema.type.find((t) => t !== "null");
    if (schema.type) return schema.type;
    if (schema.properties) return "object";
    return undefined;
  }

  function isSecretPath(path, secrets) {
    const dotted = path.join(".");
    return secrets.some((s) => s === dotted || (s.endsWith(".*") && dotted.startsWith(s.slice(0, -1))));
  }

  // A field: its element and a `get()` that returns the value, or undefined to leave it out.
  // "image_pull_policy" → "Image Pull Policy": a field's own name beats the title of the
  // model it refers to ("DockerRegistry").
  function titled(key) {
    return key.replace(/_/g, " ").replace(/\b\w/g, (c) => c.toUpperCase());
  }

  function field(schema, value, ctx, path, required) {
    const own = schema || {};
    schema = resolve(schema, ctx.root);
    schema = nonNull(schema, ctx.root) || schema;
    const key = path[path.length - 1];
    const label = own.title || (key && !/^\d+$/.test(key) ? titled(key) : schema.title) || "Value";
    const description = own.description || (schema.block_type_slug ? "" : schema.description);
    const help = description ? el("small", { class: "muted", text: description }) : null;
    const start = value !== undefined ? value : schema.default;
    const name = path.join(".");

    if (schema.block_type_slug) return blockField(schema, value, ctx, label, help, required, name);
    if (Array.isArray(schema.enum)) return enumField(schema, start, label, help, required, name);
    const type = typeOf(schema);
    if (type === "object" && schema.properties) return objectField(schema, start, ctx, path, label, help, required);
    if (type === "array" && schema.items && !Array.isArray(schema.items)) return arrayField(schema, start, ctx, path, label, help);
    if (type === "boolean" && !required && start == null) {
      // Optional with no default: unset, true or false.
      return enumField({ enum: [true, false] }, undefined, label, help, false, name);
    }
    if (type === "boolean") {
      const box = el("input", { type: "checkbox", "data-field": name });
      box.checked = start === true;
      return { node: el("label", { class: "check" }, [box, el("span", { text: label }), help]), get: () => box.checked };
    }
    if (type === "integer" || type === "number") {
      const input = el("input", { type: "number", step: type === "integer" ? "1" : "any", "data-field": name, required });
      if (typeof start === "number") input.value = String(start);
      return {
        node: el("label", {}, [el("span", { text: label + (required ? " *" : "") }), input, help]),
        get: () => {
          if (input.value.trim() === "") return undefined;
          const n = Number(input.value);
          if (!Number.isFinite(n)) throw new Error(label + ": not a number");
          return n;
        },
      };
    }
    if (type === "string") {
      const secret = schema.writeOnly || schema.format === "password" || isSecretPath(path, ctx.secrets);
      const long = !secret && (schema.format === "multiline" || (typeof start === "string" && start.includes("\n")));
      const input = long
        ? el("textarea", { rows: "4", "data-field": name, required })
        : el("input", { type: secret ? "password" : "text", "data-field": name, required, autocomplete: secret ? "new-password" : "off" });
      if (typeof start === "string") input.value = start;
      if (secret && start === OBFUSCATED) input.placeholder = "unchanged";
      return {
        node: el("label", {}, [el("span", { text: label + (required ? " *" : "") }), input, help]),
        get: () => (input.value === "" && !required ? undefined : input.value),
      };
    }
    return jsonField(start, label, help, required, name);
  }

  function enumField(schema, start, label, help, required, name) {
    const select = el("select", { "data-field": name });
    if (!required || start === undefined) select.appendChild(el("option", { value: "", text: "—" }));
    schema.enum.forEach((v, i) => {
      const opt = el("option", { value: String(i), text: String(v) });
      if (v === start) opt.selected = true;
      select.appendChild(opt);
    });
    return {
      node: el("label", {}, [el("span", { text: label + (required ? " *" : "") }), select, help]),
      get: () => (select.value === "" ? undefined : schema.enum[Number(select.value)]),
    };
  }

  // A nested block is chosen from the saved documents of its type, and stored as a reference.
  // `start` is the stored value only (a default is no block).
  function blockField(schema, start, ctx, label, help, required, name) {
    const saved = ctx.blocks[schema.block_type_slug] || [];
    const current = start && start.$ref && start.$ref.block_document_id;
    const select = el("select", { "data-field": name, "data-block-type": schema.block_type_slug });
    select.appendChild(el("option", { value: "", text: saved.length ? "—" : "no saved " + schema.block_type_slug + " block" }));
    for (const [id, docName] of saved) {
      const opt = el("option", { value: id, text: docName });
      if (id === current) opt.selected = true;
      select.appendChild(opt);
    }
    // A nested block that is not one of the saved named ones (an unnamed document, or its
    // values written inline, as the Prefect client saves a block it was given unsaved) stays
    // chosen as it is, or saving would drop it. Its secrets come back obfuscated, and the
    // server keeps their stored values.
    const INLINE = "\u0000inline";
    if (current && !saved.some(([id]) => id === current)) {
      select.appendChild(el("option", { value: current, text: "the current one (unnamed)", selected: true }));
    } else if (!current && start && typeof start === "object") {
      select.appendChild(el("option", { value: INLINE, text: "the current one (set here)", selected: true }));
    }
    return {
      node: el("label", {}, [el("span", { text: label + (required ? " *" : "") + " (block)" }), select, help]),
      get: () => {
        if (select.value === INLINE) return start;
        return select.value ? { $ref: { block_document_id: select.value } } : undefined;
      },
    };
  }

  function objectField(schema, start, ctx, path, label, help, isRequired) {
    const required = new Set(schema.required || []);
    const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
    const given = start && typeof start === "object" && !Array.isArray(start);
    const values = given ? start : {};
    const props = Object.entries(schema.properties)
      .sort(([, a], [, b]) => (a.position ?? 0) - (b.position ?? 0));
    const fields = props.map(([key, sub]) => [key, field(sub, values[key], ctx, path.concat(key), required.has(key))]);
    const nodes = fields.map(([, f]) => f.node);
    const node = path.length ? el("fieldset", {}, [el("legend", { text: label }), help, ...nodes]) : el("div", { class: "schema-fields" }, nodes);
    let touched = false;
    node.addEventListener("input", () => { touched = true; });
    node.addEventListener("change", () => { touched = true; });
    return {
      node,
      get: () => {
        // Keys the schema does not name are kept as they were, not dropped on save.
        const out = {};
        const put = (key, v) => Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        for (const [key, v] of Object.entries(values)) if (!own(schema.properties, key)) put(key, v);
        for (const [key, f] of fields) {
          const v = f.get();
          if (v !== undefined) put(key, v);
        }
        // An optional nested object that was unset stays unset unless someone filled it in
        // (its fields' defaults alone do not set it).
        if (path.length && !given && !isRequired && !touched) return undefined;
        return out;
      },
    };
  }

  function arrayField(schema, start, ctx, path, label, help) {
    const list = el("div", { class: "schema-array" });
    const items = [];
    const add = (value) => {
      const f = field(schema.items, value, ctx, path.concat(String(items.length)), true);
      const remove = el("button", { type: "button", class: "small ghost", text: "Remove" });
      const row = el("div", { class: "schema-item" }, [f.node, remove]);
      const entry = { f, row };
      remove.addEventListener("click", () => {
        items.splice(items.indexOf(entry), 1);
        row.remove();
      });
      items.push(entry);
      list.appendChild(row);
    };
    (Array.isArray(start) ? start : []).forEach(add);
    const more = el("button", { type: "button", class: "small", text: "Add " + (resolve(schema.items, ctx.root).title || "item") });
    more.addEventListener("click", () => add(undefined));
    return {
      node: el("fieldset", {}, [el("legend", { text: label }), help, list, more]),
      get: () => {
        const list = items.map((e) => e.f.get()).filter((v) => v !== undefined);
        // A list that was unset and stays empty stays unset.
        return list.length === 0 && !Array.isArray(start) ? undefined : list;
      },
    };
  }

  // Anything the form cannot type (free dicts, unions, `Any`) is edited as JSON.
  function jsonField(start, label, help, required, name) {
    const area = el("textarea", { rows: "3", spellcheck: "false", "data-field": name, "data-json": "" });
    if (start !== undefined) area.value = JSON.stringify(start, null, 2);
    return {
      node: el("label", {}, [el("span", { text: label + (required ? " *" : "") + " (JSON)" }), area, help]),
      get: () => {
        if (area.value.trim() === "") return undefined;
        try { return JSON.parse(area.value); } catch (_) { throw new Error(label + ": not valid JSON"); }
      },
    };
  }

  function parse(text, fallback) {
    if (!text) return fallback;
    try { return JSON.parse(text); } catch (_) { return fallback; }
  }

  // Builds the form in `host`, with a raw-JSON editor beside it that takes over while open.
  function mount(host) {
    const schema = parse(host.dataset.schema, {});
    const ctx = { root: schema, blocks: parse(host.dataset.blocks, {}), secrets: parse(host.dataset.secrets, []) };
    let value = parse(host.dataset.value, undefined);
    host.textContent = "";
    const fieldsHost = el("div", {});
    const raw = el("textarea", { rows: "8", spellcheck: "false", class: "raw-json", id: host.dataset.rawId || undefined });
    const details = el("details", { class: "raw" }, [el("summary", { text: "Edit as JSON" }), raw]);
    host.append(fieldsHost, details);
    let form;
    const build = () => {
      const root = resolve(schema, schema);
      const typed = root.properties && Object.keys(root.properties).length > 0;
      form = typed ? objectField(root, value, ctx, [], "", null) : jsonField(value, "Values", null, false, "value");
      fieldsHost.textContent = "";
      fieldsHost.appendChild(form.node);
    };
    build();
    raw.value = JSON.stringify(form.get() ?? {}, null, 2);
    details.addEventListener("toggle", () => {
      // Hidden fields cannot be checked by the browser: the JSON goes to the API as it is.
      const owner = host.closest("form");
      if (owner) owner.noValidate = details.open;
      try {
        if (details.open) {
          raw.value = JSON.stringify(form.get() ?? {}, null, 2);
          fieldsHost.hidden = true;
        } else {
          value = JSON.parse(raw.value || "{}");
          build();
          fieldsHost.hidden = false;
        }
      } catch (err) {
        details.open = true;
        window.dispatchEvent(new CustomEvent("stratus-notice", { detail: err.message }));
      }
    });
    host.schemaValue = () => {
      if (details.open) {
        const text = raw.value.trim();
        try { return text ? JSON.parse(text) : {}; } catch (_) { throw new Error("The JSON is not valid."); }
      }
      return form.get() ?? {};
    };
  }

  window.StratusSchemaForm = { mount };
  document.addEventListener("DOMContentLoaded", () => {
    for (const host of document.querySelectorAll("[data-schema]")) mount(host);
  });
})();
