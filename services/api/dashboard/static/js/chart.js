// Plain SVG charts of a master's fan-out: copies settled over time (from order.updated events)
// and the fan-out latency of the last orders.
import { $ } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const SETTLED = new Set(["filled", "rejected", "skipped", "canceled", "failed", "expired"]);
const WINDOW_MS = 120_000;
const settled = { perOrder: new Map(), points: [], total: 0 };

function svgNode(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

const settledOf = (byStatus) => Object.entries(byStatus || {}).reduce((n, [k, v]) => n + (SETTLED.has(k) ? v : 0), 0);

// The baseline of an order (snapshot or first sight): what settled before we watched.
export function baseline(order) { settled.perOrder.set(order.order_id, settledOf(order.legs && order.legs.by_status)); }

// An order.updated event: the copies that settled since the last one, at now.
export function recordSettled(event) {
  const before = settled.perOrder.get(event.order_id) || 0;
  const now = settledOf(event.by_status);
  settled.perOrder.set(event.order_id, Math.max(before, now));
  if (now > before) {
    settled.total += now - before;
    settled.points.push({ t: Date.now(), total: settled.total });
  }
  renderSettled();
}

export function renderSettled() {
  const svg = $("settled-chart");
  const width = svg.clientWidth || 600, height = 110, end = Date.now(), start = end - WINDOW_MS;
  const points = settled.points.filter((p) => p.t >= start);
  const first = points.length ? settled.points[settled.points.indexOf(points[0]) - 1] : null;
  const base = first ? first.total : (points.length ? 0 : settled.total);
  const top = Math.max(1, settled.total - base);
  const x = (t) => ((t - start) / WINDOW_MS) * width;
  const y = (total) => height - 14 - ((height - 24) * (total - base)) / top;
  let path = `M0,${y(base)}`;
  for (const p of points) path += ` H${x(p.t).toFixed(1)} V${y(p.total).toFixed(1)}`;
  path += ` H${width}`;
  const label = `${settled.total} copies settled since this page opened`;
  svg.setAttribute("aria-label", label);
  svg.dataset.total = String(settled.total);
  svg.replaceChildren(svgNode("path", { d: path, fill: "none", stroke: "#3fb950", "stroke-width": 2 }),
    svgNode("text", { x: 0, y: height - 1 }, `${label} (last 2 minutes shown)`));
}

export function renderLatency(orders) {
  const points = orders.filter((o) => o.fanout_ms != null).slice(0, 30).reverse();
  const svg = $("chart");
  const width = svg.clientWidth || 600, height = 90, max = Math.max(1, ...points.map((p) => p.fanout_ms));
  const barWidth = Math.min(36, Math.max(4, Math.floor(width / Math.max(points.length, 1)) - 4));
  const bars = points.map((p, i) => {
    const h = Math.max(2, ((height - 16) * p.fanout_ms) / max);
    const rect = svgNode("rect", { x: i * (barWidth + 4), y: height - 12 - h, width: barWidth, height: h, fill: "#4da3ff" });
    rect.append(svgNode("title", {}, `${Math.round(p.fanout_ms)} ms`));
    return rect;
  });
  const caption = points.length ? `fan-out latency, last ${points.length} orders (max ${Math.round(max)} ms)` : "no settled orders yet";
  svg.replaceChildren(...bars, svgNode("text", { x: 0, y: height - 1 }, caption));
}

setInterval(() => { if (!$("master-view").hidden) renderSettled(); }, 5000);
