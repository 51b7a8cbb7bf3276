// One chat WebSocket for a page (the widget's, the console's): the session cookie
// authenticates it, so the page never holds a token. It reconnects with backoff when the
// connection drops and resumes every joined room from the last message id seen, and sends
// again, under the same client id, what was not acknowledged: the server stores each
// client id once and delivers every message once, in id order. The protocol is
// docs/chat-protocol.md. Also the few page helpers both chat pages share.
//
// What is retried: a dropped connection, a network error, a 5xx and the close codes that ask
// for it (4012, 4013, 4009…). What is not: a session the server refuses (close code 4001, or
// a handshake refused with 401/403, which the browser hides, so a plain request asks).

/// Reconnection delays: doubling from the first, capped, each with jitter so that the
/// clients of a restarted instance do not come back in one wave.
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
/// Typing notices sent at most this often (the server relays one a second).
const TYPING_EVERY_MS = 1500;

/// The delay before retry number `attempt` (0: the first), with jitter.
export function backoff(attempt) {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  return base * (0.5 + Math.random() / 2);
}

/// True for an HTTP status worth asking again (the server's trouble, not the request's).
export function retryable(status) {
  return status >= 500 || status === 429 || status === 408;
}

/// An element with attributes (`text`: its text) and children.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/// A message's time as hours and minutes of the reader's clock.
export function clock(sentAt) {
  const at = new Date(sentAt);
  return Number.isNaN(at.getTime())
    ? ""
    : at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/// A link to the log-in page that comes back to this page.
export function logInLink(text = "Log in") {
  const next = encodeURIComponent(location.pathname + location.search);
  return el("a", { href: `/login?next=${next}`, class: "chat-login", text });
}

/// A client id for a message: random, so two tabs never collide.
function clientId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class ChatConnection {
  /// `onFrame(frame)`: every frame from the server, messages already de-duplicated;
  /// `onState(state)`: "connecting", "open", "reconnecting" or "unauthorized" (the session
  /// ended: no more attempts). `probe(first room)`: a URL that this session may `GET` from
  /// chat, asked when a handshake fails, to tell a refused session from a network outage.
  /// `watch`: what else the connection watches (`"support"`: an `activity` frame for every
  /// support room message, for the agents' console).
  constructor({ onFrame, onState, probe, watch }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.probe = probe;
    this.watching = watch;
    /// Joined rooms and the last message id seen in each.
    this.rooms = new Map();
    /// Messages sent and not yet acknowledged, by client id, to send again on reconnect.
    this.pending = new Map();
    this.typedAt = new Map();
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.silence = null;
    this.heartbeatMs = 10000;
    this.stopped = false;
    globalThis.addEventListener("online", () => this.retryNow());
  }

  /// Joins `room`, resuming after `after` (0: from its first message).
  join(room, after = 0) {
    if (this.rooms.has(room)) return;
    this.rooms.set(room, after);
    if (this.isOpen()) this.raw({ type: "join", room, after });
    else if (!this.ws && !this.checking) this.connect();
  }

  leave(room) {
    this.rooms.delete(room);
    if (this.isOpen()) this.raw({ type: "leave", room });
  }

  /// The last message id seen in `room`.
  last(room) {
    return this.rooms.get(room) ?? 0;
  }

  /// Sends `body` to `room`; returns its client id. Kept until acknowledged.
  send(room, body) {
    const frame = { type: "send", room, client_id: clientId(), body };
    this.pending.set(frame.client_id, frame);
    if (this.isOpen()) this.raw(frame);
    return frame.client_id;
  }

  typing(room) {
    const now = Date.now();
    if (now - (this.typedAt.get(room) ?? 0) < TYPING_EVERY_MS) return;
    this.typedAt.set(room, now);
    if (this.isOpen()) this.raw({ type: "typing", room });
  }

  /// Marks `room` read up to message `id` (the agents' unread counts).
  read(room, id) {
    if (this.isOpen() && id > 0) this.raw({ type: "read", room, id });
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  raw(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = null;
    const url = new URL("/api/v1/chat/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    // The first room rides in the URL: the gateway pins the connection to its instance.
    const [first] = this.rooms.keys();
    if (first !== undefined) {
      url.searchParams.set("room", first);
      url.searchParams.set("after", String(this.rooms.get(first)));
    }
    if (this.watching) url.searchParams.set("watch", this.watching);
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      ws.opened = true;
      for (const [room, after] of this.rooms) {
        if (room !== first) this.raw({ type: "join", room, after });
      }
      for (const frame of this.pending.values()) {
        if (this.rooms.has(frame.room)) this.raw(frame);
      }
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
  }

  receive(ws, text) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.watch(ws);
    switch (frame.type) {
      case "ready":
        this.attempt = 0;
        this.heartbeatMs = frame.heartbeat_ms || this.heartbeatMs;
        this.onState("open");
        break;
      case "message": {
        // The server sends each id once per connection; this guards the seam between two.
        if (!this.rooms.has(frame.room) || frame.id <= this.last(frame.room)) return;
        this.rooms.set(frame.room, frame.id);
        break;
      }
      case "ack":
        this.pending.delete(frame.client_id);
        break;
      case "error":
        // Not stored for good (anything but an unavailable store): do not send it again.
        if (frame.client_id && frame.code !== "unavailable") this.pending.delete(frame.client_id);
        break;
      default:
    }
    this.onFrame(frame);
  }

  /// A connection that stays silent for two heartbeats (the server pings every one, and
  /// answers our pings) is dead even if the socket has not noticed: drop it and reconnect.
  watch(ws) {
    clearTimeout(this.silence);
    this.silence = setTimeout(() => {
      if (ws === this.ws && this.isOpen()) {
        this.raw({ type: "ping" });
        this.silence = setTimeout(() => ws === this.ws && ws.close(), this.heartbeatMs);
      }
    }, this.heartbeatMs * 1.5);
  }

  async closed(ws, code) {
    if (ws !== this.ws) return;
    clearTimeout(this.silence);
    this.ws = null;
    if (code === 4001) {
      this.stop();
      return;
    }
    this.onState("reconnecting");
    if (!ws.opened) {
      // A handshake that failed: refused (401, 403) or out of reach? Only a request says.
      this.checking = true;
      const refused = await this.refused();
      this.checking = false;
      if (refused) {
        this.stop();
        return;
      }
    }
    if (this.stopped) return;
    // A draining instance asks for an immediate reconnect; anything else backs off.
    const delay = code === 4012 ? 0 : backoff(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /// After a failed handshake: true when chat refuses this session (401, 403) rather than
  /// being out of reach (a network error, a 5xx: worth another attempt).
  async refused() {
    if (!this.probe) return false;
    const [first] = this.rooms.keys();
    try {
      const response = await fetch(this.probe(first), {
        headers: { accept: "application/json" },
        cache: "no-store",
      });
      return response.status === 401 || response.status === 403;
    } catch {
      return false;
    }
  }

  /// Gives up for good: the session ended; the page asks its visitor to log in again.
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    this.onState("unauthorized");
  }

  retryNow() {
    if (this.timer !== null) this.connect();
  }
}
