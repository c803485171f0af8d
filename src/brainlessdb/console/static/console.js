// The BrainlessDB console: reads the JSON endpoints of brainlessdb.console.app and follows /api/events.
// Plain JavaScript, no build step. Every value from the server reaches the page as text (textContent),
// never as markup. What is shown (collection, criteria, order, limit, entity) is kept in the address's
// #fragment, so a view can be reloaded or shared.
"use strict";

const MAX_EVENTS = 100;
const FLASH_MS = 3000;
const NODES_EVERY_MS = 5000;
const COLLECTIONS_EVERY_MS = 10000; // new collections, bucket sizes

const state = { collection: "", where: "", orderBy: "", limit: "100", uuid: "" };
let token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("brainless-token") || "";
let events = null;
let nodesTimer = null;
const recent = new Map(); // uuid -> time of its last change, to mark rows that just changed
const timers = {};

const $ = (id) => document.getElementById(id);

// -- talking to the server ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params) {
  const url = new URL(path, location.href);
  for (const [name, values] of Object.entries(params || {})) {
    for (const value of [].concat(values)) {
      if (value !== "" && value !== undefined) url.searchParams.append(name, value);
    }
  }
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(url, { headers, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, (body && body.error) || response.statusText);
    if (response.status === 401) askToken();
    throw error;
  }
  return body;
}

function askToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
  setLive("closed", "token needed");
}

// Criteria as the command takes them: words split on spaces, except inside "double quotes", so that
// caller__city="New York" is one criterion (its value then read as the JSON string).
function splitCriteria(text) {
  const words = [];
  let word = "";
  let quoted = false;
  let started = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\\" && quoted && i + 1 < text.length) {
      word += ch + text[++i];
    } else if (ch === '"') {
      quoted = !quoted;
      word += ch;
      started = true;
    } else if (/\s/.test(ch) && !quoted) {
      if (started) words.push(word);
      word = "";
      started = false;
    } else {
      word += ch;
      started = true;
    }
  }
  if (started) words.push(word);
  return words;
}

// -- drawing --------------------------------------------------------------------------------------

function text(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function element(tag, content, className) {
  const node = document.createElement(tag);
  if (content !== undefined) node.textContent = text(content);
  if (className) node.className = className;
  return node;
}

function row(cells, classes) {
  const tr = document.createElement("tr");
  cells.forEach((value, index) => tr.appendChild(element("td", value, classes && classes[index])));
  return tr;
}

function fill(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

function heading(table, names, numeric) {
  const tr = document.createElement("tr");
  for (const name of names) tr.appendChild(element("th", name, numeric && numeric.has(name) ? "num" : ""));
  table.tHead.replaceChildren(tr);
}

function setLive(stateName, label) {
  const live = $("live");
  live.dataset.state = stateName;
  live.textContent = label;
}

function fail(error) {
  if (error instanceof ApiError && error.status === 401) return;
  const box = $("failure");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

function recovered() {
  $("failure").hidden = true;
}

function stampTime(stamp) {
  return stamp ? stamp.time.replace("T", " ").replace("Z", "") : "";
}

// -- the sections ---------------------------------------------------------------------------------

async function loadInfo() {
  const info = await api("api/info");
  $("namespace").textContent = info.namespace;
  $("servers").textContent = info.servers;
  document.title = "BrainlessDB console: " + info.namespace;
  $("nodes-section").hidden = !info.nodes;
  clearInterval(nodesTimer);
  if (info.nodes) {
    await loadNodes();
    nodesTimer = setInterval(() => loadNodes().catch(fail), NODES_EVERY_MS);
  }
}

async function loadCollections() {
  const { collections } = await api("api/collections");
  $("no-collections").hidden = collections.length > 0;
  fill(
    $("collections"),
    collections.map((c) => {
      const tr = row([c.collection, c.entities, c.dead_letters], ["", "num", "num"]);
      tr.dataset.collection = c.collection;
      tr.tabIndex = 0;
      if (c.collection === state.collection) tr.classList.add("selected");
      if (c.dead_letters > 0) tr.cells[2].classList.add("warn");
      tr.title = c.fields.join(", ") + " · " + c.bytes + " bytes";
      tr.addEventListener("click", () => choose(c.collection));
      tr.addEventListener("keydown", (e) => e.key === "Enter" && choose(c.collection));
      return tr;
    }),
  );
  recovered();
  if (!state.collection && collections.length) choose(collections[0].collection);
}

// The columns of the nodes table, when the nodes have them (else every key they have); the whole record
// of a node is its row's tooltip.
const NODE_COLUMNS = { location: "location", version: "version", pending: "pending", copy_lag: "copy lag",
  started: "up", seen: "seen" };

function hasValue(value) {
  if (value === null || value === undefined || value === "") return false;
  return typeof value !== "object" || Object.keys(value).length > 0;
}

function since(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

async function loadNodes() {
  const { nodes } = await api("api/nodes");
  const known = Object.keys(NODE_COLUMNS).filter((name) => nodes.some((node) => hasValue(node[name])));
  const names = known.length ? known : [...new Set(nodes.flatMap((node) => Object.keys(node)))];
  heading($("nodes"), names.map((name) => NODE_COLUMNS[name] || name), new Set(["pending"]));
  fill(
    $("nodes"),
    nodes.map((node) => {
      const cells = names.map((name) => {
        const value = node[name];
        if (typeof value !== "number") return value;
        if (name === "started") return since(value);
        if (name === "seen") return since(value) + " ago";
        return value;
      });
      const tr = row(cells, names.map((name) => (name === "pending" ? "num" : "")));
      tr.title = JSON.stringify(node, null, 1);
      tr.dataset.location = node.location || "";
      return tr;
    }),
  );
  $("no-nodes").hidden = nodes.length > 0;
}

async function loadEntities() {
  if (!state.collection) return;
  const errorBox = $("query-error");
  let found;
  try {
    found = await api("api/collections/" + encodeURIComponent(state.collection) + "/entities", {
      where: splitCriteria(state.where),
      order_by: state.orderBy.replace(/,/g, " ").split(/\s+/).filter(Boolean),
      limit: state.limit,
    });
  } catch (error) {
    if (error instanceof ApiError && (error.status === 400 || error.status === 404)) {
      errorBox.textContent = error.message;
      errorBox.hidden = false;
      fill($("entities"), []);
      $("matched").textContent = "";
      return;
    }
    throw error;
  }
  errorBox.hidden = true;
  const table = $("entities");
  heading(table, ["uuid", ...found.fields]);
  const now = Date.now();
  fill(
    table,
    found.entities.map((entity) => {
      const tr = row([entity.uuid, ...found.fields.map((name) => entity[name])]);
      tr.dataset.uuid = entity.uuid;
      tr.cells[0].className = "uuid";
      found.fields.forEach((name, index) => (tr.cells[index + 1].dataset.field = name));
      tr.tabIndex = 0;
      if (entity.uuid === state.uuid) tr.classList.add("selected");
      if (now - (recent.get(entity.uuid) || 0) < FLASH_MS) tr.classList.add("changed");
      tr.addEventListener("click", () => openEntity(entity.uuid));
      tr.addEventListener("keydown", (e) => e.key === "Enter" && openEntity(entity.uuid));
      return tr;
    }),
  );
  const shown = found.entities.length;
  $("matched").textContent =
    `${found.matched} of ${found.total} match` + (shown < found.matched ? `; the first ${shown} shown` : "");
}

async function loadEntity() {
  const section = $("entity-section");
  if (!state.collection || !state.uuid) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  $("entity-uuid").textContent = state.uuid;
  try {
    const found = await api(
      "api/collections/" + encodeURIComponent(state.collection) + "/entities/" + encodeURIComponent(state.uuid),
    );
    $("entity-gone").hidden = true;
    fill(
      $("entity"),
      found.fields.map((f) => {
        const tr = row([f.field, f.value, stampTime(f.stamp), f.stamp ? f.stamp.node || "(another client)" : ""]);
        tr.dataset.field = f.field;
        return tr;
      }),
    );
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    fill($("entity"), []);
    $("entity-gone").hidden = false;
  }
}

async function loadDeadLetters() {
  if (!state.collection) return;
  const { dead_letters: letters } = await api(
    "api/collections/" + encodeURIComponent(state.collection) + "/dead-letters",
  );
  $("dead-letters-section").hidden = letters.length === 0;
  fill(
    $("dead-letters"),
    letters.map((l) => row([l.key, l.revision, l.reason, l.value], ["uuid", "num", "", "value"])),
  );
}

function showEvent(record) {
  const item = document.createElement("li");
  item.className = "event " + record.event;
  item.dataset.uuid = record.uuid;
  item.appendChild(element("time", new Date().toLocaleTimeString([], { hour12: false })));
  item.appendChild(element("span", record.event, "kind"));
  item.appendChild(element("span", record.collection, "collection"));
  item.appendChild(element("code", record.uuid.slice(0, 8), "uuid"));
  const parts = Object.entries(record.changes || {}).map(([name, change]) =>
    "old" in change ? `${name}: ${text(change.old)} → ${text(change.new)}` : `${name}=${text(change.new)}`,
  );
  if (parts.length) item.appendChild(element("span", parts.join(", "), "changes"));
  item.title = record.uuid + " (" + record.origin + ")";
  item.addEventListener("click", () => {
    if (record.collection !== state.collection) choose(record.collection, record.uuid);
    else openEntity(record.uuid);
  });
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  $("no-events").hidden = true;
}

// -- what is shown ---------------------------------------------------------------------------------

// Run work in ms, once for all the calls until then: a burst of changes costs one reload, and a steady
// stream of them one every ms or so, never none.
function later(name, ms, work) {
  if (timers[name]) return;
  timers[name] = setTimeout(() => {
    timers[name] = null;
    work().catch(fail);
  }, ms);
}

function saveState() {
  const params = new URLSearchParams();
  if (state.collection) params.set("c", state.collection);
  if (state.where) params.set("where", state.where);
  if (state.orderBy) params.set("order", state.orderBy);
  if (state.limit && state.limit !== "100") params.set("limit", state.limit);
  if (state.uuid) params.set("e", state.uuid);
  history.replaceState(null, "", "#" + params.toString());
}

function readState() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.collection = params.get("c") || "";
  state.where = params.get("where") || "";
  state.orderBy = params.get("order") || "";
  state.limit = params.get("limit") || "100";
  state.uuid = params.get("e") || "";
  $("where").value = state.where;
  $("order-by").value = state.orderBy;
  $("limit").value = state.limit;
}

function choose(name, uuid) {
  if (name !== state.collection) {
    state.collection = name;
    state.where = "";
    state.orderBy = "";
    state.limit = "100";
    $("where").value = "";
    $("order-by").value = "";
    $("limit").value = "100";
  }
  state.uuid = uuid || "";
  saveState();
  showCollection().catch(fail);
}

function openEntity(uuid) {
  state.uuid = uuid;
  saveState();
  for (const tr of $("entities").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.uuid === uuid);
  loadEntity().catch(fail);
}

async function showCollection() {
  $("collection-title").textContent = state.collection || "Choose a collection";
  $("query").hidden = !state.collection;
  for (const tr of $("collections").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.collection === state.collection);
  }
  await Promise.all([loadEntities(), loadEntity(), loadDeadLetters()]);
}

async function reloadAll() {
  await loadInfo();
  await loadCollections();
  await showCollection();
}

// -- live changes -----------------------------------------------------------------------------------

function onEvent(message) {
  const record = JSON.parse(message.data);
  recent.set(record.uuid, Date.now());
  showEvent(record);
  later("collections", 300, loadCollections);
  if (record.collection === state.collection) {
    later("entities", 150, loadEntities);
    if (record.uuid === state.uuid) later("entity", 150, loadEntity);
    later("dead-letters", 1000, loadDeadLetters);
  }
}

function follow() {
  if (events) events.close();
  const url = new URL("api/events", location.href);
  if (token) url.searchParams.set("token", token);
  events = new EventSource(url);
  setLive("connecting", "connecting");
  events.addEventListener("open", () => {
    setLive("live", "live");
    reloadAll().catch(fail); // whatever changed while the stream was down
  });
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      setLive("closed", "disconnected");
      setTimeout(() => start(), 3000);
    } else {
      setLive("connecting", "reconnecting");
    }
  });
  for (const kind of ["add", "change", "delete"]) events.addEventListener(kind, onEvent);
  events.addEventListener("reset", () => reloadAll().catch(fail));
}

async function start() {
  try {
    await loadInfo(); // 401 here asks for the token before the stream is opened
  } catch (error) {
    fail(error);
    return;
  }
  follow();
}

function init() {
  readState();
  if (new URLSearchParams(location.search).has("token")) sessionStorage.setItem("brainless-token", token);
  $("query").addEventListener("submit", (e) => {
    e.preventDefault();
    state.where = $("where").value.trim();
    state.orderBy = $("order-by").value.trim();
    state.limit = $("limit").value.trim();
    saveState();
    loadEntities().catch(fail);
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token-input").value;
    sessionStorage.setItem("brainless-token", token);
    $("token-form").hidden = true;
    start();
  });
  window.addEventListener("hashchange", () => {
    readState();
    showCollection().catch(fail);
  });
  start();
  setInterval(() => {
    if (events && events.readyState === EventSource.OPEN) later("collections", 0, loadCollections);
  }, COLLECTIONS_EVERY_MS);
}

init();
