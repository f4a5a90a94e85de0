// Small DOM helpers shared by every view: no framework, no inline handlers (the CSP forbids them).
export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

export function cell(text, className) {
  return el("td", { text: text == null || text === "" ? "—" : text, class: className });
}

export function button(label, onclick, attrs = {}) {
  return el("button", { type: "button", class: "secondary", text: label, onclick, ...attrs });
}

export const short = (id) => (id ? String(id).slice(0, 8) : "—");
export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—");

// Errors next to the fields they are about: the API's 422 lists them in details.fields as
// dotted paths ("sizing.fixed.qty", "caps.max_qty"); an input names its path in data-field.
export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((node) => node.remove());
  form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
}

function fieldPath(path, form) {
  const parts = String(path).split(".");
  // A discriminated union puts its tag in the path (sizing.<mode>.qty): drop it.
  const candidates = [parts.join("."), [parts[0], ...parts.slice(2)].join(".")];
  return candidates.find((p) => form.querySelector(`[data-field="${CSS.escape(p)}"]`));
}

export function showErrors(form, error, summary) {
  clearErrors(form);
  const fields = (error.details && error.details.fields) || [];
  const unplaced = [];
  for (const f of fields) {
    const path = fieldPath(f.field, form);
    if (!path) { unplaced.push(`${f.field || "body"}: ${f.message}`); continue; }
    const input = form.querySelector(`[data-field="${CSS.escape(path)}"]`);
    input.setAttribute("aria-invalid", "true");
    const note = el("span", { class: "field-error", role: "alert", dataset: { for: path }, text: f.message });
    (input.closest("label") || input).after(note);
  }
  if (summary) {
    summary.textContent = fields.length && !unplaced.length
      ? `${error.code}: see the fields marked above`
      : `${error.code}: ${[error.message, ...unplaced].join("; ")}`;
  }
}
