// One chat WebSocket for a page (the widget's, the console's): the session cookie
// authenticates it, so the page never holds a token. It reconnects with backoff when the
// connection drops and resumes every joined room from the last message id seen, and sends
// again, under the same client id, what was not acknowledged: the server stores each
// client id once and delivers every message once, in id order. The protocol is
// docs/chat-protocol.md.

/// Reconnection delays: doubling from the first, capped, each with jitter so that the
/// clients of a restarted instance do not come back in one wave.
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
/// Typing notices sent at most this often (the server relays one a second).
const TYPING_EVERY_MS = 1500;

/// A client id for a message: random, so two tabs never collide.
function clientId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class ChatConnection {
  /// `onFrame(frame)`: every frame from the server, messages already de-duplicated;
  /// `onState(state)`: "connecting", "open", "reconnecting" or "unauthorized".
  constructor({ onFrame, onState }) {
    this.onFrame = onFrame;
    this.onState = onState;
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
    else if (!this.ws) this.connect();
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
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
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

  closed(ws, code) {
    if (ws !== this.ws) return;
    clearTimeout(this.silence);
    this.ws = null;
    if (code === 4001) {
      this.stopped = true;
      this.onState("unauthorized");
      return;
    }
    this.onState("reconnecting");
    // A draining instance asks for an immediate reconnect; anything else backs off.
    const base = code === 4012 ? 0 : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), base * (0.5 + Math.random() / 2));
  }

  retryNow() {
    if (this.timer !== null) this.connect();
  }
}
