// The customer's support chat on every shop page: a button that opens a panel with the
// customer's own support room (`support-<id>`): its history, live messages, who is typing,
// whether an agent is here. A page includes it with
// <script type="module" src="/static/chat-widget.js"></script>.
//
// The last message id seen stays in sessionStorage, so the next page of the visit shows the
// same conversation and resumes where this one left it.

import { ChatConnection, backoff, clock, el, logInLink, retryable } from "/static/chat-connection.js";

/// Messages of history shown when a page opens on a conversation already under way.
const HISTORY = 50;
/// How long "… is typing" stays after the last notice.
const TYPING_SHOWN_MS = 3000;

const STATES = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Connection lost: reconnecting… (what you send goes out once back)",
};

/// What the widget says of the agents while it cannot know (its own connection is down).
const PRESENCE_UNKNOWN = "Reconnecting: whether an agent is here is not known yet.";

class Widget {
  constructor() {
    this.toggle = el("button", {
      type: "button",
      class: "chat-toggle",
      "aria-expanded": "false",
      "aria-controls": "chat-panel",
    }, "Chat with support");
    this.badge = el("span", { class: "chat-badge", hidden: "" });
    this.toggle.append(this.badge);
    this.status = el("p", { class: "chat-status", role: "status" });
    this.presence = el("p", { class: "chat-presence" });
    this.log = el("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Messages" });
    this.typingLine = el("p", { class: "chat-typing", "aria-live": "polite" });
    this.body = el("div", { class: "chat-body" });
    this.panel = el("section", { id: "chat-panel", class: "chat-panel", "aria-labelledby": "chat-title", hidden: "" },
      el("header", {},
        el("h2", { id: "chat-title", text: "Support chat" }),
        el("button", { type: "button", class: "chat-close", "aria-label": "Close the chat", text: "×" })),
      this.body);
    this.root = el("aside", { class: "chat-widget", "aria-label": "Support chat" }, this.toggle, this.panel);
    document.body.append(this.root);
    this.toggle.addEventListener("click", () => this.show(this.panel.hidden));
    this.panel.querySelector(".chat-close").addEventListener("click", () => this.show(false));
    this.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.show(false);
    });
    this.unseen = 0;
    this.names = new Map();
    this.online = new Set();
    /// Whether `online` is current: only while connected, once the room's presence is read.
    this.presenceKnown = false;
    this.typingTimer = null;
  }

  show(open) {
    this.panel.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.remember({ open });
    if (open) {
      this.unseen = 0;
      this.badge.hidden = true;
      const input = this.panel.querySelector("textarea, a");
      if (input) input.focus();
      this.log.lastElementChild?.scrollIntoView({ block: "end" });
    } else {
      this.toggle.focus();
    }
  }

  saved() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key) || "{}");
    } catch {
      return {};
    }
  }

  remember(change) {
    if (!this.key) return;
    sessionStorage.setItem(this.key, JSON.stringify({ ...this.saved(), ...change }));
  }

  /// Finds out who is here; a network error or a 5xx is asked again, with backoff.
  async start(attempt = 0) {
    let me;
    try {
      const response = await fetch("/api/v1/users/me", { headers: { accept: "application/json" } });
      if (response.status === 401) return this.visitor();
      if (!response.ok) {
        const error = new Error(`status ${response.status}`);
        error.final = !retryable(response.status);
        throw error;
      }
      me = await response.json();
    } catch (e) {
      const again = !e.final;
      this.body.replaceChildren(el("p", { class: "error", text: again
        ? `Chat is unavailable right now (${e.message}): trying again…`
        : `Chat is unavailable (${e.message}).` }));
      if (again) setTimeout(() => this.start(attempt + 1), backoff(attempt));
      return;
    }
    if (me.role !== "customer") {
      this.body.replaceChildren(el("p", {},
        "You are signed in as an agent: answer customers in the ",
        el("a", { href: "/support", text: "support console" }), "."));
      return;
    }
    this.customer(me);
  }

  visitor() {
    this.body.replaceChildren(
      el("p", { text: "Log in to chat with our support team." }),
      el("p", {}, logInLink()));
  }

  customer(me) {
    this.me = me;
    this.room = `support-${me.id}`;
    this.key = `strata.chat.${this.room}`;
    this.names.set(me.id, me.display_name);
    this.input = el("textarea", { id: "chat-input", rows: "2", maxlength: "4096", autocomplete: "off" });
    const form = el("form", { class: "chat-form" },
      el("label", { for: "chat-input", text: "Your message" }),
      this.input,
      el("button", { type: "submit", text: "Send" }));
    this.body.replaceChildren(this.status, this.presence, this.log, this.typingLine, form);
    this.showPresence();
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.connection.typing(this.room));
    this.connection = new ChatConnection({
      onFrame: (frame) => this.frame(frame),
      onState: (state) => this.state(state),
      probe: (room) => `/api/v1/chat/rooms/${room}/messages?limit=1`,
    });
    this.resume(this.saved().last ?? 0);
    if (this.saved().open) this.show(true);
  }

  /// The connection's state; presence is known only while connected.
  state(state) {
    this.status.dataset.state = state;
    if (state === "unauthorized") {
      this.status.replaceChildren("Your session has ended: ", logInLink("log in again"), " to chat.");
      this.input.disabled = true;
    } else {
      this.status.textContent = STATES[state] ?? state;
    }
    if (state !== "open") {
      this.presenceKnown = false;
      this.showPresence();
    }
  }

  /// Shows the end of the conversation seen on earlier pages, then connects after it.
  async resume(last) {
    if (last > 0) {
      try {
        const after = Math.max(0, last - HISTORY);
        const response = await fetch(`/api/v1/chat/rooms/${this.room}/messages?after=${after}&limit=${HISTORY}`);
        if (response.ok) {
          const page = await response.json();
          for (const message of page.messages) {
            if (message.id <= last) this.render(message);
          }
        }
      } catch {
        // The live connection replays from `last` anyway; only older lines are missing.
      }
    }
    this.connection.join(this.room, last);
  }

  submit() {
    const body = this.input.value.trim();
    if (!body) return;
    const clientId = this.connection.send(this.room, body);
    this.render({ client_id: clientId, sender: this.me.id, sender_name: this.me.display_name, body, pending: true });
    this.input.value = "";
  }

  frame(frame) {
    if (frame.room !== undefined && frame.room !== this.room) return;
    switch (frame.type) {
      case "joined":
        this.refreshPresence();
        break;
      case "message":
        this.render(frame);
        this.remember({ last: frame.id });
        if (frame.sender !== this.me.id) {
          this.typingLine.textContent = "";
          if (this.panel.hidden) {
            this.unseen += 1;
            this.badge.textContent = String(this.unseen);
            this.badge.hidden = false;
          }
        }
        break;
      case "typing":
        if (frame.user !== this.me.id) {
          const who = this.names.get(frame.user) || "An agent";
          this.typingLine.textContent = `${who} is typing…`;
          clearTimeout(this.typingTimer);
          this.typingTimer = setTimeout(() => {
            this.typingLine.textContent = "";
          }, TYPING_SHOWN_MS);
        }
        break;
      case "presence":
        if (frame.user !== this.me.id) {
          if (frame.online) this.online.add(frame.user);
          else this.online.delete(frame.user);
          this.showPresence();
        }
        break;
      case "error":
        if (frame.client_id) {
          const line = this.log.querySelector(`[data-client-id="${CSS.escape(frame.client_id)}"]`);
          line?.classList.add("failed");
          line?.setAttribute("title", frame.message);
        }
        break;
      default:
    }
  }

  async refreshPresence() {
    try {
      const response = await fetch(`/api/v1/chat/presence?room=${this.room}`);
      if (!response.ok) return;
      const list = await response.json();
      this.online = new Set(list.users.filter((u) => u.online && u.user !== this.me.id).map((u) => u.user));
      this.presenceKnown = this.connection.isOpen();
      this.showPresence();
    } catch {
      // Presence frames keep it current from here.
    }
  }

  showPresence() {
    if (!this.presenceKnown) {
      this.presence.dataset.agent = "unknown";
      const state = this.status.dataset.state;
      this.presence.textContent = state === "reconnecting"
        ? PRESENCE_UNKNOWN
        : state === "unauthorized" ? "" : "Looking for an agent…";
      return;
    }
    const here = this.online.size > 0;
    this.presence.dataset.agent = here ? "here" : "away";
    this.presence.textContent = here
      ? "An agent is here."
      : "No agent is online right now: leave a message and we will answer.";
  }

  /// Adds a message (or replaces the pending line it acknowledges).
  render(message) {
    if (message.sender_name) this.names.set(message.sender, message.sender_name);
    const mine = message.sender === this.me.id;
    const line = el("li", { class: mine ? "mine" : "theirs" },
      el("span", { class: "who", text: mine ? "You" : message.sender_name || "Support" }),
      el("span", { class: "body", text: message.body }));
    if (message.pending) {
      line.classList.add("pending");
      line.dataset.clientId = message.client_id;
    } else {
      line.dataset.id = String(message.id);
      line.append(el("time", { datetime: message.sent_at, text: clock(message.sent_at) }));
      if (this.log.querySelector(`[data-id="${message.id}"]`)) return;
    }
    const waiting = mine && message.client_id
      ? this.log.querySelector(`.pending[data-client-id="${CSS.escape(message.client_id)}"]`)
      : null;
    if (waiting && !message.pending) waiting.replaceWith(line);
    else this.log.append(line);
    line.scrollIntoView({ block: "end" });
  }
}

function mount() {
  if (document.querySelector(".chat-widget")) return;
  // The page needs only the script tag: the widget brings its own styles.
  if (!document.querySelector('link[href="/static/chat.css"]')) {
    document.head.append(el("link", { rel: "stylesheet", href: "/static/chat.css" }));
  }
  new Widget().start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
else mount();
