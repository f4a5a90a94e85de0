// A master's orders: place, amend, cancel, and their fan-out, live from order.updated events.
import { api } from "./api.js";
import { $, button, cell, clearErrors, el, short, showErrors, time } from "./dom.js";
import { baseline, recordSettled, renderLatency, renderSettled } from "./chart.js";
import { loadFollowerCount, loadProfile } from "./invites.js";

const orders = new Map();
const SEGMENTS = [["filled", "var(--ok)"], ["partially_filled", "#2ea043"], ["accepted", "var(--accent)"],
  ["skipped", "var(--skip)"], ["canceled", "#6e7681"], ["rejected", "var(--bad)"], ["failed", "#ff7b72"]];
const LABELS = { replicated: "all settled", replicating: "replicating", dead_lettered: "dead-lettered" };

function progressBar(o) {
  const total = Math.max(o.legs.total || 0, 1);
  const bar = el("div", { class: "bar", role: "img",
    "aria-label": Object.entries(o.legs.by_status).map(([k, v]) => `${k} ${v}`).join(", ") || "no legs yet" });
  bar.append(...SEGMENTS.filter(([k]) => o.legs.by_status[k]).map(([k, color]) => {
    const span = el("span", { title: `${k}: ${o.legs.by_status[k]}` });
    span.style.width = `${(100 * o.legs.by_status[k]) / total}%`;
    span.style.background = color;
    return span;
  }));
  return el("td", {}, bar);
}

const OPEN = new Set(["planned", "submitting", "unknown", "retrying", "accepted", "partially_filled"]);

// Something of it may still change at a broker: legs not all settled, or the master's own order open.
function isOpen(o) {
  if (o.cancel_requested || o.status === "dead_lettered") return false;
  return o.status !== "replicated" || Boolean(o.master_execution && OPEN.has(o.master_execution.status));
}

function orderRow(o) {
  const label = LABELS[o.status] || "accepted";
  const status = cell(o.cancel_requested ? `${label}, cancel requested` : label,
    `status status-${label.replace(" ", "-")}${label === "accepted" ? " status-accepted-order" : ""}`);
  status.dataset.testid = "order-status";
  const actions = !isOpen(o) ? [] : [
    button("Amend", () => openAmend(o), { "aria-label": `Amend order ${short(o.order_id)}` }),
    button("Cancel", () => cancel(o), { "aria-label": `Cancel order ${short(o.order_id)}` })];
  return el("tr", { dataset: { orderId: o.order_id } },
    cell(time(o.created_at)), cell(short(o.order_id)), cell(o.symbol), cell(o.side), cell(o.qty, "order-qty"),
    cell(o.limit_price, "order-limit"),
    cell(Object.entries(o.legs.by_status).map(([k, v]) => `${v} ${k}`).join(", ") || "0"), progressBar(o),
    status, cell(o.fanout_ms != null ? `${Math.round(o.fanout_ms)} ms` : null), el("td", { class: "actions" }, ...actions));
}

export function renderOrders() {
  const list = [...orders.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, 50);
  $("orders").replaceChildren(...list.map(orderRow));
  renderLatency(list);
}

async function refreshOrder(orderId) {
  const summary = await api(`/v1/orders/${orderId}`);
  // No baseline: copies of an order first seen now settle while the page watches.
  orders.set(orderId, summary);
  renderOrders();
}

export function resetOrders(list) {
  orders.clear();
  list.forEach((o) => { orders.set(o.order_id, o); baseline(o); });
  renderOrders();
  renderSettled();
}

export function applyOrderEvent(event) {
  recordSettled(event);
  const known = orders.get(event.order_id);
  const settled = ["replicated", "dead_lettered"].includes(event.status);
  if (known) {
    orders.set(event.order_id, { ...known, status: event.status, fanout_ms: event.fanout_ms,
      legs: { total: event.legs_total, by_status: event.by_status } });
    renderOrders();
  }
  // Unknown yet (its event can beat the answer to our own POST), or settled: the summary again
  // (the master's own execution is not in the event).
  if (!known || settled) refreshOrder(event.order_id).catch(() => {});
  if (settled) loadFollowerCount().catch(() => {});
}

async function cancel(o) {
  $("order-error").textContent = "";
  try {
    await api(`/v1/orders/${o.order_id}/cancel`, { method: "POST" });
    await refreshOrder(o.order_id);
  } catch (error) { $("order-error").textContent = `${error.code}: ${error.message}`; }
}

function openAmend(o) {
  const form = $("amend-form");
  clearErrors(form);
  $("amend-error").textContent = "";
  form.dataset.orderId = o.order_id;
  $("amend-order").textContent = `${short(o.order_id)} ${o.side} ${o.qty} ${o.symbol}`;
  $("amend-qty").value = o.qty;
  $("amend-limit").value = o.limit_price || "";
  $("amend-limit").disabled = !o.limit_price;
  form.hidden = false;
}

async function amend(event) {
  event.preventDefault();
  const form = $("amend-form");
  clearErrors(form);
  $("amend-error").textContent = "";
  const body = { qty: $("amend-qty").value.trim() };
  if (!$("amend-limit").disabled && $("amend-limit").value.trim()) body.limit_price = $("amend-limit").value.trim();
  try {
    await api(`/v1/orders/${form.dataset.orderId}`, { method: "PATCH", body });
    form.hidden = true;
    await refreshOrder(form.dataset.orderId);
  } catch (error) { showErrors(form, error, $("amend-error")); }
}

async function placeOrder(event) {
  event.preventDefault();
  $("order-error").textContent = "";
  const body = { client_order_id: crypto.randomUUID().replace(/-/g, ""), account_id: $("order-account").value,
    symbol: $("order-symbol").value.trim().toUpperCase(), side: $("order-side").value, qty: $("order-qty").value.trim(),
    type: $("order-type").value, time_in_force: $("order-tif").value };
  if (body.type === "limit") body.limit_price = $("order-limit").value.trim();
  try {
    const accepted = await api("/v1/orders", { method: "POST", body });
    await refreshOrder(accepted.order_id);
  } catch (error) { $("order-error").textContent = `${error.code}: ${error.message}`; }
}

export function setOrderAccounts(accounts) {
  $("order-account").replaceChildren(...accounts.map((a) =>
    el("option", { value: a.account_id, text: `${a.label} (${a.broker})` })));
}

export async function loadMaster() {
  const [, list] = await Promise.all([loadProfile(), api("/v1/orders?limit=50")]);
  resetOrders(list);
}

$("order-type").addEventListener("change", () => { $("order-limit").disabled = $("order-type").value !== "limit"; });
$("order-form").addEventListener("submit", placeOrder);
$("amend-form").addEventListener("submit", amend);
$("amend-close").addEventListener("click", () => { $("amend-form").hidden = true; });
