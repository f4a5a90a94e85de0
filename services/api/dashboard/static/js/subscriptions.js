// A follower's subscriptions: follow a master (master id + invite code), change copy settings,
// pause/resume, unsubscribe with a choice of what happens to the copied positions.
import { accountLabel } from "./accounts.js";
import { api } from "./api.js";
import { $, button, cell, clearErrors, el, short, showErrors } from "./dom.js";
import { buildSettings, fillSettings, readSettings } from "./settings.js";

const state = { subs: [], editing: null };

const POSITIONS = [["follow_exits", "follow the master's exits"], ["close", "close them now"], ["keep", "keep them"]];

function sizingText(s) {
  const { mode, rounding, ...rest } = s.sizing;
  return `${mode} ${Object.values(rest).join(" ")}`.trim();
}

function stateText(s) {
  if (s.ending_at) return "ending";
  return s.paused ? "paused" : "active";
}

function unsubscribeControls(s) {
  const choice = el("select", { "aria-label": `Positions of ${short(s.master_id)}` },
    ...POSITIONS.map(([value, text]) => el("option", { value, text })));
  const go = button("Unsubscribe", async () => {
    await api(`/v1/subscriptions/${s.subscription_id}?positions=${choice.value}`, { method: "DELETE" });
    await loadSubscriptions();
  });
  return [choice, go];
}

function subRow(s) {
  const pause = button(s.paused ? "Resume" : "Pause", async () => {
    await api(`/v1/subscriptions/${s.subscription_id}`, { method: "PATCH", body: { paused: !s.paused } });
    await loadSubscriptions();
  });
  const edit = button("Settings", () => openEditor(s));
  const actions = s.ending_at ? [] : [edit, pause, ...unsubscribeControls(s)];
  return el("tr", { dataset: { subscriptionId: s.subscription_id, masterId: s.master_id } },
    cell(short(s.master_id)), cell(accountLabel(s.account_id)), cell(sizingText(s)),
    cell(stateText(s), "sub-state"), el("td", { class: "actions" }, ...actions));
}

export async function loadSubscriptions() {
  state.subs = await api("/v1/subscriptions");
  $("subscriptions").replaceChildren(...state.subs.map(subRow));
  return state.subs;
}

function openEditor(sub) {
  state.editing = sub;
  clearErrors($("sub-form"));
  $("sub-error").textContent = "";
  $("sub-new").hidden = sub !== null;
  $("sub-cancel").hidden = sub === null;
  $("sub-form-title").textContent = sub ? `Copy settings for master ${short(sub.master_id)}` : "Follow a master";
  $("sub-submit").textContent = sub ? "Save settings" : "Follow";
  fillSettings(sub);
  if (sub) $("sub-form").scrollIntoView({ block: "nearest" });
}

async function submit(event) {
  event.preventDefault();
  const form = $("sub-form");
  clearErrors(form);
  $("sub-error").textContent = "";
  const settings = readSettings();
  try {
    if (state.editing) {
      await api(`/v1/subscriptions/${state.editing.subscription_id}`, { method: "PATCH", body: settings });
    } else {
      const invite = $("sub-invite").value.trim();
      await api("/v1/subscriptions", { method: "POST", body: { master_id: $("sub-master").value.trim(),
        account_id: $("sub-account").value, ...(invite ? { invite_code: invite } : {}), ...settings } });
      $("sub-invite").value = "";
    }
    const done = state.editing ? "settings saved" : "subscribed";
    openEditor(null);
    $("sub-error").replaceChildren(el("span", { class: "ok", text: done }));
    await loadSubscriptions();
  } catch (error) { showErrors(form, error, $("sub-error")); }
}

export function setAccounts(accounts) {
  $("sub-account").replaceChildren(...accounts.map((a) =>
    el("option", { value: a.account_id, text: `${a.label} (${a.broker})` })));
}

buildSettings();
$("sub-form").addEventListener("submit", submit);
$("sub-cancel").addEventListener("click", () => openEditor(null));
