// Broker accounts (both roles): the list with halt/resume, and linking one. The broker picker
// shows the credential fields GET /v1/brokers describes (JSON schema per broker).
import { api } from "./api.js";
import { $, button, cell, clearErrors, el, showErrors } from "./dom.js";

const state = { brokers: [], accounts: [], onChange: () => {} };

const SECRET = /secret|token|password/;

function credentialInput(name, spec, required) {
  const path = `credentials.${name}`;
  const label = `${spec.title || name}${required ? "" : " (optional)"}`;
  if (spec.type === "boolean") {
    return el("label", { class: "inline" },
      el("input", { type: "checkbox", "data-field": path, "data-kind": "boolean", checked: spec.default === true }), label);
  }
  const kind = spec.type === "array" ? "list" : "text";
  const value = spec.default == null || Array.isArray(spec.default) ? "" : spec.default;
  return el("label", {}, label, el("input", { "data-field": path, "data-kind": kind, size: 18, value,
    type: SECRET.test(name) ? "password" : "text", autocomplete: "off",
    placeholder: kind === "list" ? "comma separated" : null }));
}

function renderCredentialFields() {
  const broker = state.brokers.find((b) => b.name === $("link-broker").value);
  if (!broker) return;
  const schema = broker.credentials;
  const required = new Set(schema.required || []);
  $("credential-fields").replaceChildren(...Object.entries(schema.properties || {})
    .map(([name, spec]) => credentialInput(name, spec, required.has(name))));
}

function credentials() {
  const out = {};
  for (const input of $("credential-fields").querySelectorAll("[data-field]")) {
    const name = input.dataset.field.slice("credentials.".length);
    if (input.dataset.kind === "boolean") out[name] = input.checked;
    else if (input.value.trim() === "") continue;
    else if (input.dataset.kind === "list") out[name] = input.value.split(",").map((s) => s.trim()).filter(Boolean);
    else out[name] = input.value.trim();
  }
  return out;
}

async function link(event) {
  event.preventDefault();
  const form = $("link-form");
  clearErrors(form);
  $("link-error").textContent = "";
  try {
    const account = await api("/v1/accounts", { method: "POST",
      body: { broker: $("link-broker").value, label: $("link-label").value.trim(), credentials: credentials() } });
    $("link-error").textContent = "";
    renderCredentialFields();  // never leave credentials on the page
    $("link-error").append(el("span", { class: "ok", text: `linked ${account.label} (${account.broker})` }));
    await loadAccounts();
  } catch (error) { showErrors(form, error, $("link-error")); }
}

function accountRow(a) {
  const verb = a.halted ? "Resume" : "Halt";
  const toggle = button(verb, async () => {
    await api(`/v1/accounts/${a.account_id}/${a.halted ? "resume" : "halt"}`, { method: "POST" });
    await loadAccounts();
  }, { "aria-label": `${verb} copying into ${a.label}` });
  return el("tr", { dataset: { accountId: a.account_id } },
    cell(a.label), cell(a.broker), cell(a.halted ? "halted" : "copying"), el("td", {}, toggle));
}

export async function loadAccounts() {
  state.accounts = await api("/v1/accounts");
  $("accounts").replaceChildren(...state.accounts.map(accountRow));
  state.onChange(state.accounts);
  return state.accounts;
}

export async function startAccounts(onChange) {
  state.onChange = onChange;
  if (!state.brokers.length) {
    state.brokers = await api("/v1/brokers");
    $("link-broker").replaceChildren(...state.brokers.map((b) => el("option", { value: b.name, text: b.name })));
    renderCredentialFields();
  }
  return loadAccounts();
}

export function accountLabel(accountId) {
  const a = state.accounts.find((x) => x.account_id === accountId);
  return a ? a.label : accountId.slice(0, 8);
}

$("link-broker").addEventListener("change", renderCredentialFields);
$("link-form").addEventListener("submit", link);
