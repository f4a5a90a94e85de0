// The copy-settings fields of a subscription (API.md "Copy settings"): sizing mode and its
// parameter, caps, filters. Values go to the API as typed (decimal strings, integers, lists)
// without judging them here: the API's 422 is shown next to the field it names.
import { $, el } from "./dom.js";

const MODES = {  // mode → its parameter [name, label]
  fixed: ["qty", "Quantity"], multiplier: ["factor", "Factor"], equity_ratio: ["factor", "Factor"],
  notional: ["amount", "Amount"], risk_percent: ["percent", "Percent of equity"],
};
const CAPS = [["max_qty", "Max qty", "decimal"], ["max_notional", "Max notional", "decimal"],
  ["max_position", "Max position", "decimal"], ["max_open_positions", "Max open positions", "integer"],
  ["max_orders_per_day", "Max orders per day", "integer"], ["daily_loss_limit", "Daily loss limit", "decimal"]];
const FILTERS = [["symbols_allow", "Only symbols", "list"], ["symbols_block", "Never symbols", "list"],
  ["max_signal_age_ms", "Max signal age (ms)", "integer"], ["copy_deadline_s", "Copy deadline (s)", "integer"]];

const input = (path, label, kind, attrs = {}) =>
  el("label", {}, label, el("input", { "data-field": path, "data-kind": kind, size: 10, autocomplete: "off", ...attrs }));
const select = (path, label, options) =>
  el("label", {}, label, el("select", { "data-field": path }, ...options.map((o) => el("option", { value: o, text: o }))));
const check = (path, label) =>
  el("label", { class: "inline" }, el("input", { type: "checkbox", "data-field": path, "data-kind": "boolean" }), label);

function sizingParam() {
  const [name, label] = MODES[field("sizing.mode").value];
  $("sizing-param").replaceChildren(input(`sizing.${name}`, label, "decimal", { value: "1" }));
}

export function buildSettings() {
  const root = $("settings-fields");
  root.replaceChildren(
    el("fieldset", { class: "row" }, el("legend", { text: "Sizing" }),
      select("sizing.mode", "Sizing mode", Object.keys(MODES)), el("span", { id: "sizing-param" }),
      select("sizing.rounding", "Rounding", ["floor", "nearest"])),
    el("fieldset", { class: "row" }, el("legend", { text: "Caps" }),
      ...CAPS.map(([name, label, kind]) => input(`caps.${name}`, label, kind)),
      select("caps.on_cap", "Over a cap", ["clamp", "skip"])),
    el("fieldset", { class: "row" }, el("legend", { text: "Filters" }),
      ...FILTERS.map(([name, label, kind]) => input(`filters.${name}`, label, kind)),
      check("filters.sides.buy", "copy buys"), check("filters.sides.sell", "copy sells"),
      check("filters.reverse", "reverse sides")));
  field("sizing.mode").value = "multiplier";
  field("sizing.mode").addEventListener("change", sizingParam);
  sizingParam();
  fillSettings(null);
}

function field(path) { return $("settings-fields").querySelector(`[data-field="${path}"]`); }

function typed(node) {
  const raw = node.value.trim();
  if (raw === "") return undefined;
  if (node.dataset.kind === "integer") return /^-?\d+$/.test(raw) ? Number(raw) : raw;  // the API judges
  if (node.dataset.kind === "list") return raw.split(",").map((s) => s.trim()).filter(Boolean);
  return raw;
}

// {sizing, caps, filters} as the form says (empty fields left out: the API's defaults).
export function readSettings() {
  const out = { sizing: {}, caps: {}, filters: {} };
  for (const node of $("settings-fields").querySelectorAll("[data-field]")) {
    const [group, name] = node.dataset.field.split(".");
    if (node.dataset.field.startsWith("filters.sides.")) continue;
    const value = node.dataset.kind === "boolean" ? node.checked : typed(node);
    if (value !== undefined) out[group][name] = value;
  }
  const sides = ["buy", "sell"].filter((s) => field(`filters.sides.${s}`).checked);
  if (sides.length === 1) out.filters.sides = sides;
  return out;
}

export function fillSettings(sub) {
  const s = sub || { sizing: { mode: "multiplier", factor: "1" }, caps: {}, filters: {} };
  field("sizing.mode").value = s.sizing.mode;
  sizingParam();
  for (const node of $("settings-fields").querySelectorAll("[data-field]")) {
    const [group, name, side] = node.dataset.field.split(".");
    if (name === "mode") continue;
    const value = s[group] ? s[group][name] : undefined;
    if (name === "sides") node.checked = !value || value.includes(side);
    else if (node.dataset.kind === "boolean") node.checked = value === true;
    else if (node.tagName === "SELECT") node.value = value || node.options[0].value;
    else node.value = value == null ? "" : Array.isArray(value) ? value.join(", ") : String(value);
  }
}
