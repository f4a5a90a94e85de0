// A follower's P&L (GET /v1/pnl) and copy history (GET /v1/copies: cursor pages, a date
// window, CSV export with Accept: text/csv).
import { api } from "./api.js";
import { $, cell, el, short, time } from "./dom.js";

const history = { cursor: null, window: {} };

function money(value) { return value == null ? "—" : value; }

export async function loadPnl() {
  const pnl = await api("/v1/pnl");
  $("pnl").replaceChildren(...pnl.positions.map((p) => el("tr", { dataset: { symbol: p.symbol, subscriptionId: p.subscription_id || "" } },
    cell(p.symbol), cell(short(p.master_id)), cell(p.position, "pnl-position"), cell(p.average_cost), cell(p.mark_price),
    cell(money(p.realized), "pnl-realized"), cell(money(p.unrealized), "pnl-unrealized"), cell(p.fees), cell(p.fills))));
  $("pnl-totals").replaceChildren(el("th", { text: "Total", colspan: 5 }),
    cell(money(pnl.totals.realized), "pnl-realized"), cell(money(pnl.totals.unrealized), "pnl-unrealized"),
    cell(pnl.totals.fees), cell(""));
}

function windowParams() {
  const params = new URLSearchParams();
  for (const [name, id] of [["since", "history-since"], ["until", "history-until"]]) {
    const value = $(id).value;
    if (value) params.set(name, new Date(value).toISOString());
  }
  return params;
}

function historyRow(c) {
  return el("tr", { dataset: { legId: c.leg_id, orderId: c.order_id } },
    cell(`${new Date(c.created_at).toLocaleDateString()} ${time(c.created_at)}`), cell(c.symbol), cell(c.side),
    cell(c.qty), cell(c.filled_qty), cell(c.filled_avg_price), cell(c.status, `status status-${c.status}`), cell(c.reason));
}

export async function loadHistory(more = false) {
  $("history-error").textContent = "";
  const params = windowParams();
  params.set("limit", "50");
  params.set("cursor", more ? history.cursor : "");
  try {
    const page = await api(`/v1/copies?${params}`);
    const rows = page.items.map(historyRow);
    if (more) $("history").append(...rows); else $("history").replaceChildren(...rows);
    history.cursor = page.next_cursor;
    $("history-more").hidden = !page.next_cursor;
  } catch (error) { $("history-error").textContent = `${error.code}: ${error.message}`; }
}

async function exportCsv() {
  $("history-error").textContent = "";
  try {
    const response = await api(`/v1/copies?${windowParams()}`, { raw: true, headers: { accept: "text/csv" } });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: "copies.csv", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) { $("history-error").textContent = `${error.code}: ${error.message}`; }
}

$("history-form").addEventListener("submit", (event) => { event.preventDefault(); loadHistory(); });
$("history-more").addEventListener("click", () => loadHistory(true));
$("history-csv").addEventListener("click", exportCsv);
$("pnl-refresh").addEventListener("click", () => loadPnl());
