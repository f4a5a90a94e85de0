// Who may copy a master: its copy access, invites (the code goes to a follower with the master
// ID) and how many follow it (GET /v1/masters/me/followers: no identities).
import { api } from "./api.js";
import { $, clearErrors, el, showErrors } from "./dom.js";

export async function loadFollowerCount() {
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

export async function loadProfile() {
  const [profile] = await Promise.all([api("/v1/masters/me"), loadFollowerCount()]);
  $("master-id").textContent = profile.master_id;
  $("copy-access").value = profile.copy_access;
}

$("access-form").addEventListener("submit", saveAccess);
$("invite-form").addEventListener("submit", createInvite);
