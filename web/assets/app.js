// dfs-sim dashboard: plain JavaScript, no framework, no build step.
// Live through server-sent events (/api/events: the status once, then what
// changed); the file list and incidents are fetched when they may have
// changed. Actions need the admin token; files go in and out through the
// data endpoint (`dfs-sim data`), never through the coordinator.
"use strict";

const PAGE = 50;
const SLOW_MS = 2000;              // file list / open file refresh
const params = new URLSearchParams(location.search);
const token = params.get("token");
const marked = new Set();          // what-if: nodes marked failed
let pageStart = [null];            // cursors of the pages seen, for "first"
let cursor = null, nextAfter = null, prefix = "";
let openFile = null, hexChunk = null, openIncident = null, panelNode = null;
let lastStatus = null, ui = { data_url: null, actions: false };
let incidentsKey = null;
const nodesById = new Map();       // the status's nodes, merged from deltas

const $ = (id) => document.getElementById(id);
if (params.get("admin")) sessionStorage.setItem("dfs-admin", params.get("admin"));
$("admin-token").value = sessionStorage.getItem("dfs-admin") || "";
$("admin-token").addEventListener("change", () => sessionStorage.setItem("dfs-admin", $("admin-token").value));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}

function bytes(n) {
  if (n == null) return "?";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function secs(ms) { return ms == null ? "–" : (ms / 1000).toFixed(1) + " s"; }

function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ headers: authHeaders(), cache: "no-store" }, opts || {}));
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function logEvent(text, bad) {
  const li = el("li", bad ? { class: "bad" } : {}, new Date().toLocaleTimeString() + " " + text);
  $("events").prepend(li);
  while ($("events").children.length > 50) $("events").lastChild.remove();
}

// ---------------------------------------------------------------- cluster

function nodeState(n) {
  if (n.state === "dead" || n.state === "failed") return "dead";
  if (n.draining) return "draining";
  if (n.spare) return "spare";
  return n.state;
}

function toggleMark(ids) {
  const all = ids.every((id) => marked.has(id));
  for (const id of ids) all ? marked.delete(id) : marked.add(id);
  whatIfChanged();
}

// Nodes started without --domain are each their own domain: those groups
// of one are shown together, so 100 such nodes are one grid, not 100 rows.
function groupsOf(nodes) {
  const by = new Map();
  const natural = (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true });
  for (const n of [...nodes].sort(natural)) {
    const d = n.domain || "cluster";
    if (!by.has(d)) by.set(d, []);
    by.get(d).push(n);
  }
  const groups = [], singles = [];
  for (const [d, ns] of by) (ns.length === 1 ? singles : groups).push([d, ns]);
  if (singles.length === 1) groups.push(singles[0]);
  else if (singles.length) groups.push(["one-node domains", singles.map(([, ns]) => ns[0]), true]);
  return groups;
}

function trafficLine(t) {
  const kids = [];
  const rIn = t.repair_reads_in_flight + t.rebalance_reads_in_flight;
  const wIn = t.repair_writes_in_flight + t.rebalance_writes_in_flight;
  if (rIn || t.recent_read_bytes) kids.push(el("span", { class: "r", title: "read for repairs/moves: in flight (bytes), rate over the last " + t.window_ms / 1000 + " s" },
    "↑" + (rIn ? rIn + " " : "") + bytes(t.read_bytes_per_s) + "/s "));
  if (wIn || t.recent_write_bytes) kids.push(el("span", { class: "w", title: "written by repairs/moves" },
    "↓" + (wIn ? wIn + " " : "") + bytes(t.write_bytes_per_s) + "/s"));
  return el("div", { class: "traffic" }, ...(kids.length ? kids : ["\u00a0"]));
}

function renderCluster(s) {
  const root = $("domains");
  const many = s.nodes.length > 24;
  $("cluster").classList.toggle("compact", many);
  const groups = groupsOf(s.nodes);
  // Group width follows its tile count so that groups tile the screen.
  const biggest = Math.max(1, ...groups.map(([, ns, wide]) => (wide ? 1 : ns.length)));
  const perRow = many ? Math.min(4, Math.ceil(Math.sqrt(biggest))) : Math.min(4, biggest);
  root.style.setProperty("--group-w", (many ? perRow * 7.3 + 1 : perRow * 11.6 + 1.2) + "em");
  root.replaceChildren();
  for (const [d, nodes, wide] of groups) {
    const tiles = el("div", { class: "tiles" });
    for (const n of nodes) {
      const st = nodeState(n);
      const t = n.traffic || {};
      const cap = n.free_bytes != null ? n.bytes + n.free_bytes : null;
      const pct = cap ? Math.min(100, (100 * n.bytes) / cap) : 0;
      const moving = t.rebalance_reads_in_flight + t.rebalance_writes_in_flight > 0;
      const cls = "tile " + st + (marked.has(n.id) ? " marked" : "") + (t.repair_source ? " repair-source" : "") +
        (t.repair_target ? " repair-target" : "") + (moving ? " moving" : "");
      const tile = el("div", {
        class: cls, "data-node": n.id, "data-state": st, title: n.addr + (n.domain !== n.id ? " · domain " + n.domain : ""),
        "data-source": t.repair_source ? "1" : "0", "data-target": t.repair_target ? "1" : "0",
        onclick: () => toggleMark([n.id]),
      },
        el("span", { class: "id" }, n.id), el("span", { class: "state" }, st),
        el("div", { class: "bar", title: pct.toFixed(1) + "% used" }, el("div", { style: "width:" + pct + "%" })),
        el("div", { class: "small" }, n.chunks + " ch · " + bytes(n.bytes)),
        el("div", { class: "small more" }, "heartbeat " + (n.last_heartbeat_ms_ago == null ? "never" : secs(n.last_heartbeat_ms_ago) + " ago")),
        trafficLine(t),
        el("button", { class: "act-btn", title: "actions", onclick: (e) => { e.stopPropagation(); showPanel(n.id); } }, "⋯"));
      tiles.append(tile);
    }
    root.append(el("div", { class: "domain" + (wide ? " wide" : ""), "data-domain": d },
      el("h3", { onclick: () => toggleMark(nodes.map((n) => n.id)), title: "mark the whole group" },
        d + " (" + nodes.length + ")"), tiles));
  }
  drawFlows(s);
  if (panelNode) renderPanel();
}

// Lines from each source tile to its target tile: a rebuild reading several
// members is a fan-in of lines into one tile.
function drawFlows(s) {
  const svg = $("flows");
  const area = $("cluster-area").getBoundingClientRect();
  svg.replaceChildren();
  svg.insertAdjacentHTML("beforeend", "<defs>" + ["repair", "rebalance"].map((k) =>
    "<marker id='arrow-" + k + "' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='5' markerHeight='5' orient='auto-start-reverse'>" +
    "<path d='M0,0 L10,5 L0,10 z' class='" + k + "-head'/></marker>").join("") + "</defs>");
  const centre = (id) => {
    const t = document.querySelector(".tile[data-node='" + CSS.escape(id) + "']");
    if (!t) return null;
    const r = t.getBoundingClientRect();
    return [r.left - area.left + r.width / 2, r.top - area.top + r.height / 2];
  };
  const ns = "http://www.w3.org/2000/svg";
  for (const f of s.flows || []) {
    const a = centre(f.source), b = centre(f.target);
    if (!a || !b) continue;
    // An arc bowing to the left of the direction of travel, so that flows
    // between neighbours are not drawn through the tiles' text, and a->b and
    // b->a are two arcs.
    const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
    const len = Math.hypot(dx, dy) || 1, bow = Math.min(60, 0.3 * len);
    const c = [(a[0] + b[0]) / 2 + (dy / len) * bow, (a[1] + b[1]) / 2 - (dx / len) * bow];
    const line = document.createElementNS(ns, "path");
    line.setAttribute("d", "M" + a[0] + "," + a[1] + " Q" + c[0] + "," + c[1] + " " + b[0] + "," + b[1]);
    line.setAttribute("marker-end", "url(#arrow-" + f.kind + ")");
    line.setAttribute("class", f.kind + (f.in_flight ? " live" : ""));
    line.setAttribute("data-source", f.source); line.setAttribute("data-target", f.target);
    const title = document.createElementNS(ns, "title");
    title.textContent = f.kind + " " + f.source + " → " + f.target + ": " + f.in_flight + " in flight (" + bytes(f.in_flight_bytes) + "), " + bytes(f.recent_bytes) + " recently";
    line.append(title);
    svg.append(line);
  }
}

function renderRepair(s) {
  const r = s.repair;
  const left = r.waiting_bytes + r.in_flight_bytes;
  const eta = left > 0 && r.rate_bytes_per_s > 0 ? secs((1000 * left) / r.rate_bytes_per_s) : "–";
  const sources = s.nodes.filter((n) => n.traffic && n.traffic.repair_source).map((n) => n.id);
  const targets = s.nodes.filter((n) => n.traffic && n.traffic.repair_target).map((n) => n.id);
  const rows = [
    ["waiting", r.waiting_chunks + " chunks (" + bytes(r.waiting_bytes) + ")"],
    ["in flight", r.in_flight_chunks + " chunks (" + bytes(r.in_flight_bytes) + ")"],
    ["done", r.done_chunks + " chunks (" + bytes(r.done_bytes) + ")"],
    ["failed", r.failed],
    ["rate", (r.rate_bytes_per_s / 1e6).toFixed(1) + " MB/s"],
    ["ETA", eta],
    ["reading", sources.join(", ") || "–"],
    ["writing", targets.join(", ") || "–"],
    ["incident", r.incident_open_ms != null ? "node lost " + secs(r.incident_open_ms) + " ago, re-protecting" : "none"],
    ["last MTTR", secs(r.last_mttr_ms)],
    ["under-protected", s.under_protected_total + " chunks"],
  ];
  const t = r.incident;
  if (t) {
    rows.push([t.open ? "this incident" : "last incident",
      bytes(t.read_bytes) + " read / " + bytes(t.rebuilt_bytes) + " rebuilt (" + t.read_per_rebuilt.toFixed(2) + " per byte)"]);
  }
  const b = s.rebalance;
  if (b) {
    const run = b.moved_chunks + "/" + Math.max(b.planned_chunks, b.moved_chunks) + " copies (" + bytes(b.moved_bytes) + ")";
    rows.push(["rebalance", b.state === "idle" ? (b.stuck ? "stopped short, " : "idle, ") + "furthest node " +
      b.deviation_pct.toFixed(0) + "% from the mean" : b.state + " (" + b.trigger + "): " + run]);
  }
  const v = $("repair-view");
  v.replaceChildren();
  for (const [k, val] of rows) {
    v.append(el("span", { class: "k" }, k), el("span", { "data-k": k }, val));
  }
  v.dataset.done = r.done_chunks;
  v.dataset.under = s.under_protected_total;
  // Incidents change when a repair starts, progresses or ends.
  const key = [r.done_chunks, r.failed, r.incident_open_ms != null, r.last_mttr_ms].join("/");
  if (key !== incidentsKey) { incidentsKey = key; loadIncidents().catch(() => {}); }
}

function renderSummary(s) {
  const alive = s.nodes.filter((n) => n.state === "alive").length;
  $("summary").textContent = s.files + " files, " + bytes(s.bytes) + ", " + s.chunks + " chunks · " +
    alive + "/" + s.nodes.length + " nodes alive · " + s.replication + " replica(s) + " + s.scheme +
    (s.ha ? " · HA" : "");
}

// -------------------------------------------------------------- incidents

// The coordinator group, when there is one: members, leader, term, lag and
// the last leadership change this member saw.
async function loadCoordinators() {
  const g = await api("/api/coordinators");
  const box = $("coordinators");
  if (!g) { box.hidden = true; return; }
  box.hidden = false;
  const ago = g.last_change_ms ? Math.round((Date.now() - g.last_change_ms) / 1000) + " s ago" : "never";
  box.replaceChildren(
    el("div", {}, el("b", {}, "coordinators "), "leader " + (g.leader || "NONE") + ", term " + g.term +
      ", committed " + g.committed + ", last leader change " + ago + " (as seen by " + g.me + ")"),
    ...g.members.map((m) => el("div", { class: "coord-member", "data-name": m.name, "data-leader": m.leader ? "1" : "0" },
      m.name + " " + m.addr + " " + (m.leader ? "leader" : "follower") + (m.lag == null ? "" : ", lag " + m.lag))));
}

async function loadIncidents() {
  const list = await api("/api/incidents");
  const body = $("incident-table").tBodies[0];
  body.replaceChildren();
  for (const i of list.slice(0, 8)) {
    body.append(el("tr", { class: "incident-row", "data-id": i.id, "data-open": i.open ? "1" : "0",
      "data-rebuilt": i.rebuilt_bytes, "data-mttr": i.mttr_ms == null ? "" : i.mttr_ms, onclick: () => showIncident(i.id) },
      el("td", {}, i.id), el("td", {}, i.summary), el("td", {}, i.open ? "open" : "closed"),
      el("td", { class: "num" }, bytes(i.rebuilt_bytes)), el("td", { class: "num" }, i.read_per_rebuilt.toFixed(2)),
      el("td", { class: "num" }, secs(i.mttr_ms))));
  }
  if (!list.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "none")));
  if (openIncident != null) renderIncident(list.find((i) => i.id === openIncident));
}

async function showIncident(id) {
  openIncident = id;
  $("incident").hidden = false;
  renderIncident(await api("/api/incidents/" + id));
  $("incident").scrollIntoView();
}

function renderIncident(i) {
  if (!i) return;
  $("inc-id").textContent = i.id + " · " + i.summary;
  const when = (ms) => (ms == null ? "–" : new Date(ms).toISOString());
  const nodes = (v) => v.map((n) => n.node + " " + bytes(n.bytes) + " (" + n.repairs + ")").join(", ") || "–";
  const rows = [
    ["state", i.open ? "open: re-protecting" : "closed: fully protected"],
    ["started", when(i.started_ms)], ["detected", when(i.detected_ms) + " (+" + secs(i.detection_ms) + ")"],
    ["protected", when(i.ended_ms)], ["MTTR", secs(i.mttr_ms)],
    ["failed nodes", i.failed_nodes.join(", ")],
    ["rebuilt", bytes(i.rebuilt_bytes) + " in " + i.chunks + " chunks"],
    ["read", bytes(i.read_bytes) + " (" + i.read_per_rebuilt.toFixed(2) + " bytes per byte rebuilt)"],
    ["per scheme", i.schemes.map((s) => s.scheme + " R=" + s.replication + ": " + s.chunks + " chunks, " + bytes(s.rebuilt_bytes) + ", " + s.read_per_rebuilt.toFixed(2)).join("; ") || "–"],
    ["read from", nodes(i.sources)], ["written to", nodes(i.targets)],
    ["failures / retries", i.failures + " / " + i.retries], ["stuck chunks", i.stuck_chunks],
  ];
  const v = $("inc-report");
  v.replaceChildren();
  for (const [k, val] of rows) v.append(el("span", { class: "k" }, k), el("span", { "data-k": k }, val));
  v.dataset.rebuilt = i.rebuilt_bytes;
  v.dataset.mttr = i.mttr_ms == null ? "" : i.mttr_ms;
}

// ---------------------------------------------------------------- actions

function showPanel(id) {
  panelNode = id;
  $("node-panel").hidden = false;
  renderPanel();
}

function renderPanel() {
  const n = nodesById.get(panelNode);
  $("np-node").textContent = panelNode;
  const v = $("np-info");
  v.replaceChildren();
  if (!n) return;
  const t = n.traffic || {};
  for (const [k, val] of [["state", nodeState(n)], ["address", n.addr], ["domain", n.domain],
    ["chunks", n.chunks + " (" + bytes(n.bytes) + ")"],
    ["repair", "reading " + t.repair_reads_in_flight + " (" + bytes(t.repair_read_bytes_in_flight) + "), writing " + t.repair_writes_in_flight + " (" + bytes(t.repair_write_bytes_in_flight) + ")"],
    ["rebalance", "reading " + t.rebalance_reads_in_flight + ", writing " + t.rebalance_writes_in_flight],
    ["recent", bytes(t.read_bytes_per_s) + "/s read, " + bytes(t.write_bytes_per_s) + "/s written"],
    ["scrubs", n.scrub_passes + (n.scrub_running ? " (running)" : "") + ", " + n.corrupt_found + " corrupt found"]]) {
    v.append(el("span", { class: "k" }, k), el("span", {}, val));
  }
}

let pending = null;
function confirmThen(text, fn) {
  pending = fn;
  $("confirm-text").textContent = text;
  $("confirm").hidden = false;
}
$("confirm-yes").addEventListener("click", () => { $("confirm").hidden = true; const f = pending; pending = null; if (f) f(); });
$("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; pending = null; });

async function act(path, what) {
  try {
    const h = Object.assign({ "X-DFS-Admin": $("admin-token").value }, authHeaders());
    const r = await fetch(path, { method: "POST", headers: h });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
  } catch (e) {
    logEvent(what + " refused: " + e.message, true);
  }
}

for (const b of document.querySelectorAll("#node-panel [data-action]")) {
  b.addEventListener("click", () => {
    const a = b.dataset.action, n = panelNode;
    confirmThen(a + " " + n + "?", () => act("/api/nodes/" + encodeURIComponent(n) + "/" + a, a + " " + n));
  });
}
$("rebalance-btn").addEventListener("click", () => confirmThen("Start a rebalance now?", () => act("/api/rebalance", "rebalance")));
$("np-close").addEventListener("click", () => { panelNode = null; $("node-panel").hidden = true; });

// ------------------------------------------------------------------ files

function healthCell(h) { return el("td", { class: "h-" + h, "data-health": h }, h); }

async function loadFiles() {
  const q = new URLSearchParams({ prefix, limit: PAGE });
  if (cursor) q.set("after", cursor);
  if (marked.size) q.set("what_if", [...marked].join(","));
  const page = await api("/api/files?" + q);
  nextAfter = page.next_after;
  $("health-col").textContent = marked.size ? "if " + [...marked].join(", ") + " failed" : "health";
  const body = $("file-table").tBodies[0];
  body.replaceChildren();
  for (const f of page.files) {
    body.append(el("tr", { class: "file-row", "data-name": f.name, onclick: () => showFile(f.name) },
      el("td", {}, f.name), el("td", { class: "num" }, bytes(f.size)), el("td", { class: "num" }, f.chunks),
      healthCell(f.health),
      el("td", {}, el("button", { class: "dl-btn", onclick: (e) => { e.stopPropagation(); download(f.name); } }, "download"))));
  }
  if (!page.files.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "no files")));
  $("next").disabled = !nextAfter;
  $("page-info").textContent = "page " + pageStart.length;
}

function encName(name) { return name.split("/").map(encodeURIComponent).join("/"); }

function dataReady() {
  if (!ui.data_url) {
    $("data-note").textContent = "No data endpoint: start `dfs-sim data` and the coordinator with --http-data-url to move files from here.";
    return false;
  }
  return true;
}

// Upload: each file through the data endpoint, with its own progress bar.
function uploadOne(file, name, scheme) {
  const row = el("div", { class: "up", "data-name": name });
  const bar = el("progress", { max: file.size || 1, value: 0 });
  const state = el("span", {}, "0%");
  row.append(el("span", {}, name), bar, state);
  $("upload-list").append(row);
  return new Promise((done) => {
    const x = new XMLHttpRequest();
    const q = scheme ? "?" + new URLSearchParams({ scheme }) : "";
    x.open("PUT", ui.data_url + "/files/" + encName(name) + q);
    if (token) x.setRequestHeader("Authorization", "Bearer " + token);
    x.upload.onprogress = (e) => { bar.value = e.loaded; state.textContent = Math.round((100 * e.loaded) / (e.total || 1)) + "%"; };
    x.onload = () => {
      let body = {};
      try { body = JSON.parse(x.responseText); } catch (_) { /* not JSON */ }
      const ok = x.status === 200;
      bar.value = bar.max;
      state.textContent = ok ? "stored (" + body.scheme + ")" : "failed: " + (body.error || x.status);
      state.className = ok ? "ok" : "bad";
      row.dataset.done = ok ? "ok" : "failed";
      logEvent((ok ? "uploaded " : "upload failed: ") + name, !ok);
      done();
    };
    x.onerror = () => { state.textContent = "failed: network"; state.className = "bad"; row.dataset.done = "failed"; done(); };
    x.send(file);
  });
}

async function uploadFiles(files) {
  if (!dataReady() || !files.length) return;
  const pre = $("upload-prefix").value, scheme = $("upload-scheme").value.trim();
  for (const f of files) await uploadOne(f, pre + f.name, scheme);
  refreshFiles();
}

$("upload-btn").addEventListener("click", () => uploadFiles([...$("upload-files").files]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadFiles([...e.dataTransfer.files]); });

function hexOf(buf) { return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join(""); }

// Download: the bytes from the data endpoint, each data chunk's SHA-256
// checked here against the catalog's, then saved.
async function download(name) {
  const st = $("download-status");
  if (!dataReady()) { st.textContent = $("data-note").textContent; return; }
  st.className = ""; st.textContent = "downloading " + name + "…";
  st.dataset.verified = "";
  try {
    const f = await api("/api/files/" + encName(name));
    const r = await fetch(ui.data_url + "/files/" + encName(name), { headers: authHeaders(), cache: "no-store" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const buf = await r.arrayBuffer();
    if (buf.byteLength !== f.size) throw new Error("got " + buf.byteLength + " bytes, the catalog says " + f.size);
    let off = 0, checked = 0;
    for (const s of f.stripes) {
      for (const c of s.data) {
        const h = hexOf(await crypto.subtle.digest("SHA-256", buf.slice(off, off + c.raw_len)));
        if (h !== c.sha256) throw new Error("chunk " + c.id.slice(0, 12) + " at " + off + ": SHA-256 " + h.slice(0, 12) + " ≠ catalog " + c.sha256.slice(0, 12));
        off += c.raw_len; checked++;
      }
    }
    const whole = hexOf(await crypto.subtle.digest("SHA-256", buf));
    window.dfsLastDownload = { name, size: buf.byteLength, sha256: whole, chunks: checked };
    st.textContent = name + ": " + bytes(buf.byteLength) + ", " + checked + " chunk(s) SHA-256-verified against the catalog; SHA-256 " + whole;
    st.className = "ok"; st.dataset.verified = "ok"; st.dataset.sha256 = whole;
    const a = el("a", { href: URL.createObjectURL(new Blob([buf])), download: name.split("/").pop() });
    document.body.append(a); a.click(); a.remove();
  } catch (e) {
    st.textContent = "download of " + name + " failed: " + e.message;
    st.className = "bad"; st.dataset.verified = "bad";
  }
}

// ------------------------------------------------------------------- file

async function showFile(name) {
  openFile = name;
  hexChunk = null;
  $("hex").hidden = true;
  $("file").hidden = false;
  await loadFile();
  $("file").scrollIntoView();
}

async function loadFile() {
  if (!openFile) return;
  const f = await api("/api/files/" + encName(openFile));
  $("file-name").textContent = f.name;
  const meta = $("file-meta");
  meta.replaceChildren();
  for (const [k, v] of [["size", bytes(f.size) + " (" + f.size + " bytes)"], ["health", f.health],
    ["protection", f.replication + " replica(s) of data + " + f.scheme],
    ["chunk size", bytes(f.chunk_size)], ["created", new Date(f.created_ms).toISOString()]]) {
    meta.append(el("span", { class: "k" }, k), el("span", { "data-k": k }, v));
  }
  const states = new Map([...nodesById.values()].map((n) => [n.id, nodeState(n)]));
  const body = $("stripe-map").tBodies[0];
  body.replaceChildren();
  let index = 0;
  f.stripes.forEach((s, si) => {
    const members = s.data.map((c) => ["data " + index++, c]);
    for (const p of s.parity || []) members.push(["parity (" + (p.role || "parity") + ")", p]);
    for (const [role, c] of members) {
      const target = role.startsWith("parity") ? 1 : f.replication;
      const h = c.live_copies >= target ? "healthy" : c.live_copies === 0 ? "missing" : "below target";
      const copies = c.locations.map((l) => l.node + (l.domain ? " [" + l.domain + "]" : "") + ": " + (states.get(l.node) || (l.alive ? "alive" : "dead"))).join(", ") || "none";
      body.append(el("tr", { class: "member", "data-chunk": c.id },
        el("td", {}, si), el("td", {}, role), el("td", { title: c.id }, c.id.slice(0, 12)),
        el("td", { class: "num" }, bytes(c.raw_len)), el("td", {}, copies),
        el("td", { class: h === "healthy" ? "h-healthy" : h === "missing" ? "h-lost" : "h-degraded" }, h + " (" + c.live_copies + "/" + target + ")"),
        el("td", {}, el("button", { class: "hex-btn", onclick: () => showHex(c.id) }, "hex"))));
    }
  });
}

function hexDump(hex) {
  const lines = [];
  for (let off = 0; off * 2 < hex.length; off += 16) {
    const chunk = hex.slice(off * 2, off * 2 + 32);
    let h = "", a = "";
    for (let i = 0; i < 16; i++) {
      if (i * 2 < chunk.length) {
        const b = parseInt(chunk.substr(i * 2, 2), 16);
        h += chunk.substr(i * 2, 2) + " ";
        a += b >= 32 && b < 127 ? String.fromCharCode(b) : ".";
      } else h += "   ";
      if (i === 7) h += " ";
    }
    lines.push(off.toString(16).padStart(8, "0") + "  " + h + " |" + a + "|");
  }
  return lines.join("\n");
}

async function showHex(id) {
  hexChunk = id;
  $("hex").hidden = false;
  $("hex-chunk").textContent = id;
  $("hex-info").textContent = "reading…";
  $("hex-view").textContent = "";
  try {
    const p = await api("/api/preview?" + new URLSearchParams({ file: openFile, chunk: id }));
    if (hexChunk !== id) return;
    $("hex-info").textContent = "first " + bytes(p.len) + " of " + bytes(p.raw_len) + " from " + p.node + "; " + p.verified;
    $("hex-view").textContent = hexDump(p.hex);
  } catch (e) {
    $("hex-info").textContent = "cannot read: " + e.message;
  }
}

// ---------------------------------------------------------------- what-if

function whatIfChanged() {
  const on = marked.size > 0;
  $("whatif-banner").hidden = !on;
  $("whatif-nodes").textContent = [...marked].join(", ");
  if (lastStatus) renderCluster(lastStatus);
  refreshFiles();
}

// ------------------------------------------------------------------- live

// For load-time measurements: the first live data on screen, and how old
// each update was (server computed it -> painted) in `dfsUpdateMs`.
window.dfsUpdateMs = [];

function render(s, atMs) {
  lastStatus = s;
  renderSummary(s);
  renderCluster(s);
  renderRepair(s);
  if (!performance.getEntriesByName("dfs-first-data").length) performance.mark("dfs-first-data");
  if (atMs) requestAnimationFrame(() => { window.dfsUpdateMs.push(Date.now() - atMs); if (window.dfsUpdateMs.length > 1000) window.dfsUpdateMs.shift(); });
  const key = s.files + "/" + s.under_protected_total + "/" + s.chunks;
  if (key !== filesKey) { filesKey = key; refreshFiles(); }
}
let filesKey = null;

function applyFull(doc) {
  nodesById.clear();
  for (const n of doc.nodes) nodesById.set(n.id, n);
  render(doc, doc.at_ms);
}

function applyDelta(d) {
  for (const n of d.nodes) nodesById.set(n.id, n);
  const base = d.status || lastStatus;
  const s = Object.assign({}, base, { nodes: d.order.map((id) => nodesById.get(id)).filter(Boolean) });
  for (const id of [...nodesById.keys()]) if (!d.order.includes(id)) nodesById.delete(id);
  render(s, d.at_ms);
}

function connState(ok, text) {
  $("conn").textContent = text;
  $("conn").classList.toggle("bad", !ok);
}

function connect() {
  const es = new EventSource("/api/events" + (token ? "?token=" + encodeURIComponent(token) : ""));
  es.addEventListener("status", (e) => { applyFull(JSON.parse(e.data)); connState(true, "live"); });
  es.addEventListener("delta", (e) => { if (lastStatus) applyDelta(JSON.parse(e.data)); connState(true, "live"); });
  es.addEventListener("action", (e) => {
    const a = JSON.parse(e.data);
    logEvent(a.action + (a.node ? " " + a.node : "") + ": " + a.message, !a.ok);
  });
  // EventSource reconnects by itself; the server then sends the whole status.
  es.onerror = () => connState(false, "disconnected; reconnecting…");
}

let slowBusy = false;
async function refreshFiles() {
  if (slowBusy) return;
  slowBusy = true;
  try {
    await loadFiles();
    await loadFile();
  } catch (e) {
    connState(false, "disconnected: " + e.message);
  } finally {
    slowBusy = false;
  }
}

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  prefix = $("prefix").value;
  cursor = null; pageStart = [null];
  refreshFiles();
});
$("next").addEventListener("click", () => { if (nextAfter) { cursor = nextAfter; pageStart.push(cursor); refreshFiles(); } });
$("first").addEventListener("click", () => { cursor = null; pageStart = [null]; refreshFiles(); });
$("file-close").addEventListener("click", () => { openFile = null; $("file").hidden = true; });
$("file-download").addEventListener("click", () => { if (openFile) download(openFile); });
$("inc-close").addEventListener("click", () => { openIncident = null; $("incident").hidden = true; });
$("whatif-clear").addEventListener("click", () => { marked.clear(); whatIfChanged(); });
window.addEventListener("resize", () => { if (lastStatus) drawFlows(lastStatus); });

api("/api/ui").then((u) => { ui = u; dataReady(); $("rebalance-btn").disabled = !u.actions; }).catch(() => {});
connect();
setInterval(refreshFiles, SLOW_MS);
loadCoordinators().catch(() => {});
setInterval(() => loadCoordinators().catch(() => {}), SLOW_MS);
