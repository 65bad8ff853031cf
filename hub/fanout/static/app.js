// Live dashboard: one WebSocket to /ws, subscribed to every charger the token may see.
// It keeps the last stream sequence it saw and resumes from it after any disconnect.
"use strict";

const state = {
  token: null,
  seq: null,          // last stream sequence received; sent back as `since` on reconnect
  chargers: new Map(), // id -> snapshot-shaped object, kept current by live messages
  history: new Map(),  // id -> [{t, power, energy}] for the chart (bounded)
  log: [],
  retry: 0,
};
const HISTORY = 120, LOG = 100;
const $ = (sel) => document.querySelector(sel);

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("token");
  if (fromHash) {
    localStorage.setItem("hub.token", fromHash);
    history.replaceState(null, "", location.pathname); // keep the token out of the address bar
    return fromHash;
  }
  return localStorage.getItem("hub.token");
}

function showLogin(message) {
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token-input").value.trim();
  localStorage.setItem("hub.token", state.token);
  $("#login").hidden = true;
  connect();
});

function setLink(text, on) {
  const link = $("#link");
  link.textContent = text;
  link.dataset.state = on ? "live" : "down";
  link.className = "pill " + (on ? "on" : "off");
}

function connect() {
  if (!state.token) { showLogin(); return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  ws.onopen = () => {
    state.retry = 0;
    setLink("live", true);
    loadRefused();
    const request = { op: "subscribe", chargers: ["*"] };
    if (state.seq !== null) request.since = state.seq;
    ws.send(JSON.stringify(request));
  };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = (event) => {
    setLink(`reconnecting (${event.code})`, false);
    if (event.code === 1008) {
      showLogin(event.reason || "access refused");
      if (/expired|invalid|missing/.test(event.reason)) return;
    }
    const delay = Math.min(10000, 250 * 2 ** state.retry++);
    setTimeout(connect, delay);
  };
}

function charger(id) {
  let c = state.chargers.get(id);
  if (!c) {
    c = { chargePointId: id, connected: false, connectors: [], transactions: [], dataTransfers: [] };
    state.chargers.set(id, c);
  }
  return c;
}

function connector(c, id) {
  let k = c.connectors.find((x) => x.connectorId === id);
  if (!k) { k = { connectorId: id, status: "", meter: {} }; c.connectors.push(k); }
  return k;
}

// The server could not resume after our seq: fresh snapshots follow the error and replace
// everything shown. After `resume_beyond_end` (the stream was recreated, say with the data
// directory) our seq belongs to a stream that is gone, so it must not be sent again.
const RESETS = new Set(["resume_beyond_end", "resume_unavailable"]);

function reset() {
  state.seq = null;
  state.chargers.clear();
  state.history.clear();
}

function handle(m) {
  if (m.type === "error") {
    addLog(`error ${m.code}: ${m.message}`);
    if (RESETS.has(m.code)) reset();
    schedule();
    return;
  }
  if (typeof m.seq === "number" && (state.seq === null || m.seq > state.seq)) state.seq = m.seq;
  const c = m.type === "snapshot" ? null : charger(m.chargePointId);
  switch (m.type) {
    case "snapshot": state.chargers.set(m.chargePointId, m); break;
    case "connection":
      c.connected = m.state !== "disconnected";
      if (m.state === "connected") Object.assign(c, { lastSeen: m.receivedAt, ocppVersion: m.ocppVersion });
      break;
    case "boot": c.boot = m.boot; break;
    case "status": Object.assign(connector(c, m.connectorId), { status: m.status, errorCode: m.errorCode }); break;
    case "meter": {
      const k = connector(c, m.connectorId);
      for (const r of m.readings) k.meter[r.phase ? `${r.measurand}/${r.phase}` : r.measurand] = r;
      break;
    }
    case "transaction.started":
      c.transactions = c.transactions.filter((t) => t.transactionId !== m.transactionId);
      c.transactions.push({ transactionId: m.transactionId, connectorId: m.connectorId, idTag: m.idTag,
        meterStartWh: m.meterStartWh, startedAt: m.ts, energyWh: 0, powerW: null, soc: null });
      break;
    case "transaction.updated": {
      const t = c.transactions.find((x) => x.transactionId === m.transactionId);
      if (t) Object.assign(t, { energyWh: m.energyWh, powerW: m.powerW ?? t.powerW, soc: m.soc ?? t.soc });
      break;
    }
    case "transaction.stopped":
      c.transactions = c.transactions.filter((t) => t.transactionId !== m.transactionId);
      break;
    case "allocation":
      Object.assign(connector(c, m.connectorId), { limitA: m.admitted ? m.limitA : 0 });
      scheduleSites();
      break;
    case "data_transfer":
      c.dataTransfers = c.dataTransfers.filter((d) => !(d.vendorId === m.transfer.vendorId && d.messageId === m.transfer.messageId));
      c.dataTransfers.push(m.transfer);
      break;
  }
  const id = m.chargePointId;
  const cur = state.chargers.get(id);
  const power = livePower(cur), energy = liveEnergy(cur);
  if (power !== null || energy !== null) {
    const h = state.history.get(id) || [];
    h.push({ t: m.receivedAt, power, energy });
    if (h.length > HISTORY) h.shift();
    state.history.set(id, h);
  }
  if (m.type !== "snapshot") addLog(describe(m));
  schedule();
}

function livePower(c) {
  for (const t of c.transactions || []) if (t.powerW != null) return t.powerW;
  for (const k of c.connectors || []) { const r = k.meter && k.meter["Power.Active.Import"]; if (r) return scale(r); }
  return null;
}
function liveEnergy(c) {
  for (const t of c.transactions || []) return t.energyWh;
  return null;
}
function liveSoc(c) {
  for (const t of c.transactions || []) if (t.soc != null) return t.soc;
  for (const k of c.connectors || []) { const r = k.meter && k.meter.SoC; if (r) return r.value; }
  return null;
}
function scale(r) { return r.unit === "kW" || r.unit === "kWh" ? r.value * 1000 : r.value; }
const kw = (w) => (w == null ? "–" : `${(w / 1000).toFixed(2)} kW`);
const kwh = (wh) => (wh == null ? "–" : `${(wh / 1000).toFixed(2)} kWh`);

function describe(m) {
  const when = new Date(m.receivedAt).toLocaleTimeString();
  const what = {
    "connection": () => m.state,
    "boot": () => `boot ${m.boot.vendor} ${m.boot.model} ${m.boot.status}`,
    "status": () => `connector ${m.connectorId} ${m.status}`,
    "meter": () => `meter connector ${m.connectorId} (${m.readings.length} readings)`,
    "transaction.started": () => `transaction ${m.transactionId} started (${m.idTag})`,
    "transaction.updated": () => `transaction ${m.transactionId} ${kwh(m.energyWh)} ${kw(m.powerW)}`,
    "transaction.stopped": () => `transaction ${m.transactionId} stopped: ${kwh(m.energyWh)}, ${m.reason}`,
    "data_transfer": () => `DataTransfer ${m.transfer.vendorId}/${m.transfer.messageId}`,
    "security_event": () => `security event ${m.event.type}${m.event.critical ? " (critical)" : ""}`,
    "command": () => `command ${m.action}: ${m.status}`,
  }[m.type];
  return `${when} #${m.seq} ${m.chargePointId} ${what ? what() : m.type}`;
}

function addLog(line) {
  state.log.unshift(line);
  if (state.log.length > LOG) state.log.pop();
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function render() {
  $("#seq").textContent = state.seq === null ? "" : `seq ${state.seq}`;
  const grid = $("#chargers");
  const ids = [...state.chargers.keys()].sort();
  $("#charger-count").textContent = `(${ids.length})`;
  for (const card of [...grid.children]) if (!state.chargers.has(card.dataset.charger)) card.remove();
  for (const id of ids) {
    const c = state.chargers.get(id);
    let card = grid.querySelector(`[data-charger="${CSS.escape(id)}"]`);
    if (!card) {
      card = $("#charger-card").content.firstElementChild.cloneNode(true);
      card.dataset.charger = id;
      card.querySelector(".id").textContent = id;
      grid.appendChild(card);
    }
    const conn = card.querySelector(".conn");
    conn.textContent = c.connected ? "online" : "offline";
    conn.className = "pill conn " + (c.connected ? "on" : "off");
    const version = c.ocppVersion ? `OCPP ${c.ocppVersion}` : "";
    card.querySelector(".meta").textContent = [c.boot ? `${c.boot.vendor} ${c.boot.model}` : "", version]
      .filter(Boolean).join(" · ");
    card.querySelector(".power").textContent = kw(livePower(c));
    card.querySelector(".energy").textContent = kwh(liveEnergy(c));
    const soc = liveSoc(c);
    card.querySelector(".soc").textContent = soc == null ? "–" : `${soc.toFixed(0)} %`;
    card.querySelector(".connectors").textContent = (c.connectors || [])
      .map((k) => `#${k.connectorId} ${k.status || "?"}${k.limitA == null ? "" : ` ≤${k.limitA} A`}`)
      .join("  ");
    chart(card.querySelector("canvas"), state.history.get(id) || []);
  }
  const body = $("#sessions tbody");
  body.replaceChildren();
  for (const id of ids) {
    for (const t of state.chargers.get(id).transactions || []) {
      const row = document.createElement("tr");
      row.dataset.transaction = t.transactionId;
      for (const text of [id, t.connectorId, t.transactionId, t.idTag, kwh(t.energyWh), kw(t.powerW),
        t.soc == null ? "–" : `${t.soc.toFixed(0)} %`, t.startedAt]) {
        const cell = document.createElement("td");
        cell.textContent = String(text ?? "");
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }
  const log = $("#log");
  log.replaceChildren(...state.log.map((line) => { const li = document.createElement("li"); li.textContent = line; return li; }));
}

function chart(canvas, points) {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  const series = [["power", "#58a6ff"], ["energy", "#3fb950"]];
  for (const [key, color] of series) {
    const values = points.map((p) => p[key]).filter((v) => v != null);
    if (values.length < 2) continue;
    const max = Math.max(...values, 1);
    g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
    let i = 0;
    for (const p of points) {
      if (p[key] == null) continue;
      const x = (i++ / (values.length - 1)) * (w - 4) + 2, y = h - 3 - (p[key] / max) * (h - 6);
      i === 1 ? g.moveTo(x, y) : g.lineTo(x, y);
    }
    g.stroke();
  }
}

// Refused handshakes are no charger's messages: read from the REST API, now and then.
const REFUSED_EVERY_MS = 10000;
async function loadRefused() {
  if (!state.token) return;
  try {
    const response = await fetch("/api/v1/refusals", { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) return;
    const { refused } = await response.json();
    $("#refused-count").textContent = `(${refused.length})`;
    const body = $("#refused tbody");
    body.replaceChildren(...refused.map((r) => {
      const row = document.createElement("tr");
      row.dataset.charger = r.chargePointId;
      for (const text of [r.chargePointId, r.reason, r.lastAttemptAt, r.remoteAddress,
        r.offeredSubprotocols.join(", ") || "none", r.attempts]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        row.appendChild(cell);
      }
      return row;
    }));
  } catch (error) {
    // The next round tries again; the live view does not depend on it.
  }
}
setInterval(loadRefused, REFUSED_EVERY_MS);

// Sites (docs/smart-charging.md): each node's limit against what the cars below it draw
// and are allocated, from the REST API when the page opens and again whenever the allocator
// decides something (an `allocation` message), at most once a second.
const SITES_AT_MOST_EVERY_MS = 1000;
let sitesDue = null;
function scheduleSites() {
  if (sitesDue !== null) return;
  sitesDue = setTimeout(() => { sitesDue = null; loadSites(); }, SITES_AT_MOST_EVERY_MS);
}
const peak = (phases) => Math.max(0, ...Object.values(phases || {}));
async function loadSites() {
  if (!state.token) return;
  try {
    const response = await fetch("/api/v1/sites", { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) return;
    const { nodes } = await response.json();
    $("#sites-section").hidden = nodes.length === 0;
    $("#sites tbody").replaceChildren(...nodes.map((n) => {
      const row = document.createElement("tr");
      row.dataset.node = n.nodeId;
      const load = peak(n.loadA), allocated = peak(n.allocatedA);
      for (const text of [n.nodeId, n.parent || "–", `${n.limitA.toFixed(1)} A (${n.source})`,
        `${allocated.toFixed(1)} A`, `${load.toFixed(1)} A`]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      const bar = document.createElement("td");
      const meter = document.createElement("meter");
      meter.max = n.limitA || 1; meter.value = load; meter.high = (n.limitA || 1) * 0.95;
      bar.appendChild(meter);
      row.appendChild(bar);
      return row;
    }));
  } catch (error) {
    // The next decision asks again; the live view does not depend on it.
  }
}

state.token = readToken();
connect();
loadSites();
