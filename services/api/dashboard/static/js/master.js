// A master: who may copy (copy access, invites, follower count), orders (place, amend, cancel)
// and their fan-out, live from order.updated events.
import { api } from "./api.js";
import { $, button, cell, clearErrors, el, short, showErrors, time } from "./dom.js";
import { baseline, recordSettled, renderLatency, renderSettled } from "./chart.js";

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
  if (!known) { refreshOrder(event.order_id).catch(() => {}); return; }
  orders.set(event.order_id, { ...known, status: event.status, fanout_ms: event.fanout_ms,
    legs: { total: event.legs_total, by_status: event.by_status } });
  renderOrders();
  if (["replicated", "dead_lettered"].includes(event.status)) {
    // Settled: the summary again (the master's own execution is not in the event), and the count.
    refreshOrder(event.order_id).catch(() => {});
    loadFollowerCount().catch(() => {});
  }
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

async function loadFollowerCount() {
  const followers = await api("/v1/masters/me/followers");
  const active = followers.filter((f) => !f.ending_at).length;
  $("follower-count").textContent = `${active} follower${active === 1 ? "" : "s"}`;
}

async function saveAccess(event) {
  event.preventDefault();
  $("master-error").textContent = "";
  try {
    const profile = await api("/v1/masters/me", { method: "PATCH", body: { copy_access: $("copy-access").value } });
    $("master-error").replaceChildren(el("span", { class: "ok", text: `copy access: ${profile.copy_access}` }));
  } catch (error) { $("master-error").textContent = `${error.code}: ${error.message}`; }
}

async function createInvite(event) {
  event.preventDefault();
  const form = $("invite-form");
  clearErrors(form);
  $("master-error").textContent = "";
  const number = (id) => { const v = $(id).value.trim(); return /^\d+$/.test(v) ? Number(v) : v || undefined; };
  try {
    const invite = await api("/v1/masters/me/invites", { method: "POST",
      body: { max_uses: number("invite-uses"), expires_in_s: number("invite-ttl") } });
    $("invite-out").replaceChildren("Invite code ", el("code", { "data-testid": "invite-code", text: invite.invite_code }),
      ` (with master ID ${$("master-id").textContent}), expires ${new Date(invite.expires_at).toLocaleString()}`);
  } catch (error) { showErrors(form, error, $("master-error")); }
}

export function setOrderAccounts(accounts) {
  $("order-account").replaceChildren(...accounts.map((a) =>
    el("option", { value: a.account_id, text: `${a.label} (${a.broker})` })));
}

export async function loadMaster() {
  const [profile, list] = await Promise.all([api("/v1/masters/me"), api("/v1/orders?limit=50"), loadFollowerCount()]);
  $("master-id").textContent = profile.master_id;
  $("copy-access").value = profile.copy_access;
  resetOrders(list);
}

$("order-type").addEventListener("change", () => { $("order-limit").disabled = $("order-type").value !== "limit"; });
$("order-form").addEventListener("submit", placeOrder);
$("amend-form").addEventListener("submit", amend);
$("amend-close").addEventListener("click", () => { $("amend-form").hidden = true; });
$("access-form").addEventListener("submit", saveAccess);
$("invite-form").addEventListener("submit", createInvite);
