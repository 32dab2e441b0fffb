// dfs-sim dashboard: plain JavaScript, no framework, no build step.
// Reads only; polls the JSON API at most once a second.
"use strict";

const POLL_MS = 1000;
const PAGE = 50;
const token = new URLSearchParams(location.search).get("token");
const marked = new Set();          // what-if: nodes marked failed
let pageStart = [null];            // cursors of the pages seen, for "first"
let cursor = null, nextAfter = null, prefix = "";
let openFile = null, hexChunk = null;
let lastStatus = null;

const $ = (id) => document.getElementById(id);

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

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------------------------------------------------------------- cluster

function nodeState(n) {
  if (n.state === "dead") return "dead";
  if (n.draining) return "draining";
  if (n.spare) return "spare";
  return n.state;
}

function toggleMark(ids) {
  const all = ids.every((id) => marked.has(id));
  for (const id of ids) all ? marked.delete(id) : marked.add(id);
  whatIfChanged();
}

function renderCluster(s) {
  const groups = new Map();
  for (const n of s.nodes) {
    const d = n.domain || "cluster";
    if (!groups.has(d)) groups.set(d, []);
    groups.get(d).push(n);
  }
  const root = $("domains");
  root.replaceChildren();
  for (const [d, nodes] of groups) {
    const tiles = el("div", { class: "tiles" });
    for (const n of nodes) {
      const st = nodeState(n);
      const cap = n.free_bytes != null ? n.bytes + n.free_bytes : null;
      const pct = cap ? Math.min(100, (100 * n.bytes) / cap) : 0;
      const t = el("div", {
        class: "tile " + st + (marked.has(n.id) ? " marked" : ""),
        "data-node": n.id, "data-state": st, title: n.addr,
        onclick: () => toggleMark([n.id]),
      },
        el("span", { class: "id" }, n.id), el("span", { class: "state" }, st),
        el("div", { class: "bar", title: pct.toFixed(1) + "% used" }, el("div", { style: "width:" + pct + "%" })),
        el("div", { class: "small" }, bytes(n.bytes) + " used" + (cap ? " of " + bytes(cap) : "")),
        el("div", { class: "small" }, n.chunks + " chunks"),
        el("div", { class: "small" }, "heartbeat " + (n.last_heartbeat_ms_ago == null ? "never" : secs(n.last_heartbeat_ms_ago) + " ago")));
      tiles.append(t);
    }
    root.append(el("div", { class: "domain", "data-domain": d },
      el("h3", { onclick: () => toggleMark(nodes.map((n) => n.id)), title: "mark the whole domain" },
        d + " (" + nodes.length + ")"), tiles));
  }
}

function renderRepair(s) {
  const r = s.repair;
  const left = r.waiting_bytes + r.in_flight_bytes;
  const eta = left > 0 && r.rate_bytes_per_s > 0 ? secs((1000 * left) / r.rate_bytes_per_s) : "–";
  const rows = [
    ["waiting", r.waiting_chunks + " chunks (" + bytes(r.waiting_bytes) + ")"],
    ["in flight", r.in_flight_chunks + " chunks (" + bytes(r.in_flight_bytes) + ")"],
    ["done", r.done_chunks + " chunks (" + bytes(r.done_bytes) + ")"],
    ["failed", r.failed],
    ["rate", (r.rate_bytes_per_s / 1e6).toFixed(1) + " MB/s"],
    ["ETA", eta],
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
}

function renderSummary(s) {
  const alive = s.nodes.filter((n) => n.state === "alive").length;
  $("summary").textContent = s.files + " files, " + bytes(s.bytes) + ", " + s.chunks + " chunks · " +
    alive + "/" + s.nodes.length + " nodes alive · " + s.replication + " replica(s) + " + s.scheme +
    (s.ha ? " · HA" : "");
}

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
      healthCell(f.health)));
  }
  if (!page.files.length) body.append(el("tr", {}, el("td", { colspan: 4 }, "no files")));
  $("next").disabled = !nextAfter;
  $("page-info").textContent = "page " + pageStart.length;
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
  const f = await api("/api/files/" + openFile.split("/").map(encodeURIComponent).join("/"));
  $("file-name").textContent = f.name;
  const meta = $("file-meta");
  meta.replaceChildren();
  for (const [k, v] of [["size", bytes(f.size) + " (" + f.size + " bytes)"], ["health", f.health],
    ["protection", f.replication + " replica(s) of data + " + f.scheme],
    ["chunk size", bytes(f.chunk_size)], ["created", new Date(f.created_ms).toISOString()]]) {
    meta.append(el("span", { class: "k" }, k), el("span", { "data-k": k }, v));
  }
  const states = new Map((lastStatus ? lastStatus.nodes : []).map((n) => [n.id, nodeState(n)]));
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
  refreshNow();
}

// ------------------------------------------------------------------- loop

let timer = null, busy = false;

async function tick() {
  if (busy) return;
  busy = true;
  clearTimeout(timer);
  try {
    const s = await api("/api/status");
    lastStatus = s;
    renderSummary(s);
    renderCluster(s);
    renderRepair(s);
    await loadFiles();
    await loadFile();
    // For load-time measurements: when the first live data was on screen.
    if (!performance.getEntriesByName("dfs-first-data").length) performance.mark("dfs-first-data");
    $("conn").textContent = "live";
    $("conn").classList.remove("bad");
  } catch (e) {
    $("conn").textContent = "disconnected: " + e.message;
    $("conn").classList.add("bad");
  } finally {
    busy = false;
    timer = setTimeout(tick, POLL_MS);
  }
}

function refreshNow() { if (!busy) tick(); else setTimeout(refreshNow, 50); }

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  prefix = $("prefix").value;
  cursor = null; pageStart = [null];
  refreshNow();
});
$("next").addEventListener("click", () => { if (nextAfter) { cursor = nextAfter; pageStart.push(cursor); refreshNow(); } });
$("first").addEventListener("click", () => { cursor = null; pageStart = [null]; refreshNow(); });
$("file-close").addEventListener("click", () => { openFile = null; $("file").hidden = true; });
$("whatif-clear").addEventListener("click", () => { marked.clear(); whatIfChanged(); });
tick();
