// The opstatus dashboard: plain JavaScript, no build step, no third-party code.
//
// The API key lives in sessionStorage (this tab only, gone when it closes) and is sent
// as X-API-Key; it never goes into the URL. EventSource cannot send headers, so live
// updates read text/event-stream with fetch() and resume with Last-Event-ID.
"use strict";

const KEY = "opstatus.key";
const STATES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
const PAGE = 100; // operations shown in the list
const COUNT_PAGE = 1000; // operations counted per state (the API's largest page)
const REFRESH_DELAY = 200; // ms: events arriving together cause one refresh
const base = new URL("..", document.baseURI); // the service root (/ui/ → /)

const $ = (id) => document.getElementById(id);
let view = null; // {stop()} of the page on screen

class Unauthorized extends Error {}

// -- the API ------------------------------------------------------------------------

function headers(extra) {
  return { "X-API-Key": sessionStorage.getItem(KEY) || "", ...extra };
}

async function api(path, params) {
  const url = new URL(path.replace(/^\//, ""), base);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  const response = await fetch(url, { headers: headers({ Accept: "application/json" }) });
  if (response.status === 401) throw new Unauthorized("the key was not accepted");
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (_) { /* not a problem document */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.json();
}

// Read an SSE stream until `signal` aborts; reconnect with Last-Event-ID.
async function stream(path, { after, onEvent, onState, signal }) {
  let lastId = after === undefined || after === null ? "" : String(after);
  let retry = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(new URL(path.replace(/^\//, ""), base), {
        headers: headers({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) }),
        signal,
        cache: "no-store",
      });
      if (response.status === 401) throw new Unauthorized("the key was not accepted");
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      onState(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { id: null, type: "message", data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop(); // an incomplete line waits for the next chunk
        for (const line of lines) {
          if (line === "") { // a blank line dispatches the event
            // `end`: the operation is final and the server closes; do not reconnect
            if (event.type === "end") { reader.cancel(); return; }
            if (event.id !== null) lastId = event.id;
            if (event.data.length) onEvent(event.type, event.data.join("\n"));
            event = { id: null, type: "message", data: [] };
            continue;
          }
          if (line.startsWith(":")) continue; // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "id") event.id = value;
          else if (field === "event") event.type = value;
          else if (field === "data") event.data.push(value);
          else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized) { signOut(error.message); return; }
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

// The tenant's newest event seq: the list only needs what happens from now on.
async function tailSeq() {
  const after = async (seq) => (await api("/v1/events", { after: seq, limit: 1 })).items.length > 0;
  let low = 0; // no event is known past `low`... until one is found past it
  let high = 1;
  while (await after(high)) { low = high; high *= 2; }
  if (!(await after(low))) return low;
  while (high - low > 1) { // an event exists after low, none after high
    const middle = Math.floor((low + high) / 2);
    if (await after(middle)) low = middle; else high = middle;
  }
  return high;
}

// -- helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const badge = (state) => el("span", { class: `state state-${state}` }, state);

// `outcome` (operations only) colours a finished bar: progress is how far the work
// is, so a failed operation's bar is full too; the colour and label say how it went.
function bar(progress, outcome) {
  const value = Math.max(0, Math.min(100, Number(progress) || 0));
  const label = outcome && outcome !== "succeeded" ? `${Math.round(value)}% ${outcome.replace("_", " ")}`
                                                   : `${Math.round(value)}%`;
  return el("div", { class: `progress${outcome ? ` outcome-${outcome}` : ""}`, role: "progressbar",
                     "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(value) },
    Object.assign(el("div", { class: "fill" }), { style: `width: ${value}%` }),
    el("span", { class: "label" }, label));
}

function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  return el("time", { datetime: text, title: text }, date.toLocaleString());
}

function clock(text) {
  return el("time", { datetime: text, title: text }, new Date(text).toLocaleTimeString());
}

function setLive(on) { $("live").hidden = false; $("live").classList.toggle("off", !on); }

function debounce(fn) {
  let timer = null;
  const run = () => { clearTimeout(timer); timer = setTimeout(fn, REFRESH_DELAY); };
  run.cancel = () => clearTimeout(timer);
  return run;
}

function show(id) {
  for (const section of ["sign-in-view", "list-view", "operation-view"]) $(section).hidden = section !== id;
}

function fail(where, error) {
  if (error instanceof Unauthorized) signOut(error.message);
  else if (error.name !== "AbortError") $(where).textContent = error.message;
}

// -- sign in / out -------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(KEY);
  route();
  $("sign-in-error").textContent = message || "";
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("sign-in-error").textContent = "";
  sessionStorage.setItem(KEY, key);
  try {
    await api("/v1/operations", { limit: 1 });
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("sign-in-error").textContent = error instanceof Unauthorized ? "That key was not accepted." : error.message;
    return;
  }
  $("api-key").value = "";
  route();
});

$("sign-out").addEventListener("click", () => signOut());

// -- the operations list -------------------------------------------------------------

const filterForm = $("filters");
for (const state of STATES) filterForm.state.append(el("option", { value: state }, state));
const filters = { state: "", kind: "", target: "" };

filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  for (const name of Object.keys(filters)) filters[name] = filterForm[name].value.trim();
  route();
});
filterForm.addEventListener("reset", () => {
  for (const name of Object.keys(filters)) filters[name] = "";
  setTimeout(route);
});

function listView() {
  const controller = new AbortController();
  const refresh = debounce(() => loadList(controller.signal));
  for (const name of Object.keys(filters)) filterForm[name].value = filters[name];
  loadList(controller.signal);
  tailSeq().then((after) => stream("/v1/events", {
    after, signal: controller.signal, onState: setLive, onEvent: refresh,
  }), (error) => fail("list-error", error));
  return { stop() { refresh.cancel(); controller.abort(); } };
}

async function loadList(signal) {
  const scope = { kind: filters.kind, target: filters.target };
  try {
    const [page, all] = await Promise.all([
      api("/v1/operations", { ...scope, state: filters.state, limit: PAGE }),
      api("/v1/operations", { ...scope, limit: COUNT_PAGE }),
    ]);
    if (signal.aborted) return;
    $("list-error").textContent = "";
    renderCounts(all);
    $("operations").replaceChildren(...page.items.map(operationRow));
    $("list-empty").hidden = page.items.length > 0;
  } catch (error) {
    fail("list-error", error);
  }
}

function renderCounts(all) {
  const counts = Object.fromEntries(STATES.map((state) => [state, 0]));
  for (const op of all.items) counts[op.state] = (counts[op.state] || 0) + 1;
  const more = all.next_cursor ? "+" : "";
  const chip = (state, n) => {
    const chosen = filters.state === state;
    const button = el("button", { type: "button", class: `count state-${state || "all"}${chosen ? " chosen" : ""}`,
                                  dataset: { state: state || "all" } },
      el("span", { class: "n" }, `${n}${more}`), ` ${state || "all"}`);
    button.addEventListener("click", () => { filters.state = chosen ? "" : state; route(); });
    return button;
  };
  $("counts").replaceChildren(chip("", all.items.length), ...STATES.map((s) => chip(s, counts[s])));
}

function operationRow(op) {
  const link = el("a", { href: `#/operations/${encodeURIComponent(op.id)}` }, String(op.number));
  const row = el("tr", { dataset: { id: op.id, state: op.state } },
    el("td", {}, link),
    el("td", { class: "kind" }, op.kind, el("div", { class: "muted id" }, op.id)),
    el("td", {}, badge(op.state)),
    el("td", {}, bar(op.progress, op.outcome)),
    el("td", { class: "targets-cell" }, op.targets.join(", ")),
    el("td", {}, when(op.created_at)),
    el("td", {}, when(op.updated_at)));
  row.addEventListener("click", (event) => { if (event.target.tagName !== "A") link.click(); });
  return row;
}

// -- one operation -------------------------------------------------------------------

function operationView(id) {
  const controller = new AbortController();
  const history = new Map(); // execution id (or "" for the operation) → events
  let operation = null;
  const render = () => { if (operation) renderOperation(operation, history); };
  const load = async () => {
    try {
      operation = await api(`/v1/operations/${encodeURIComponent(id)}`);
      if (controller.signal.aborted) return;
      $("operation-error").textContent = "";
      render();
    } catch (error) {
      fail("operation-error", error);
    }
  };
  const refresh = debounce(load);
  $("operation").replaceChildren();
  $("targets").replaceChildren();
  load().then(() => stream(`/v1/operations/${encodeURIComponent(id)}/events`, {
    after: 0, signal: controller.signal, onState: setLive,
    onEvent(_, data) {
      const event = JSON.parse(data);
      const where = event.execution_id || "";
      if (!history.has(where)) history.set(where, []);
      const seen = history.get(where);
      if (!seen.some((e) => e.seq === event.seq)) seen.push(event);
      render();
      refresh();
    },
  }));
  return { stop() { refresh.cancel(); controller.abort(); } };
}

function renderOperation(op, history) {
  const field = (name, value) => [el("dt", {}, name), el("dd", {}, value)];
  $("operation").dataset.state = op.state;
  $("operation").replaceChildren(
    el("div", { class: "title" }, el("h1", {}, `#${op.number} ${op.kind}`), badge(op.state)),
    bar(op.progress, op.outcome),
    el("dl", { class: "fields" },
      field("id", el("code", {}, op.id)),
      field("targets", op.targets.join(", ")),
      field("created", when(op.created_at)),
      field("started", when(op.started_at)),
      field("completed", when(op.completed_at)),
      op.error ? field("error", op.error) : null,
      Object.keys(op.parameters || {}).length ? field("parameters", el("code", {}, JSON.stringify(op.parameters))) : null),
    historyList(history.get("") || []));
  const cards = (op.executions || []).map((execution) => {
    const events = history.get(execution.id) || [];
    return el("article", { class: "card target", dataset: { target: execution.target, state: execution.state } },
      el("div", { class: "title" }, el("h3", {}, execution.target), badge(execution.state)),
      bar(execution.progress),
      execution.error ? el("p", { class: "error" }, execution.error) : null,
      el("p", { class: "muted" }, `attempt ${execution.attempt} · updated `, when(execution.updated_at)),
      historyList(events));
  });
  $("targets").replaceChildren(...cards);
}

function historyList(events) {
  return el("ol", { class: "history" }, events.map((event) =>
    el("li", { dataset: { seq: String(event.seq) } }, clock(event.created_at), " ",
       el("span", { class: "type" }, event.type), " ", badge(event.state),
       event.progress ? ` ${Math.round(event.progress)}%` : "")));
}

// -- routing -------------------------------------------------------------------------

function route() {
  if (view) { view.stop(); view = null; }
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  $("sign-out").hidden = !signedIn;
  $("live").hidden = true;
  if (!signedIn) { show("sign-in-view"); $("api-key").focus(); return; }
  const match = location.hash.match(/^#\/operations\/(.+)$/);
  if (match) {
    show("operation-view");
    view = operationView(decodeURIComponent(match[1]));
  } else {
    show("list-view");
    view = listView();
  }
}

window.addEventListener("hashchange", route);
route();
