// A follower's live copy feed, from the socket's snapshot and leg.updated events.
import { $, cell, el, time } from "./dom.js";

const copies = new Map();

export function upsertCopy(copy) {
  const known = copies.get(copy.leg_id) || {};
  copies.set(copy.leg_id, { ...known, ...copy, created_at: known.created_at || copy.created_at || copy.updated_at });
}

export function resetCopies(list) {
  copies.clear();
  list.forEach(upsertCopy);
  renderCopies();
}

export function renderCopies() {
  const rows = [...copies.values()]
    .sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, 200);
  $("copies").replaceChildren(...rows.map((c) => el("tr", { dataset: { legId: c.leg_id, orderId: c.order_id } },
    cell(time(c.created_at)), cell(c.symbol), cell(c.side), cell(c.qty),
    cell(c.status, `status status-${c.status}`), cell(c.reason),
    cell(c.latency_ms != null ? `${Math.round(c.latency_ms)} ms` : null))));
}
