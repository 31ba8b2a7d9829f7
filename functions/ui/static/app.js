// Stratus UI: buttons and forms that call the JSON API, the live tail of an active run,
// and live regions (lists and counts) kept up to date in place.
"use strict";

function notice(text, ok) {
  const el = document.getElementById("notice");
  if (!el) return;
  el.textContent = text;
  el.className = ok ? "notice ok" : "notice";
  el.hidden = false;
}

// A signed-in page carries its session's CSRF token; every change sends it back.
function csrfToken() {
  const meta = document.querySelector("meta[name=csrf-token]");
  return meta ? meta.content : "";
}

// The API of the workspace the page shows (`/api/accounts/{a}/workspaces/{w}`).
function apiUrl(url) {
  const meta = document.querySelector("meta[name=api-base]");
  return meta && url.startsWith("/api/") ? meta.content + url.slice(4) : url;
}

async function call(spec, body) {
  const [method, path] = spec.split(" ");
  const url = apiUrl(path);
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!res.ok) {
    const detail = data && (data.detail || data.exception_message) || res.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

function formBody(form) {
  if (form.id === "run-form") {
    const raw = form.querySelector("textarea[name=parameters]").value.trim();
    let parameters = {};
    if (raw) {
      parameters = JSON.parse(raw);
      if (typeof parameters !== "object" || Array.isArray(parameters) || parameters === null) {
        throw new Error("Parameters must be a JSON object.");
      }
    }
    return { parameters };
  }
  const body = {};
  const lists = (form.dataset.lists || "").split(" ").filter(Boolean);
  const data = new FormData(form);
  for (const [k, v] of data.entries()) {
    if (v === "" || lists.includes(k)) continue;
    body[k] = form.elements[k].type === "number" ? Number(v) : v;
  }
  // List fields: every selected option, or comma-separated text; [] when empty.
  for (const k of lists) {
    body[k] = data.getAll(k).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
  }
  return body;
}

function after(then, data) {
  if (then === "open-run" && data && data.id) location.href = "/flow-runs/" + data.id;
  else if (then === "open-pool" && data && data.name) location.href = "/work-pools/" + encodeURIComponent(data.name);
  else location.reload();
}

document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button[data-api]");
  if (!btn) return;
  if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
  btn.disabled = true;
  try {
    const result = await call(btn.dataset.api, btn.dataset.body ? JSON.parse(btn.dataset.body) : undefined);
    if (result && result.status && result.status !== "ACCEPT") {
      const why = result.details && result.details.reason;
      notice("Not done: " + (why || result.status));
      btn.disabled = false;
      return;
    }
    after(btn.dataset.then, result);
  } catch (err) {
    notice(err.message);
    btn.disabled = false;
  }
});

document.addEventListener("submit", async (e) => {
  const form = e.target.closest("form[data-api]");
  if (!form) return;
  e.preventDefault();
  const submit = form.querySelector("button[type=submit]");
  if (submit) submit.disabled = true;
  try {
    after(form.dataset.then, await call(form.dataset.api, formBody(form)));
  } catch (err) {
    notice(err.message);
    if (submit) submit.disabled = false;
  }
});

// Live tail: new logs and the state badge, every 2 s while the run is active.
const LEVELS = [[50, "CRITICAL"], [40, "ERROR"], [30, "WARNING"], [20, "INFO"], [0, "DEBUG"]];
function levelName(n) { return LEVELS.find(([l]) => n >= l)[1]; }

async function tail() {
  const badge = document.getElementById("run-state");
  const logs = document.getElementById("logs");
  if (!badge || !logs || badge.dataset.active !== "true") return;
  const id = badge.dataset.runId;
  const tick = async () => {
    try {
      const filter = { flow_run_id: { any_: [id] }, level: { ge_: Number(logs.dataset.level || 0) } };
      if (logs.dataset.after) filter.timestamp = { after_: logs.dataset.after };
      const rows = await call("POST /api/logs/filter", { logs: filter, sort: "TIMESTAMP_ASC", limit: 200 });
      const body = logs.tBodies[0];
      for (const l of rows) {
        if (logs.dataset.after && l.timestamp <= logs.dataset.after) continue;
        const tr = body.insertRow();
        const name = levelName(l.level);
        tr.className = "log-" + name.toLowerCase();
        const cells = [l.timestamp.slice(11, 23), name, l.name, l.message];
        cells.forEach((text, i) => {
          const td = tr.insertCell();
          td.textContent = text;
          td.className = ["nowrap muted", "nowrap", "muted", "msg"][i];
        });
        logs.dataset.after = l.timestamp;
        const none = document.getElementById("no-logs");
        if (none) none.remove();
      }
      const run = await call("GET /api/flow_runs/" + id);
      if (run.state && run.state.name !== badge.textContent) {
        // The state moved on: reload to show its timeline, tasks and buttons.
        location.reload();
        return;
      }
    } catch (_) { /* try again next tick */ }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}
document.addEventListener("DOMContentLoaded", tail);

// Live regions: every 5 s while the tab is visible, the page is fetched again and each
// element marked data-live is brought up to date, unless the user is working in it.
function live() {
  if (!document.querySelector("[data-live][id]")) return;
  const tick = async () => {
    if (!document.hidden) {
      try {
        const res = await fetch(location.href, { headers: { accept: "text/html" } });
        if (res.ok) {
          const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
          for (const el of document.querySelectorAll("[data-live][id]")) {
            const next = fresh.getElementById(el.id);
            if (next && next.innerHTML !== el.innerHTML && !el.contains(document.activeElement)) {
              el.innerHTML = next.innerHTML;
            }
          }
        }
      } catch (_) { /* try again next tick */ }
    }
    setTimeout(tick, 5000);
  };
  setTimeout(tick, 5000);
}
document.addEventListener("DOMContentLoaded", live);

// Filters that apply as soon as they change (no inline handlers: the pages' CSP forbids them).
document.addEventListener("change", (e) => {
  const el = e.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) {
    el.form.submit();
  }
});
