// The page: sign-in/registration, then the view of the signed-in role (follower, master or
// admin) in this one document. Each role's module owns its section.
import { startAccounts } from "./accounts.js";
import { startAdmin, stopAdmin } from "./admin.js";
import { anonymous } from "./api.js";
import { resetCopies, renderCopies, upsertCopy } from "./copies.js";
import { $, clearErrors, showErrors } from "./dom.js";
import { applyOrderEvent, loadMaster, resetOrders, setOrderAccounts } from "./master.js";
import { loadHistory, loadPnl } from "./reports.js";
import { session } from "./session.js";
import { connect, disconnect, showPolling } from "./socket.js";
import { loadSubscriptions, setAccounts } from "./subscriptions.js";

const VIEWS = ["follower-view", "master-view", "admin-view", "accounts-view"];
let pnlTimer = null;

function show(ids) { for (const id of VIEWS) $(id).hidden = !ids.includes(id); }

async function loadFollower() {
  await startAccounts(setAccounts);
  await Promise.all([loadSubscriptions(), loadPnl(), loadHistory()]);
}

// A settled copy changes P&L and history: reload both, at most once a second.
function copiesChanged() {
  clearTimeout(pnlTimer);
  pnlTimer = setTimeout(() => { loadPnl().catch(() => {}); loadHistory().catch(() => {}); }, 1000);
}

function onFollowerEvent(event) {
  if (event.type === "snapshot" && event.copies) resetCopies(event.copies);
  else if (event.type === "leg.updated") { upsertCopy(event); renderCopies(); copiesChanged(); }
  else if (event.type === "resync") loadFollower().catch(() => {});
}

function onMasterEvent(event) {
  if (event.type === "snapshot" && event.orders) resetOrders(event.orders);
  else if (event.type === "order.updated") applyOrderEvent(event);
  else if (event.type === "resync") loadMaster().catch(() => {});
}

const ROLES = {
  follower: { views: ["accounts-view", "follower-view"], load: loadFollower, onEvent: onFollowerEvent },
  master: { views: ["accounts-view", "master-view"],
    load: async () => { await startAccounts(setOrderAccounts); await loadMaster(); }, onEvent: onMasterEvent },
  admin: { views: ["admin-view"], load: startAdmin, onEvent: null },
};

async function start() {
  const role = ROLES[session.role];
  if (!role) { session.end(`the ${session.role} role has no dashboard`); return; }
  $("signin").hidden = true;
  $("signout").hidden = false;
  $("who").textContent = session.role;
  show(role.views);
  await role.load();
  if (role.onEvent) connect(role.onEvent); else showPolling();
}

function end(message) {
  stopAdmin();
  disconnect(message);
  show([]);
  // Nothing of this session stays in the page for the next one.
  document.querySelectorAll("main tbody").forEach((body) => body.replaceChildren());
  $("invite-out").textContent = "";
  $("signin").hidden = false;
  $("signout").hidden = true;
  $("who").textContent = "";
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try { await session.signIn($("email").value, $("password").value); }
  catch (error) { $("signin-error").textContent = error.message; }
});

$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = $("register-form");
  clearErrors(form);
  $("register-error").textContent = "";
  const values = Object.fromEntries(new FormData(form));
  try {
    await anonymous("/v1/auth/register", values);
    await session.signIn(values.email, values.password);
    form.reset();
  } catch (error) { showErrors(form, error, $("register-error")); }
});

$("signout").addEventListener("click", () => session.signOut());
session.on("start", () => start().catch((error) => { $("signin-error").textContent = error.message; }));
session.on("end", end);
session.resume().catch(() => session.end("signed out"));
