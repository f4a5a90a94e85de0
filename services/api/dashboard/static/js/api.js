// The API over fetch: JSON in and out, the session's bearer token, one silent refresh on a 401.
import { session } from "./session.js";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details || {};
  }
}

async function send(path, options, token) {
  const headers = { ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
    ...(token ? { authorization: `Bearer ${token}` } : {}), ...(options.headers || {}) };
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return fetch(path, { ...options, headers, body });
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// api(path, {method, body, headers, raw}): raw returns the Response (CSV, headers).
export async function api(path, options = {}) {
  let response = await send(path, options, session.accessToken);
  if (response.status === 401 && session.accessToken && (await session.refresh())) {
    response = await send(path, options, session.accessToken);
  }
  if (response.status === 401 && session.accessToken) session.expired();
  if (options.raw) {
    if (!response.ok) await parse(response);
    return response;
  }
  return parse(response);
}

// Without a session (sign-in, registration, refresh, logout).
export async function anonymous(path, body) {
  return parse(await send(path, { method: "POST", body }, null));
}
