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

// A form's JSON body: its named fields (numbers as numbers, `data-json` fields parsed,
// `data-nullable` fields null and `data-blank` ones "" when empty, checkboxes true or false, `data-lists` as lists),
// the value of each schema form inside it under its `data-into`, and `data-extra`.
function formBody(form) {
  const body = formFields(form);
  if (form.dataset.shape === "schedule") return scheduleBody(form, body);
  // A state set by hand is forced, as Prefect's UI forces it.
  if (form.dataset.shape === "state") return { state: { type: body.type, message: body.message || null }, force: true };
  for (const host of form.querySelectorAll("[data-schema][data-into]")) {
    const value = host.schemaValue();
    if (typeof value !== "object" || Array.isArray(value) || value === null) {
      throw new Error(host.dataset.into.replace(/_/g, " ") + " must be a JSON object.");
    }
    body[host.dataset.into] = value;
  }
  return body;
}

// The form's named fields (and `data-extra`), typed as `formBody` says.
function formFields(form) {
  const body = form.dataset.extra ? JSON.parse(form.dataset.extra) : {};
  const words = (name) => (form.dataset[name] || "").split(" ").filter(Boolean);
  const lists = words("lists"), json = words("json"), nullable = words("nullable"), blank = words("blank");
  const data = new FormData(form);
  for (const [k, v] of data.entries()) {
    const input = form.elements[k];
    if (lists.includes(k) || (input && input.type === "checkbox")) continue;
    if (v === "") {
      if (nullable.includes(k)) body[k] = null;
      else if (blank.includes(k)) body[k] = "";
      continue;
    }
    if (json.includes(k)) {
      try { body[k] = JSON.parse(v); } catch (_) { throw new Error(k.replace(/_/g, " ") + ": not valid JSON"); }
    } else {
      body[k] = input && input.type === "number" ? Number(v) : v;
    }
  }
  for (const box of form.querySelectorAll("input[type=checkbox][name]")) body[box.name] = box.checked;
  // List fields: every selected option, or comma-separated text; [] when empty.
  for (const k of lists) {
    body[k] = data.getAll(k).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
  }
  return body;
}

// A schedule form's fields as the API takes them: `{schedule, active}`, in a list to add.
function scheduleSpec(body) {
  const schedule = {};
  if (body.timezone) schedule.timezone = body.timezone;
  if (body.kind === "interval") {
    if (body.interval === undefined) throw new Error("Say how many seconds apart the runs are.");
    schedule.interval = Number(body.interval);
    if (body.anchor_date) schedule.anchor_date = body.anchor_date;
  } else if (body.kind === "rrule") {
    schedule.rrule = body.rrule || "";
  } else {
    schedule.cron = body.cron || "";
    schedule.day_or = body.day_or;
  }
  return schedule;
}

function scheduleBody(form, body) {
  const one = { schedule: scheduleSpec(body), active: body.active };
  return form.dataset.wrap === "list" ? [one] : one;
}

function showKind(form) {
  const select = form.querySelector("[data-kind-select]");
  if (!select) return;
  for (const group of form.querySelectorAll("[data-kind]")) group.hidden = group.dataset.kind !== select.value;
}

document.addEventListener("DOMContentLoaded", () => document.querySelectorAll("form.schedule-form").forEach(showKind));

// The next runs of the schedule being written, computed by the server as the scheduler will.
document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button[data-preview]");
  if (!btn) return;
  const form = btn.form;
  const list = form.querySelector(".preview");
  list.textContent = "";
  try {
    const spec = scheduleSpec(formFields(form));
    const res = await fetch("/schedule-preview?schedule=" + encodeURIComponent(JSON.stringify(spec)));
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.detail || res.statusText);
    if (!answer.times.length) list.appendChild(Object.assign(document.createElement("li"), { textContent: "It never fires." }));
    for (const t of answer.times) list.appendChild(Object.assign(document.createElement("li"), { textContent: t }));
  } catch (err) {
    notice(err.message);
  }
});

// Where a change leads: `go:/blocks/{id}` opens a page named by the answer, `back:/path`
// opens a fixed one, anything else reloads this page.
function after(then, data) {
  if (then === "open-run" && data && data.id) location.href = "/flow-runs/" + data.id;
  else if (then === "open-pool" && data && data.name) location.href = "/work-pools/" + encodeURIComponent(data.name);
  else if (then && then.startsWith("go:") && data) {
    location.href = then.slice(3).replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(data[k] ?? ""));
  } else if (then && then.startsWith("back:")) location.href = then.slice(5);
  else location.reload();
}

window.addEventListener("stratus-notice", (e) => notice(e.detail));

// An orchestration answer other than ACCEPT (a resume whose input is invalid, a state
// change refused) is said on the page.
function refused(result) {
  // Pools and queues answer with a `status` of their own (READY); only these are refusals.
  if (!result || !["REJECT", "ABORT", "WAIT"].includes(result.status)) return false;
  const why = result.details && result.details.reason;
  notice("Not done: " + (why || result.status));
  return true;
}

document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button[data-api]");
  if (!btn) return;
  if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
  btn.disabled = true;
  try {
    const result = await call(btn.dataset.api, btn.dataset.body ? JSON.parse(btn.dataset.body) : undefined);
    if (refused(result)) {
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
    const result = await call(form.dataset.api, formBody(form));
    if (refused(result)) {
      if (submit) submit.disabled = false;
      return;
    }
    after(form.dataset.then, result);
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
// element marked data-live is brought up to date, unless the user is working in it (focus
// or an open editor inside).
// What each input of a live region held when it was drawn: one that differs was typed in.
const drawn = new WeakMap();
function remember(region) {
  for (const i of region.querySelectorAll("input, textarea")) drawn.set(i, i.type === "checkbox" ? i.checked : i.value);
}

function live() {
  if (!document.querySelector("[data-live][id]")) return;
  document.querySelectorAll("[data-live][id]").forEach(remember);
  const tick = async () => {
    if (!document.hidden) {
      try {
        const res = await fetch(location.href, { headers: { accept: "text/html" } });
        if (res.ok) {
          const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
          for (const el of document.querySelectorAll("[data-live][id]")) {
            const next = fresh.getElementById(el.id);
            const edited = [...el.querySelectorAll("input, textarea")].some((i) =>
              drawn.has(i) && (i.type === "checkbox" ? i.checked : i.value) !== drawn.get(i));
            const busy = el.contains(document.activeElement) || el.querySelector("details[open]") || edited;
            if (next && next.innerHTML !== el.innerHTML && !busy) {
              el.innerHTML = next.innerHTML;
              el.querySelectorAll("form.schedule-form").forEach(showKind);
              remember(el);
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
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-kind-select") && el.form) showKind(el.form);
});
