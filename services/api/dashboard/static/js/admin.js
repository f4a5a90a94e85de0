// An admin: halts (global or per master, optionally flattening), failed copies (retry, once),
// in-doubt copies, dead-lettered orders. Admins have no socket: the lists are polled.
import { api } from "./api.js";
import { $, button, cell, el, short, time } from "./dom.js";

const POLL_MS = 2000;
let timer = null;
let running = false;

function legRow(leg, withRetry) {
  const cells = [cell(time(leg.updated_at)), cell(short(leg.leg_id)), cell(short(leg.order_id)), cell(leg.symbol),
    cell(leg.side), cell(leg.qty), cell(leg.status, `status status-${leg.status}`), cell(leg.reason)];
  if (withRetry) {
    cells.push(el("td", {}, button("Retry", () => retry(leg), { "aria-label": `Retry copy ${short(leg.leg_id)}` })));
  }
  return el("tr", { dataset: { legId: leg.leg_id, orderId: leg.order_id } }, ...cells);
}

async function retry(leg) {
  $("retry-error").textContent = "";
  try {
    await api(`/v1/copies/${leg.leg_id}/retry`, { method: "POST" });
    await loadAdmin();
  } catch (error) { $("retry-error").textContent = `${error.code}: ${error.message}`; }
}

function haltRow(h) {
  const master = h.scope.startsWith("master:") ? h.scope.slice("master:".length) : null;
  const resume = button("Resume", () => setHalt(master, false), { "aria-label": `Resume ${h.scope}` });
  return el("tr", { dataset: { scope: h.scope } }, cell(h.scope), el("td", {}, resume));
}

export async function loadAdmin() {
  const [halts, failed, inDoubt, dead] = await Promise.all([api("/v1/admin/halts"),
    api("/v1/admin/legs?kind=failed"), api("/v1/admin/legs?kind=in_doubt"), api("/v1/admin/orders/dead-lettered")]);
  $("halts").replaceChildren(...halts.map(haltRow));
  $("failed-legs").replaceChildren(...failed.map((leg) => legRow(leg, true)));
  $("in-doubt-legs").replaceChildren(...inDoubt.map((leg) => legRow(leg, false)));
  $("dead-letters").replaceChildren(...dead.map((o) => el("tr", { dataset: { orderId: o.order_id } },
    cell(time(o.dead_lettered_at)), cell(short(o.order_id)), cell(short(o.account_id)), cell(o.symbol), cell(o.side),
    cell(o.qty), cell(o.dead_letter_reason))));
}

async function setHalt(masterId, halted) {
  $("halt-error").textContent = "";
  $("halt-out").textContent = "";
  const path = masterId ? `/v1/admin/masters/${encodeURIComponent(masterId)}` : "/v1/admin";
  const flatten = halted && $("halt-flatten").checked;
  try {
    const state = await api(`${path}/${halted ? "halt" : "resume"}`, { method: "POST", ...(flatten ? { body: { flatten } } : {}) });
    $("halt-out").textContent = `${state.scope}: ${state.halted ? "halted" : "resumed"}` +
      (state.flatten_request_id ? `, flattening (request ${short(state.flatten_request_id)})` : "");
    await loadAdmin();
  } catch (error) { $("halt-error").textContent = `${error.code}: ${error.message}`; }
}

export function startAdmin() {
  running = true;
  const tick = () => {
    if (running) timer = setTimeout(() => loadAdmin().catch(() => {}).finally(tick), POLL_MS);
  };
  return loadAdmin().finally(tick);
}

export function stopAdmin() { running = false; clearTimeout(timer); }

$("halt-form").addEventListener("submit", (event) => { event.preventDefault(); setHalt($("halt-master").value.trim(), true); });
$("resume-button").addEventListener("click", () => setHalt($("halt-master").value.trim(), false));
