"use strict";
const $ = (id) => document.getElementById(id);
const state = { token: null, role: null, userId: null, socket: null, retry: 0,
                copies: new Map(), orders: new Map() };

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: {
    "content-type": "application/json", ...(state.token ? { authorization: `Bearer ${state.token}` } : {}),
    ...(options.headers || {}) } });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(body && body.error ? body.error.message : response.statusText);
    error.code = body && body.error ? body.error.code : "http_" + response.status;
    throw error;
  }
  return body;
}

function setConnection(label, kind) { const el = $("conn"); el.textContent = label; el.dataset.state = kind; }

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

// follower ---------------------------------------------------------------------------------
function renderCopies() {
  const rows = [...state.copies.values()].sort((a, b) => (b.created_at || b.updated_at).localeCompare(a.created_at || a.updated_at)).slice(0, 200);
  const body = $("copies");
  body.replaceChildren(...rows.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.legId = c.leg_id;
    tr.dataset.orderId = c.order_id;
    tr.append(cell(new Date(c.created_at || c.updated_at).toLocaleTimeString()), cell(c.symbol), cell(c.side),
      cell(c.qty), cell(c.status, `status status-${c.status}`), cell(c.reason),
      cell(c.latency_ms != null ? `${Math.round(c.latency_ms)} ms` : null));
    return tr;
  }));
}

function upsertCopy(copy) {
  const known = state.copies.get(copy.leg_id) || {};
  state.copies.set(copy.leg_id, { ...known, ...copy, created_at: known.created_at || copy.created_at || copy.updated_at });
}

async function loadFollower() {
  const [accounts, subscriptions, copies] = await Promise.all([
    api("/v1/accounts"), api("/v1/subscriptions"), api("/v1/copies?limit=100")]);
  $("accounts").replaceChildren(...accounts.map((a) => {
    const tr = document.createElement("tr");
    const button = document.createElement("button");
    button.className = "secondary";
    button.textContent = a.halted ? "Resume" : "Halt";
    button.setAttribute("aria-label", `${a.halted ? "Resume" : "Halt"} copying into ${a.label}`);
    button.onclick = async () => { await api(`/v1/accounts/${a.account_id}/${a.halted ? "resume" : "halt"}`, { method: "POST" }); loadFollower(); };
    const action = document.createElement("td"); action.append(button);
    tr.append(cell(a.label), cell(a.broker), cell(a.halted ? "halted" : "copying"), action);
    return tr;
  }));
  $("subscriptions").replaceChildren(...subscriptions.map((s) => {
    const tr = document.createElement("tr");
    const button = document.createElement("button");
    button.className = "secondary";
    button.textContent = s.paused ? "Resume" : "Pause";
    button.onclick = async () => { await api(`/v1/subscriptions/${s.subscription_id}`, { method: "PATCH", body: JSON.stringify({ paused: !s.paused }) }); loadFollower(); };
    const action = document.createElement("td"); action.append(button);
    tr.append(cell(s.master_id.slice(0, 8)), cell(JSON.stringify(s.sizing)), cell(s.paused ? "paused" : "active"), action);
    return tr;
  }));
  state.copies.clear();
  copies.forEach(upsertCopy);
  renderCopies();
}

// master -----------------------------------------------------------------------------------
const SEGMENTS = [["filled", "var(--ok)"], ["partially_filled", "#2ea043"], ["accepted", "var(--accent)"],
  ["skipped", "var(--skip)"], ["canceled", "#6e7681"], ["rejected", "var(--bad)"], ["failed", "#ff7b72"]];

function orderStatusLabel(o) {
  if (o.status === "replicated") return "all settled";
  if (o.status === "replicating") return "replicating";
  return "accepted";
}

function renderOrders() {
  const orders = [...state.orders.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, 50);
  $("orders").replaceChildren(...orders.map((o) => {
    const tr = document.createElement("tr");
    tr.dataset.orderId = o.order_id;
    const total = o.legs.total || 0;
    const bar = document.createElement("div"); bar.className = "bar";
    bar.setAttribute("role", "img");
    const parts = SEGMENTS.filter(([k]) => o.legs.by_status[k]).map(([k, color]) => {
      const span = document.createElement("span");
      span.style.width = `${(100 * o.legs.by_status[k]) / Math.max(total, 1)}%`;
      span.style.background = color; span.title = `${k}: ${o.legs.by_status[k]}`;
      return span;
    });
    bar.append(...parts);
    bar.setAttribute("aria-label", Object.entries(o.legs.by_status).map(([k, v]) => `${k} ${v}`).join(", ") || "no legs yet");
    const progress = document.createElement("td"); progress.append(bar);
    const label = orderStatusLabel(o);
    tr.append(cell(new Date(o.created_at).toLocaleTimeString()), cell(o.order_id.slice(0, 8)), cell(o.symbol),
      cell(o.side), cell(o.qty), cell(Object.entries(o.legs.by_status).map(([k, v]) => `${v} ${k}`).join(", ") || "0"),
      progress, cell(label, `status status-${label.replace(" ", "-")}` + (label === "accepted" ? " status-accepted-order" : "")),
      cell(o.fanout_ms != null ? `${Math.round(o.fanout_ms)} ms` : null));
    tr.querySelector(".status").dataset.testid = "order-status";
    return tr;
  }));
  renderChart(orders);
}

function renderChart(orders) {
  const points = orders.filter((o) => o.fanout_ms != null).slice(0, 30).reverse();
  const svg = $("chart");
  const width = svg.clientWidth || 600, height = 90, max = Math.max(1, ...points.map((p) => p.fanout_ms));
  const barWidth = Math.min(36, Math.max(4, Math.floor(width / Math.max(points.length, 1)) - 4));
  const ns = "http://www.w3.org/2000/svg";
  const nodes = points.map((p, i) => {
    const h = Math.max(2, ((height - 16) * p.fanout_ms) / max);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", i * (barWidth + 4)); rect.setAttribute("y", height - 12 - h);
    rect.setAttribute("width", barWidth); rect.setAttribute("height", h); rect.setAttribute("fill", "#4da3ff");
    const title = document.createElementNS(ns, "title"); title.textContent = `${Math.round(p.fanout_ms)} ms`;
    rect.append(title);
    return rect;
  });
  const caption = document.createElementNS(ns, "text");
  caption.setAttribute("x", 0); caption.setAttribute("y", height - 1);
  caption.textContent = points.length ? `fan-out latency, last ${points.length} orders (max ${Math.round(max)} ms)` : "no settled orders yet";
  svg.replaceChildren(...nodes, caption);
}

async function loadMaster() {
  const [accounts, orders] = await Promise.all([api("/v1/accounts"), api("/v1/orders?limit=50")]);
  $("order-account").replaceChildren(...accounts.map((a) => {
    const option = document.createElement("option"); option.value = a.account_id; option.textContent = `${a.label} (${a.broker})`; return option;
  }));
  state.orders.clear();
  orders.forEach((o) => state.orders.set(o.order_id, o));
  renderOrders();
}

function applyOrderEvent(event) {
  const known = state.orders.get(event.order_id);
  if (!known) { loadMaster(); return; }
  state.orders.set(event.order_id, { ...known, status: event.status, fanout_ms: event.fanout_ms,
    legs: { total: event.legs_total, by_status: event.by_status } });
  renderOrders();
}

$("order-type").addEventListener("change", () => { $("order-limit").disabled = $("order-type").value !== "limit"; });
$("order-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("order-error").textContent = "";
  const body = { client_order_id: crypto.randomUUID().replace(/-/g, ""), account_id: $("order-account").value,
    symbol: $("order-symbol").value.trim().toUpperCase(), side: $("order-side").value, qty: $("order-qty").value.trim(),
    type: $("order-type").value, time_in_force: $("order-tif").value };
  if (body.type === "limit") body.limit_price = $("order-limit").value.trim();
  try {
    const accepted = await api("/v1/orders", { method: "POST", body: JSON.stringify(body) });
    const summary = await api(`/v1/orders/${accepted.order_id}`);
    state.orders.set(summary.order_id, { ...summary, ...(state.orders.get(summary.order_id) || {}) });
    renderOrders();
  } catch (error) { $("order-error").textContent = `${error.code}: ${error.message}`; }
});

// socket -----------------------------------------------------------------------------------
async function connect() {
  if (!state.token) return;
  setConnection("connecting…", "idle");
  let wsToken;
  try { wsToken = (await api("/v1/ws/token", { method: "POST" })).token; }
  catch (error) { if (error.code === "token_expired") return signOut("session expired"); return retry(); }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/ws`, ["copytrade.v1", wsToken]);
  state.socket = socket;
  socket.onopen = () => { state.retry = 0; setConnection("live", "live"); };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "snapshot") {
      if (event.copies) { state.copies.clear(); event.copies.forEach(upsertCopy); renderCopies(); }
      if (event.orders) { state.orders.clear(); event.orders.forEach((o) => state.orders.set(o.order_id, o)); renderOrders(); }
    } else if (event.type === "leg.updated") { upsertCopy(event); renderCopies(); }
    else if (event.type === "order.updated") { applyOrderEvent(event); }
    else if (event.type === "resync") { (state.role === "follower" ? loadFollower : loadMaster)(); }
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    if (event.code === 1008 && event.reason === "session expired") return signOut("session expired");
    retry();
  };
}

function retry() {
  setConnection("disconnected, retrying", "down");
  state.retry = Math.min(state.retry + 1, 6);
  setTimeout(connect, 250 * 2 ** state.retry);
}

function signOut(message) {
  const socket = state.socket; state.socket = null; state.token = null;
  if (socket) socket.close();
  sessionStorage.removeItem("copytrade.token");
  $("follower-view").hidden = $("master-view").hidden = true;
  $("signin").hidden = false; $("signout").hidden = true; $("who").textContent = "";
  setConnection(message || "signed out", "idle");
}

async function start(token) {
  const c = claims(token);
  if (c.role !== "follower" && c.role !== "master") throw Object.assign(new Error("this dashboard is for masters and followers"), { code: "forbidden" });
  Object.assign(state, { token, role: c.role, userId: c.sub });
  sessionStorage.setItem("copytrade.token", token);
  $("signin").hidden = true; $("signout").hidden = false;
  $("who").textContent = `${c.role}`;
  $(c.role === "follower" ? "follower-view" : "master-view").hidden = false;
  await (c.role === "follower" ? loadFollower() : loadMaster());
  connect();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    const body = await api("/v1/auth/token", { method: "POST", body: JSON.stringify({ email: $("email").value, password: $("password").value }) });
    await start(body.access_token);
  } catch (error) { $("signin-error").textContent = error.message; }
});
$("signout").addEventListener("click", () => signOut());

const saved = sessionStorage.getItem("copytrade.token");
if (saved && claims(saved).exp * 1000 > Date.now()) start(saved).catch(() => signOut());
