// The live feed: one WebSocket (subprotocols copytrade.v1 + a one-use socket token), reopened
// with backoff; when the server ends it because the access token ran out, the session is
// refreshed and the socket reopened with the new one.
import { api } from "./api.js";
import { $ } from "./dom.js";
import { session } from "./session.js";

const live = { socket: null, retry: 0, onEvent: null, timer: null };

function setConnection(label, kind) {
  const node = $("conn");
  node.textContent = label;
  node.dataset.state = kind;
}

export function disconnect(label = "signed out") {
  const socket = live.socket;
  live.socket = null;
  clearTimeout(live.timer);
  if (socket) socket.close();
  setConnection(label, "idle");
}

function retry() {
  setConnection("disconnected, retrying", "down");
  live.retry = Math.min(live.retry + 1, 6);
  live.timer = setTimeout(open, 250 * 2 ** live.retry);
}

async function open() {
  if (!session.accessToken || !live.onEvent) return;
  setConnection("connecting…", "idle");
  let token;
  try { token = (await api("/v1/ws/token", { method: "POST" })).token; } catch { if (session.accessToken) retry(); return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/ws`, ["copytrade.v1", token]);
  live.socket = socket;
  socket.onopen = () => { live.retry = 0; setConnection("live", "live"); };
  socket.onmessage = (message) => live.onEvent(JSON.parse(message.data));
  socket.onclose = async (event) => {
    if (live.socket !== socket) return;
    live.socket = null;
    if (event.code === 1008 && event.reason === "session expired") {
      // The token it was opened with ran out; the session has usually been renewed already.
      const renewed = session.expiresAt - Date.now() > 5000 || (await session.refresh());
      if (renewed) open(); else session.expired();
      return;
    }
    retry();
  };
}

// Only followers and masters have a live feed (the socket refuses other roles).
export function connect(onEvent) {
  live.onEvent = onEvent;
  live.retry = 0;
  open();
}

export function showPolling() { setConnection("polling", "live"); }
