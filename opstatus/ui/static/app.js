// The opstatus dashboard: plain JavaScript, no build step, no third-party code.
//
// The API key lives in sessionStorage (this tab only, gone when it closes) and is sent
// as X-API-Key; it never goes into the URL. EventSource cannot send headers, so live
// updates read text/event-stream with fetch() and resume with Last-Event-ID.
//
// What the page shows is in the URL's fragment (#/path?filters), so a reload, a
// bookmark or a shared link opens the same list, operation, page of targets and
// selected target. The fragment never holds the key.
"use strict";

const KEY = "opstatus.key";
const LIST = "opstatus.list"; // the list's last filters (sessionStorage; no secret)
const STATES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
const EXEC_STATES = ["scheduled", "queued", "dispatched", "acknowledged", "in_progress",
                     "succeeded", "failed", "timed_out", "cancelled"];
const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled"]);
const PAGE = 100; // operations shown in the list
const COUNT_PAGE = 1000; // operations counted per state (the API's largest page)
const TARGET_PAGE = 50; // target cards on one page of an operation
const LIST_TARGETS = 3; // target ids a list row names before "+N more"
const FIELD_TARGETS = 12; // target ids the operation's card names before "+N more"
const HISTORY = 50; // events kept per target
const CARD_HISTORY = 4; // events a card shows unless it is the selected one
const TIMELINE = 200; // newest events kept for an operation's timeline
const FLEET_PAGES = 20; // pages of 1000 events the fleet view reads at most
const REFRESH_DELAY = 200; // ms: events arriving together cause one refresh
const PAINT_DELAY = 50; // ms: events arriving together cause one repaint
const BIG = 1000; // executions from which an operation is re-read less often
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
  let response = await fetch(url, { headers: headers({ Accept: "application/json" }) });
  // The server limits requests per key; a burst of small reads waits its turn.
  for (let retries = 0; response.status === 429 && retries < 3; retries++) {
    const wait = Math.min(5, Number(response.headers.get("Retry-After")) || 1);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    response = await fetch(url, { headers: headers({ Accept: "application/json" }) });
  }
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

// The seq after which the events are at or after `cutoff` (a Date), by bisecting on "the
// first event after seq": events are numbered in commit order, so their times rise.
// `from` may be the answer for an earlier cutoff: a later one's is never before it.
async function seqSince(cutoff, tail, from) {
  const firstAfter = async (seq) => (await api("/v1/events", { after: seq, limit: 1 })).items[0];
  const old = (event) => event !== undefined && new Date(event.created_at) < cutoff;
  if (!old(await firstAfter(from))) return from;
  let low = from; // the first event after low is older than the cutoff
  let high = tail; // ... and none after high is
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (old(await firstAfter(middle))) low = middle; else high = middle;
  }
  return high;
}

// -- the URL -------------------------------------------------------------------------

// The fragment as {path, query}: "#/operations/x?page=2" → "/operations/x", page=2.
function here() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const cut = hash.indexOf("?");
  return { path: cut < 0 ? hash : hash.slice(0, cut),
           query: new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1)) };
}

// A fragment for `path` with the non-empty `params` (so defaults keep URLs short).
function href(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) query.set(name, value);
  }
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

const go = (path, params) => { location.hash = href(path, params); };
const opLink = (id, params) => href(`/operations/${encodeURIComponent(id)}`, params);

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

// replaceChildren() that skips null (replaceChildren itself would write "null") and
// leaves links that did not change in place: a repaint must not swap the node a
// pointer is clicking. For children without listeners (links, text).
function put(node, ...children) {
  const next = document.createElement(node.tagName);
  next.append(...children.filter((c) => c !== null && c !== undefined));
  if (next.innerHTML !== node.innerHTML) node.replaceChildren(...next.childNodes);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

const number = (n) => Number(n).toLocaleString("en-US");
const label = (state) => state.replace(/_/g, " ");

// The colour family of an operation or execution: its outcome when the server gives
// one (a finished operation where some targets failed is not a success), else its state.
const OUTCOME_TONE = { succeeded: "ok", partially_failed: "partial", failed: "bad", cancelled: "idle" };
const STATE_TONE = {
  scheduled: "wait", queued: "wait", dispatched: "run", acknowledged: "run", in_progress: "run",
  running: "run", succeeded: "ok", failed: "bad", timed_out: "bad", cancelled: "idle",
};
const tone = (item) => OUTCOME_TONE[item.outcome] || STATE_TONE[item.state] || "wait";

const badge = (state, hue) =>
  el("span", { class: `state state-${state} tone-${hue || STATE_TONE[state] || "wait"}` }, label(state));

function outcomeBadge(op) {
  if (!op.outcome || op.outcome === op.state) return null;
  return el("span", { class: `outcome tone-${tone(op)}`, title: "outcome" }, label(op.outcome));
}

// A progress bar. With `counts` (executions per state) it is split into one segment
// per finished or running state, so a failed rollout shows its red share, not a full bar.
function bar(progress, hue, counts) {
  const value = Math.max(0, Math.min(100, Number(progress) || 0));
  const node = el("div", { class: `progress tone-${hue}`, role: "progressbar", "aria-valuemin": "0",
                           "aria-valuemax": "100", "aria-valuenow": String(value) });
  const total = counts ? Object.values(counts).reduce((sum, n) => sum + n, 0) : 0;
  if (total > 0) {
    for (const state of ["succeeded", "failed", "timed_out", "cancelled", "in_progress", "acknowledged", "dispatched"]) {
      if (!counts[state]) continue;
      const part = el("div", { class: `fill part tone-${STATE_TONE[state]}`, title: `${number(counts[state])} ${label(state)}` });
      part.style.width = `${(100 * counts[state]) / total}%`; // CSSOM: allowed by the CSP
      node.append(part);
    }
  } else {
    const fill = el("div", { class: `fill tone-${hue}` });
    fill.style.width = `${value}%`;
    node.append(fill);
  }
  node.append(el("span", { class: "label" }, `${Math.round(value)}%`));
  return node;
}

// "20,000 queued · 3 failed": the states an operation's targets are in, biggest first.
function tally(counts, most) {
  const parts = EXEC_STATES.filter((s) => counts[s]).sort((a, b) => counts[b] - counts[a]);
  const shown = parts.slice(0, most).map((s) => `${number(counts[s])} ${label(s)}`);
  if (parts.length > most) shown.push(`+${parts.length - most}`);
  return shown.join(" · ");
}

// At most `most` target ids and "+N more": a row's height must not grow with the operation.
function targetSummary(targets, most) {
  const rest = targets.length - most;
  return el("span", { class: "summary", title: `${number(targets.length)} targets` },
    targets.slice(0, most).join(", "),
    rest > 0 ? el("span", { class: "more" }, ` +${number(rest)} more`) : null);
}

function when(text) {
  if (!text) return "—";
  return el("time", { datetime: text, title: text }, new Date(text).toLocaleString());
}

function clock(text) {
  return el("time", { datetime: text, title: text }, new Date(text).toLocaleTimeString());
}

function seconds(s) {
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function setLive(on) { $("live").hidden = false; $("live").classList.toggle("off", !on); }

function debounce(fn, delay) {
  let timer = null;
  const run = () => { clearTimeout(timer); timer = setTimeout(fn, delay || REFRESH_DELAY); };
  run.cancel = () => clearTimeout(timer);
  return run;
}

// Run `fn` soon after a call, one run at a time and at most once per `gap()` ms: a
// busy stream of events must not turn into a read per event.
function throttle(fn, gap) {
  let timer = null;
  let last = 0;
  let running = false;
  let again = false;
  const fire = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try { await fn(); } finally {
      running = false;
      if (again) { again = false; run(); }
    }
  };
  const run = () => {
    if (timer === null) timer = setTimeout(fire, Math.max(REFRESH_DELAY, last + gap() - Date.now()));
  };
  run.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return run;
}

// A view that shows `query` now and re-reads (throttled) on each of the tenant's
// events from now on (`onEvent`, when given, sees them first); its errors go to the
// element `where`.
function tenantView({ controller, refresh, onEvent, update, query, where }) {
  update(query);
  tailSeq().then((after) => stream("/v1/events", {
    after, signal: controller.signal, onState: setLive, onEvent: onEvent || refresh,
  }), (error) => fail(where, error));
  return { update, stop() { refresh.cancel(); controller.abort(); } };
}

const VIEWS = ["sign-in-view", "list-view", "operation-view", "fleet-view"];
function show(id) {
  for (const section of VIEWS) $(section).hidden = section !== id;
  for (const tab of document.querySelectorAll("#nav a")) {
    const current = `${tab.dataset.view}-view` === id;
    tab.classList.toggle("current", current);
    if (current) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
}

function fail(where, error) {
  if (error instanceof Unauthorized) signOut(error.message);
  else if (error.name !== "AbortError") $(where).textContent = error.message;
}

// Chips "N state" that filter by state when clicked; `chosen` is the current filter.
function chips(into, counts, { states, chosen, more, link, total }) {
  const chip = (state, n) => el("a", {
    class: `count tone-${STATE_TONE[state] || "all"}${chosen === state ? " chosen" : ""}`,
    href: link(chosen === state ? "" : state), dataset: { state: state || "all" },
    "aria-current": chosen === state ? "true" : null,
  }, el("span", { class: "n" }, `${number(n)}${more ? "+" : ""}`), ` ${state ? label(state) : "all"}`);
  put($(into), chip("", total), ...states.map((s) => chip(s, counts[s] || 0)));
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

const FILTERS = ["state", "kind", "target"];
const filterForm = $("filters");
for (const state of STATES) filterForm.state.append(el("option", { value: state }, state));

filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  go("/", Object.fromEntries(FILTERS.map((name) => [name, filterForm[name].value.trim()])));
});
filterForm.addEventListener("reset", () => setTimeout(() => go("/", {})));

function listView(query) {
  const controller = new AbortController();
  let filters = {};
  let cursor = "";
  const refresh = throttle(() => loadList(filters, cursor, controller.signal), () => 1000);
  const update = (next) => {
    filters = Object.fromEntries(FILTERS.map((name) => [name, next.get(name) || ""]));
    cursor = next.get("cursor") || "";
    for (const name of FILTERS) filterForm[name].value = filters[name];
    // "← Operations" on an operation's page returns to this list, filters and all
    sessionStorage.setItem(LIST, JSON.stringify(Object.fromEntries(next)));
    refresh();
  };
  return tenantView({ controller, refresh, update, query, where: "list-error" });
}

let rows = new Map(); // operation id → {version, row} on screen

async function loadList(filters, cursor, signal) {
  const scope = { kind: filters.kind, target: filters.target };
  try {
    const [page, all] = await Promise.all([
      api("/v1/operations", { ...scope, state: filters.state, limit: PAGE, cursor }),
      api("/v1/operations", { ...scope, limit: COUNT_PAGE }),
    ]);
    if (signal.aborted) return;
    $("list-error").textContent = "";
    const counts = {};
    for (const op of all.items) counts[op.state] = (counts[op.state] || 0) + 1;
    chips("counts", counts, { states: STATES, chosen: filters.state, more: Boolean(all.next_cursor),
                              total: all.items.length, link: (state) => href("/", { ...filters, state }) });
    // an unchanged operation keeps its row (and the pointer on it) across refreshes
    const known = rows;
    rows = new Map(page.items.map((op) => {
      const kept = known.get(op.id);
      return [op.id, kept && kept.version === op.version ? kept : { version: op.version, row: operationRow(op) }];
    }));
    const nodes = [...rows.values()].map((kept) => kept.row);
    const now = $("operations").children;
    if (nodes.length !== now.length || nodes.some((node, i) => node !== now[i])) $("operations").replaceChildren(...nodes);
    $("list-empty").hidden = page.items.length > 0;
    put($("list-pager"),
      cursor ? el("a", { href: href("/", filters), class: "first" }, "← Newest") : null,
      page.next_cursor ? el("a", { href: href("/", { ...filters, cursor: page.next_cursor }), class: "next" }, "Older →") : null);
  } catch (error) {
    fail("list-error", error);
  }
}

function operationRow(op) {
  const link = el("a", { href: opLink(op.id) }, `#${op.number}`);
  const hue = tone(op);
  const row = el("tr", { dataset: { id: op.id, state: op.state, tone: hue } },
    el("td", { class: "num" }, link),
    el("td", { class: "kind" }, el("div", { class: "clip" }, op.kind), el("div", { class: "muted id clip" }, op.id)),
    el("td", { class: "st" }, badge(op.state, hue), outcomeBadge(op)),
    el("td", { class: "prog" }, bar(op.progress, hue, op.counts),
       el("div", { class: "tally muted clip" }, tally(op.counts || {}, 2))),
    el("td", { class: "targets-cell" }, el("div", { class: "clip" }, targetSummary(op.targets, LIST_TARGETS))),
    el("td", { class: "created", dataset: { label: "created" } }, when(op.created_at)),
    el("td", { class: "updated", dataset: { label: "updated" } }, when(op.updated_at)));
  row.addEventListener("click", (event) => { if (event.target.tagName !== "A") link.click(); });
  return row;
}

// -- one operation -------------------------------------------------------------------

$("target-search").addEventListener("submit", (event) => {
  event.preventDefault();
  const { path, query } = here();
  go(path, { state: query.get("state"), q: event.target.q.value.trim() });
});

// The page of one operation. It reads the operation with all its executions once (a
// large one's single read embeds only its first executions: the rest come from the
// executions list, a page at a time), renders one page of them, and keeps them current
// from the operation's event stream, re-reading the whole at most once a second (every
// ten seconds past BIG targets, whose read is megabytes).
// Every execution of one operation, through its executions list (pages of 1000).
async function allExecutions(id, signal) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(`/v1/operations/${encodeURIComponent(id)}/executions`, { limit: 1000, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && !signal.aborted);
  return items;
}

function operationView(id, query) {
  const controller = new AbortController();
  const model = { op: null, byId: new Map(), history: new Map(), timeline: [], query, cards: new Map() };
  const paint = debounce(() => { if (model.op) renderOperation(model); }, PAINT_DELAY);
  const load = async () => {
    try {
      const op = await api(`/v1/operations/${encodeURIComponent(id)}`);
      if (op.executions_truncated) {
        op.executions = await allExecutions(id, controller.signal);
        op.targets = op.executions.map((execution) => execution.target);
      }
      if (controller.signal.aborted) return;
      model.op = op;
      model.byId = new Map((op.executions || []).map((execution) => [execution.id, execution]));
      $("operation-error").textContent = "";
      paint();
    } catch (error) {
      fail("operation-error", error);
    }
  };
  const refresh = throttle(load, () => (model.byId.size > BIG ? 10_000 : 1000));
  $("operation").replaceChildren();
  $("targets").replaceChildren();
  $("timeline").replaceChildren();
  $("target-search").q.value = query.get("q") || "";
  // The list's row of it comes without executions, so much sooner for a big one:
  // the header and the counts show while the targets are still on their way.
  api("/v1/operations", { id, limit: 1 }).then((page) => {
    if (!model.op && page.items.length && !controller.signal.aborted) { model.op = page.items[0]; paint(); }
  }, () => { /* the full read reports errors */ });
  load().then(() => {
    // an unknown or deleted operation has no events to follow
    if (controller.signal.aborted || /^(404|410):/.test($("operation-error").textContent)) return;
    stream(`/v1/operations/${encodeURIComponent(id)}/events`, {
      after: 0, signal: controller.signal, onState: setLive,
      onEvent(_, data) {
        if (remember(model, JSON.parse(data))) refresh();
        paint();
      },
    });
  });
  return {
    update(next) {
      model.query = next;
      $("target-search").q.value = next.get("q") || "";
      paint();
    },
    stop() { paint.cancel(); refresh.cancel(); controller.abort(); },
  };
}

// File one event: per-target history, the timeline, and the newer state it carries.
// True when it changed what was read last (so a re-read is due).
function remember(model, event) {
  const where = event.execution_id || "";
  const seen = model.history.get(where) || [];
  if (seen.some((e) => e.seq === event.seq)) return false;
  seen.push(event);
  if (seen.length > HISTORY) seen.shift();
  model.history.set(where, seen);
  model.timeline.push(event);
  if (model.timeline.length > TIMELINE * 2) model.timeline.splice(0, model.timeline.length - TIMELINE);
  const version = event.data && event.data.version;
  const item = event.execution_id ? model.byId.get(event.execution_id) : model.op;
  // The stream replays from the start: only an event newer than the read applies.
  if (!item || typeof version !== "number" || version <= item.version) return false;
  Object.assign(item, { state: event.state, progress: event.progress, version, updated_at: event.created_at });
  if (event.data.error) item.error = event.data.error;
  if (event.data.attempt) item.attempt = event.data.attempt;
  if (!event.execution_id && event.data.counts) item.counts = event.data.counts;
  return true;
}

// What the query selects: the executions in `state` whose target contains `q`.
function selected(op, query) {
  const state = query.get("state") || "";
  const q = (query.get("q") || "").toLowerCase();
  return (op.executions || []).filter((e) =>
    (!state || e.state === state) && (!q || e.target.toLowerCase().includes(q)));
}

function renderOperation(model) {
  const { op, query } = model;
  const executions = op.executions || [];
  const loading = op.executions === undefined; // only the list's row has been read yet
  let counts = op.counts || {};
  if (!loading) {
    counts = {};
    for (const execution of executions) counts[execution.state] = (counts[execution.state] || 0) + 1;
  }
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
  const path = `/operations/${encodeURIComponent(op.id)}`;
  const keep = { state: query.get("state"), q: query.get("q"), target: query.get("target") };
  renderHeader(op, counts);
  chips("exec-counts", counts, { states: EXEC_STATES.filter((s) => counts[s]), chosen: keep.state || "",
                                 total, link: (state) => href(path, { ...keep, state }) });
  const matching = selected(op, query);
  const pages = Math.max(1, Math.ceil(matching.length / TARGET_PAGE));
  const page = Math.min(pages, Math.max(1, Number(query.get("page")) || 1));
  const first = (page - 1) * TARGET_PAGE;
  const shown = matching.slice(first, first + TARGET_PAGE);
  const to = (n) => href(path, { ...keep, page: n > 1 ? n : "" });
  put($("target-pager"),
    page > 1 ? el("a", { href: to(page - 1), class: "prev", rel: "prev" }, "← Previous") : null,
    el("span", { class: "range" }, pagerText(loading, first, shown.length, matching.length)),
    page < pages ? el("a", { href: to(page + 1), class: "next", rel: "next" }, "Next →") : null);
  const chosen = query.get("target");
  // A card is rebuilt only when what it shows changed: repainting on every event must
  // not replace the node under a pointer that is clicking it.
  const cards = new Map();
  const nodes = shown.map((execution) => {
    const options = {
      chosen: execution.target === chosen,
      link: href(path, { ...keep, page: page > 1 ? page : "", target: execution.target === chosen ? "" : execution.target }),
    };
    const events = model.history.get(execution.id) || [];
    const signature = [execution.version, execution.state, events.length && events[events.length - 1].seq,
                       options.chosen, options.link].join(" ");
    const known = model.cards.get(execution.id);
    const card = known && known.signature === signature ? known.card : targetCard(execution, model, options);
    cards.set(execution.id, { signature, card });
    return card;
  });
  const now = $("targets").children;
  if (nodes.length !== now.length || nodes.some((node, i) => node !== now[i])) $("targets").replaceChildren(...nodes);
  model.cards = cards;
  renderTimeline(model.timeline);
}

function pagerText(loading, first, shown, matching) {
  if (loading) return "loading targets…";
  if (!matching) return "no target matches";
  return `${number(first + 1)}–${number(first + shown)} of ${number(matching)}`;
}

function renderHeader(op, counts) {
  const field = (name, value) => [el("dt", {}, name), el("dd", {}, value)];
  const hue = tone(op);
  $("operation").dataset.state = op.state;
  $("operation").dataset.tone = hue;
  $("operation").replaceChildren(
    el("div", { class: "title" }, el("h1", {}, `#${op.number} ${op.kind}`), badge(op.state, hue), outcomeBadge(op)),
    bar(op.progress, hue, counts),
    el("p", { class: "tally muted" }, tally(counts || {}, EXEC_STATES.length)),
    el("dl", { class: "fields" },
      field("id", el("code", {}, op.id)),
      field("targets", [`${number(op.targets.length)}: `, targetSummary(op.targets, FIELD_TARGETS)]),
      field("created", when(op.created_at)),
      field("started", when(op.started_at)),
      field("completed", when(op.completed_at)),
      op.error ? field("error", op.error) : null,
      Object.keys(op.parameters || {}).length ? field("parameters", el("code", {}, JSON.stringify(op.parameters))) : null));
}

function targetCard(execution, model, { chosen, link }) {
  const events = model.history.get(execution.id) || [];
  const card = el("article", {
    class: `card target${chosen ? " selected" : ""}`, "aria-current": chosen ? "true" : null,
    dataset: { target: execution.target, state: execution.state, tone: STATE_TONE[execution.state] },
  },
    el("div", { class: "title" }, el("h3", {}, el("a", { href: link, class: "clip" }, execution.target)), badge(execution.state)),
    bar(execution.progress, STATE_TONE[execution.state]),
    execution.error ? el("p", { class: "error" }, execution.error) : null,
    el("p", { class: "muted" }, `attempt ${execution.attempt} · updated `, when(execution.updated_at)),
    historyList(chosen ? events : events.slice(-CARD_HISTORY)));
  card.addEventListener("click", (event) => { if (!event.target.closest("a")) location.hash = link; });
  return card;
}

// A target's events: the badge says the state, so the type only when it says more.
function historyList(events) {
  return el("ol", { class: "history" }, events.map((event) =>
    el("li", { dataset: { seq: String(event.seq), type: event.type } }, clock(event.created_at), " ",
       event.type === `execution.${event.state}` ? null : [el("span", { class: "type" }, event.type), " "],
       badge(event.state), event.progress ? ` ${Math.round(event.progress)}%` : "")));
}

function renderTimeline(timeline) {
  const newest = timeline.slice(-TIMELINE).reverse();
  $("timeline").replaceChildren(...newest.map((event) =>
    el("li", { dataset: { seq: String(event.seq), type: event.type } },
      el("span", { class: `dot tone-${STATE_TONE[event.state] || "wait"}` }),
      el("div", {},
        el("div", {}, el("span", { class: "type" }, event.type), event.target ? el("span", { class: "muted" }, ` ${event.target}`) : null),
        el("div", { class: "muted small" }, clock(event.created_at),
           event.progress ? ` · ${Math.round(event.progress)}%` : "",
           event.data && event.data.error ? ` · ${event.data.error}` : "")))));
  if (!newest.length) $("timeline").append(el("li", { class: "muted empty" }, "no events yet"));
}

// -- the fleet -----------------------------------------------------------------------

$("fleet-window").addEventListener("change", (event) => go("/fleet", { window: event.target.value }));

// Every tenant's figure the API can give without a metrics endpoint: operations and
// targets per state from the newest operations, and from the events of the window
// the targets finished per interval and how long they stayed in each state.
function fleetView(query) {
  const controller = new AbortController();
  let minutes = 60;
  // the newest seq known, and the window's first seq found last: each refresh only
  // bisects what is new instead of the tenant's whole history
  const seen = { tail: null, start: 0, minutes: null };
  const load = async () => {
    try {
      if (seen.tail === null) seen.tail = await tailSeq();
      const since = new Date(Date.now() - minutes * 60_000);
      const start = await seqSince(since, seen.tail, seen.minutes === minutes ? seen.start : 0);
      Object.assign(seen, { start, minutes });
      const [ops, events] = await Promise.all([
        api("/v1/operations", { limit: COUNT_PAGE }), recentEvents(start, controller.signal)]);
      if (controller.signal.aborted) return;
      $("fleet-error").textContent = "";
      renderFleet(ops, events, since, minutes);
    } catch (error) {
      fail("fleet-error", error);
    }
  };
  const refresh = throttle(load, () => 5000);
  const onEvent = (_, data) => {
    seen.tail = Math.max(seen.tail || 0, JSON.parse(data).seq);
    refresh();
  };
  const update = (next) => {
    minutes = Number(next.get("window")) || 60;
    $("fleet-window").window.value = String(minutes);
    refresh();
  };
  return tenantView({ controller, refresh, onEvent, update, query, where: "fleet-error" });
}

async function recentEvents(start, signal) {
  let after = start;
  const events = [];
  for (let pages = 0; pages < FLEET_PAGES && !signal.aborted; pages++) {
    const page = await api("/v1/events", { after, limit: 1000 });
    events.push(...page.items);
    after = page.last_seq;
    if (page.items.length < 1000) return { items: events, complete: true };
  }
  return { items: events, complete: false };
}

function renderFleet(ops, events, since, minutes) {
  const opCounts = {};
  const execCounts = {};
  for (const op of ops.items) {
    opCounts[op.state] = (opCounts[op.state] || 0) + 1;
    for (const [state, n] of Object.entries(op.counts || {})) execCounts[state] = (execCounts[state] || 0) + n;
  }
  const more = Boolean(ops.next_cursor);
  chips("fleet-ops", opCounts, { states: STATES, chosen: null, more, total: ops.items.length,
                                 link: (state) => href("/", { state }) });
  const executions = Object.values(execCounts).reduce((sum, n) => sum + n, 0);
  chips("fleet-execs", execCounts, { states: EXEC_STATES.filter((s) => execCounts[s]), chosen: null, more,
                                     total: executions, link: () => "#/fleet" });
  for (const chip of document.querySelectorAll("#fleet-execs a")) chip.removeAttribute("href");
  $("throughput").replaceChildren(throughputChart(events.items, since, minutes));
  $("time-in-state").replaceChildren(timeInStateChart(timeInState(events.items)));
  $("fleet-note").textContent = `${number(events.items.length)} events since ${since.toLocaleString()}`
    + (events.complete ? "" : " (the window's first events only: it holds more than the page reads)");
}

const BUCKETS = 30;
const FINISHED = [["succeeded", "ok"], ["failed", "bad"], ["timed_out", "bad"], ["cancelled", "idle"]];

function throughputChart(events, since, minutes) {
  const width = (minutes * 60_000) / BUCKETS;
  const buckets = Array.from({ length: BUCKETS }, () => ({}));
  for (const event of events) {
    if (!event.execution_id || !TERMINAL.has(event.state) || !event.type.startsWith("execution.")) continue;
    const index = Math.floor((new Date(event.created_at) - since) / width);
    const bucket = buckets[Math.min(BUCKETS - 1, Math.max(0, index))];
    bucket[event.state] = (bucket[event.state] || 0) + 1;
  }
  const sums = buckets.map((b) => Object.values(b).reduce((sum, n) => sum + n, 0));
  const peak = Math.max(0, ...sums);
  const scale = Math.max(1, peak); // an empty window draws no bar, not a division by zero
  const chart = svg("svg", { viewBox: `0 0 ${BUCKETS * 10} 100`, preserveAspectRatio: "none", role: "img",
                             "aria-label": `targets finished per ${seconds(width / 1000)}` });
  buckets.forEach((bucket, i) => {
    let top = 100;
    for (const [state, hue] of FINISHED) {
      if (!bucket[state]) continue;
      const height = (100 * bucket[state]) / scale;
      top -= height;
      const start = new Date(since.getTime() + i * width).toLocaleTimeString();
      chart.append(svg("rect", { x: i * 10 + 1, y: top, width: 8, height, class: `tone-${hue}` },
        svg("title", {}, `${start}: ${bucket[state]} ${label(state)}`)));
    }
  });
  const total = sums.reduce((sum, n) => sum + n, 0);
  return el("figure", { class: "columns-chart", dataset: { total: String(total), peak: String(peak) } }, chart,
    el("figcaption", { class: "muted small axis" },
      el("span", {}, since.toLocaleTimeString()),
      el("span", {}, `${number(total)} finished · peak ${number(peak)} per ${seconds(width / 1000)}`),
      el("span", {}, "now")));
}

// Seconds each execution spent in a state, for the state changes seen in `events`.
// An execution's first state starts with its operation's creation when that is seen.
function timeInState(events) {
  const created = new Map();
  const current = new Map(); // execution id → [state, since]
  const spans = {};
  for (const event of [...events].sort((a, b) => a.seq - b.seq)) {
    const at = new Date(event.created_at).getTime();
    if (event.type === "operation.created") created.set(event.operation_id, at);
    if (!event.execution_id) continue;
    let now = current.get(event.execution_id);
    if (!now && event.data && event.data.from && created.has(event.operation_id)) {
      now = [event.data.from, created.get(event.operation_id)];
    }
    if (now && now[0] !== event.state) (spans[now[0]] = spans[now[0]] || []).push((at - now[1]) / 1000);
    if (!now || now[0] !== event.state) current.set(event.execution_id, [event.state, at]);
  }
  return spans;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function timeInStateChart(spans) {
  const states = EXEC_STATES.filter((s) => spans[s] && spans[s].length);
  if (!states.length) return el("p", { class: "muted" }, "no state changes in this window");
  const rows = states.map((state) => {
    const sorted = spans[state].sort((a, b) => a - b);
    return { state, n: sorted.length, median: quantile(sorted, 0.5), p90: quantile(sorted, 0.9) };
  });
  const longest = Math.max(...rows.map((r) => r.p90), 0.001);
  return el("div", { class: "bars" }, rows.map((row) => {
    const chart = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true" },
      svg("rect", { x: 0, y: 1, width: (100 * row.median) / longest, height: 8, class: `tone-${STATE_TONE[row.state]}` }),
      svg("rect", { x: Math.min(99.4, (100 * row.p90) / longest), y: 0, width: 0.6, height: 10, class: "tick" }));
    return el("div", { class: "bar-row", dataset: { state: row.state } },
      el("span", { class: "name" }, label(row.state)), chart,
      el("span", { class: "muted small figures" }, `${seconds(row.median)} · p90 ${seconds(row.p90)} · n ${number(row.n)}`));
  }));
}

// -- routing -------------------------------------------------------------------------

// Show what the fragment names. A change of query alone (a filter, a page, a selected
// target) updates the page on screen instead of reading everything again.
let shown = null; // the path `view` shows
function route() {
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  const { path, query } = here();
  if (view && signedIn && path === shown && view.update) { view.update(query); return; }
  if (view) { view.stop(); view = null; shown = null; }
  $("sign-out").hidden = !signedIn;
  $("nav").hidden = !signedIn;
  $("live").hidden = true;
  if (!signedIn) { show("sign-in-view"); $("api-key").focus(); return; }
  const match = path.match(/^\/operations\/(.+)$/);
  shown = path;
  if (match) {
    show("operation-view");
    $("back").href = href("/", JSON.parse(sessionStorage.getItem(LIST) || "{}"));
    view = operationView(decodeURIComponent(match[1]), query);
  } else if (path === "/fleet") {
    show("fleet-view");
    view = fleetView(query);
  } else {
    show("list-view");
    view = listView(query);
  }
}

window.addEventListener("hashchange", route);
route();
