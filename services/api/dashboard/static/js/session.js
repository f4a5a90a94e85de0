// The signed-in session: an access token (memory and sessionStorage, for reloads) and a rotating
// refresh token (sessionStorage). The access token is refreshed silently shortly before it
// expires and after a 401; a refresh that fails signs out. Without the refresh route (404) the
// page falls back to signing in again when the access token runs out.
import { anonymous, ApiError } from "./api.js";

const KEY = "copytrade.session";
const listeners = { start: [], end: [] };

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

// Refresh when a quarter of the lifetime (at most a minute) is left: a short TTL set by a
// test (COPYTRADE_ACCESS_TOKEN_TTL_S) is refreshed well before it runs out.
export function refreshDelayMs(expiresInS) {
  return Math.max(1, expiresInS - Math.min(60, expiresInS / 4)) * 1000;
}

export const session = {
  accessToken: null, refreshToken: null, role: null, userId: null, expiresAt: 0,
  timer: null, pending: null, transient: false,

  on(event, fn) { listeners[event].push(fn); },

  // A token answer (sign-in or refresh) becomes the current session.
  adopt(answer) {
    const c = claims(answer.access_token);
    this.accessToken = answer.access_token;
    if (answer.refresh_token) this.refreshToken = answer.refresh_token;
    this.role = c.role; this.userId = c.sub;
    this.expiresAt = c.exp * 1000;
    sessionStorage.setItem(KEY, JSON.stringify({ access: this.accessToken, refresh: this.refreshToken }));
    this.schedule(answer.expires_in || (this.expiresAt - Date.now()) / 1000);
  },

  schedule(expiresInS) {
    clearTimeout(this.timer);
    if (!this.refreshToken) {  // nothing to refresh with: sign in again when it runs out
      this.timer = setTimeout(() => this.expired(), Math.max(0, this.expiresAt - Date.now()));
      return;
    }
    this.timer = setTimeout(() => this.renew(), refreshDelayMs(expiresInS));
  },

  // The scheduled refresh: a refusal signs out; a blip (network, 5xx, 429) is retried while
  // the access token still holds.
  async renew() {
    if (await this.refresh()) return;
    if (this.refreshToken && this.transient && this.expiresAt - Date.now() > 5000) {
      this.timer = setTimeout(() => this.renew(), 5000);
      return;
    }
    this.expired();
  },

  async signIn(email, password) {
    this.adopt(await anonymous("/v1/auth/token", { email, password }));
    listeners.start.forEach((fn) => fn(this));
  },

  // One refresh at a time; true when a new access token is in place.
  refresh() {
    if (!this.refreshToken) return Promise.resolve(false);
    if (!this.pending) {
      this.pending = anonymous("/v1/auth/refresh", { refresh_token: this.refreshToken })
        .then((answer) => { this.adopt(answer); return true; })
        .catch((error) => {
          const status = error instanceof ApiError ? error.status : 0;
          if (status === 404) this.refreshToken = null;  // no refresh route: sign in again later
          this.transient = status === 0 || status === 429 || status >= 500;
          return false;
        })
        .finally(() => { this.pending = null; });
    }
    return this.pending;
  },

  expired() { this.end("session expired, please sign in again"); },

  async signOut() {
    const token = this.refreshToken;
    this.end("signed out");
    if (token) await anonymous("/v1/auth/logout", { refresh_token: token }).catch(() => {});
  },

  end(message) {
    if (!this.accessToken) return;
    clearTimeout(this.timer);
    Object.assign(this, { accessToken: null, refreshToken: null, role: null, userId: null, expiresAt: 0 });
    sessionStorage.removeItem(KEY);
    listeners.end.forEach((fn) => fn(message));
  },

  // After a reload: the stored session, refreshed first if its access token is (nearly) spent.
  async resume() {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (!saved || !saved.access) return false;
    const exp = claims(saved.access).exp * 1000;
    this.refreshToken = saved.refresh || null;
    if (exp - Date.now() > 5000) this.adopt({ access_token: saved.access, expires_in: (exp - Date.now()) / 1000 });
    else if (!(await this.refresh())) {
      this.refreshToken = null;
      sessionStorage.removeItem(KEY);
      return false;
    }
    listeners.start.forEach((fn) => fn(this));
    return true;
  },
};
