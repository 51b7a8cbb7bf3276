// The agents' console (/support): the support rooms with their unread counts and whether the
// customer is online, kept current live by the agent's chat connection (it watches every
// support room: an `activity` frame per message), read again every half minute to stay
// true (someone else read a room, a customer left) and every few seconds while the
// connection is down; any number of rooms open side by side as tabs, each with its
// conversation, who is typing and a box to answer. Viewing a room's messages moves this
// agent's read marker.

import { ChatConnection, clock, el, logInLink } from "/static/chat-connection.js";

/// How often the room list is read again while the connection is up (it brings the news), and
/// while it is down (the list is all there is).
const RECONCILE_MS = 30000;
const REFRESH_MS = 3000;
const TYPING_SHOWN_MS = 3000;

const STATES = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Connection lost: reconnecting…",
};

class Console {
  constructor(me) {
    this.me = me;
    /// Open rooms: room id -> { tab, panel, log, typing, input, timer }.
    this.open = new Map();
    this.active = null;
    this.known = new Map();
    this.status = document.getElementById("rooms-status");
    this.connection = new ChatConnection({
      onFrame: (frame) => this.frame(frame),
      onState: (state) => this.state(state),
      probe: () => "/api/v1/chat/rooms?limit=1",
      watch: "support",
    });
    /// The rooms as last drawn, most recently active first.
    this.rooms = [];
    this.connection.connect();
    this.refresh();
    this.every(REFRESH_MS);
  }

  /// Reads the list every `ms` from now on.
  every(ms) {
    clearInterval(this.poll);
    this.poll = setInterval(() => this.refresh(), ms);
  }

  state(state) {
    this.status.dataset.state = state;
    if (state === "unauthorized") {
      clearInterval(this.poll);
      this.status.replaceChildren("Your session has ended: ", logInLink("log in again"), ".");
      return;
    }
    this.status.textContent = STATES[state] ?? state;
    if (state === "open") {
      // What happened while the connection was down, then the news as it comes.
      this.refresh();
      this.every(RECONCILE_MS);
    } else {
      this.every(REFRESH_MS);
    }
  }

  /// A customer came or went: their row says so.
  presence(frame) {
    const room = this.rooms.find((r) => r.room === frame.room && r.customer === frame.user);
    if (!room || room.customer_online === frame.online) return;
    room.customer_online = frame.online;
    this.draw();
  }

  /// A support room's new message: its row moves to the top with the message, counted
  /// unread unless it is this agent's or shown to them now. Each id counts once (the
  /// instance may send one twice).
  activity(frame) {
    const room = this.rooms.find((r) => r.room === frame.room);
    if (!room) {
      // A room the list does not have yet: read the list.
      this.refresh();
      return;
    }
    if (frame.id <= (room.last_message?.id ?? 0)) return;
    room.last_message = frame;
    const mine = frame.sender === this.me.id;
    if (frame.sender === room.customer) room.customer_online = true;
    const seen = frame.room === this.active && !document.hidden;
    if (!mine && !seen) room.unread += 1;
    this.rooms = [room, ...this.rooms.filter((r) => r !== room)];
    this.draw();
  }

  async refresh() {
    let list;
    try {
      const response = await fetch("/api/v1/chat/rooms?limit=100");
      // A session refused is not asked again: the connection says so and stops.
      if (response.status === 401 || response.status === 403) return this.connection.stop();
      if (!response.ok) throw new Error(`status ${response.status}`);
      list = await response.json();
    } catch (e) {
      this.status.textContent = `Cannot read the rooms (${e.message}); trying again.`;
      return;
    }
    // A list read before a message that an `activity` frame already brought is older than
    // what is shown: such a row stays as it is.
    const shown = new Map(this.rooms.map((room) => [room.room, room]));
    this.rooms = list.rooms.map((room) => {
      const known = shown.get(room.room);
      const newer = known && (known.last_message?.id ?? 0) > (room.last_message?.id ?? 0);
      return newer ? known : room;
    });
    this.draw();
  }

  draw() {
    // Unchanged rows stay as they are: a button under the pointer (or the keyboard's focus)
    // is not replaced every few seconds.
    const shown = JSON.stringify([this.rooms, [...this.open.keys()]]);
    if (shown === this.shown) return;
    this.shown = shown;
    const rows = document.getElementById("rooms");
    const focused = document.activeElement?.closest("tr")?.dataset.room;
    rows.replaceChildren(...this.rooms.map((room) => this.row(room)));
    if (focused) rows.querySelector(`tr[data-room="${focused}"] button`)?.focus();
    if (this.rooms.length === 0) {
      rows.append(el("tr", {}, el("td", { colspan: "5", text: "No customer has written yet." })));
    }
  }

  row(room) {
    const name = room.customer_name || `Customer ${room.customer}`;
    this.known.set(room.room, name);
    const last = room.last_message;
    const open = el("button", { type: "button", text: this.open.has(room.room) ? "Show" : "Open" });
    open.setAttribute("aria-label", `Open the conversation with ${name}`);
    open.addEventListener("click", () => this.openRoom(room.room));
    return el("tr", { "data-room": room.room },
      el("td", { text: name }),
      el("td", room.customer_online ? { class: "online", text: "online" } : { text: "away" }),
      el("td", { class: "num" }, room.unread > 0
        ? el("span", { class: "unread", "aria-label": `${room.unread} unread`, text: String(room.unread) })
        : "0"),
      el("td", { class: "last", text: last ? `${last.sender_name || "?"}: ${last.body}` : "" }),
      el("td", {}, open));
  }

  openRoom(room) {
    if (!this.open.has(room)) {
      const name = this.known.get(room) || room;
      const id = room.replace(/[^a-z0-9-]/g, "");
      const tab = el("button", {
        type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`, "aria-selected": "false",
      }, name);
      const badge = el("span", { class: "chat-badge", hidden: "" });
      tab.append(badge);
      const log = el("ol", { class: "chat-log", "aria-live": "polite", "aria-label": `Messages with ${name}` });
      const typing = el("p", { class: "chat-typing", "aria-live": "polite" });
      const input = el("textarea", { id: `input-${id}`, rows: "2", maxlength: "4096", autocomplete: "off" });
      const form = el("form", { class: "chat-form" },
        el("label", { for: `input-${id}`, text: `Answer ${name}` }),
        input,
        el("button", { type: "submit", text: "Send" }));
      const close = el("button", { type: "button", class: "close-room", text: "Close this conversation" });
      const panel = el("section", { role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}`, hidden: "" },
        log, typing, form, el("p", {}, close));
      document.getElementById("tabs").append(tab);
      document.getElementById("panels").append(panel);
      const entry = { tab, badge, panel, log, typing, input, name, unseen: 0, timer: null, readTo: 0 };
      this.open.set(room, entry);
      tab.addEventListener("click", () => this.select(room));
      tab.addEventListener("keydown", (e) => this.arrows(e, room));
      close.addEventListener("click", () => this.closeRoom(room));
      const submit = () => {
        const body = input.value.trim();
        if (!body) return;
        this.connection.send(room, body);
        input.value = "";
      };
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        submit();
      });
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          submit();
        }
      });
      input.addEventListener("input", () => this.connection.typing(room));
      this.connection.join(room, 0);
    }
    this.select(room);
    this.open.get(room).input.focus();
  }

  /// Left and right arrows move between the tabs (the tab pattern of WAI-ARIA).
  arrows(event, room) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const rooms = [...this.open.keys()];
    const step = event.key === "ArrowRight" ? 1 : -1;
    const next = rooms[(rooms.indexOf(room) + step + rooms.length) % rooms.length];
    this.select(next);
    this.open.get(next).tab.focus();
  }

  select(room) {
    this.active = room;
    for (const [id, entry] of this.open) {
      const on = id === room;
      entry.tab.setAttribute("aria-selected", String(on));
      entry.tab.tabIndex = on ? 0 : -1;
      entry.panel.hidden = !on;
    }
    const entry = this.open.get(room);
    entry.unseen = 0;
    entry.badge.hidden = true;
    this.markRead(room);
  }

  closeRoom(room) {
    const entry = this.open.get(room);
    if (!entry) return;
    this.connection.leave(room);
    entry.tab.remove();
    entry.panel.remove();
    this.open.delete(room);
    const [next] = this.open.keys();
    if (next !== undefined) this.select(next);
    else this.active = null;
    this.refresh();
  }

  /// The active room is read up to its last message: move the marker, then the list.
  markRead(room) {
    const entry = this.open.get(room);
    const last = this.connection.last(room);
    if (!entry || room !== this.active || document.hidden || last <= entry.readTo) return;
    entry.readTo = last;
    this.connection.read(room, last);
    clearTimeout(this.soon);
    this.soon = setTimeout(() => this.refresh(), 300);
  }

  frame(frame) {
    if (frame.type === "activity") {
      this.activity(frame);
      return;
    }
    if (frame.type === "presence") this.presence(frame);
    if (frame.room === undefined) return;
    const entry = this.open.get(frame.room);
    if (!entry) return;
    switch (frame.type) {
      case "message": {
        const mine = frame.sender === this.me.id;
        entry.log.append(el("li", { class: mine ? "mine" : "theirs", "data-id": String(frame.id) },
          el("span", { class: "who", text: mine ? "You" : frame.sender_name || entry.name }),
          el("span", { class: "body", text: frame.body }),
          el("time", { datetime: frame.sent_at, text: clock(frame.sent_at) })));
        entry.log.lastElementChild.scrollIntoView({ block: "nearest" });
        if (!mine) entry.typing.textContent = "";
        if (frame.room === this.active) this.markRead(frame.room);
        else if (!mine) {
          entry.unseen += 1;
          entry.badge.textContent = String(entry.unseen);
          entry.badge.hidden = false;
        }
        break;
      }
      case "typing":
        if (frame.user !== this.me.id) {
          entry.typing.textContent = `${entry.name} is typing…`;
          clearTimeout(entry.timer);
          entry.timer = setTimeout(() => {
            entry.typing.textContent = "";
          }, TYPING_SHOWN_MS);
        }
        break;
      case "joined":
        // A resumed connection may bring messages read elsewhere: the marker follows.
        this.markRead(frame.room);
        break;
      default:
    }
  }
}

async function start() {
  const who = document.getElementById("who");
  const refuse = (why) => {
    who.textContent = "";
    document.getElementById("refused-why").replaceChildren(...why);
    document.getElementById("refused").hidden = false;
  };
  let me;
  try {
    const response = await fetch("/api/v1/users/me");
    if (response.status === 401) {
      return refuse([
        "Answering customers needs a support account. ",
        logInLink(),
        " with one, or ask an administrator to grant your account the support role.",
      ]);
    }
    if (!response.ok) throw new Error(`status ${response.status}`);
    me = await response.json();
  } catch (e) {
    who.textContent = `Cannot check your account (${e.message}): reload the page.`;
    return;
  }
  if (me.role !== "support" && me.role !== "admin") {
    return refuse([
      `You are signed in as ${me.display_name}, a customer account. Answering customers needs a `,
      "support account: ask an administrator to grant yours the support role.",
    ]);
  }
  who.textContent = `Signed in as ${me.display_name} (${me.role}).`;
  document.getElementById("console").hidden = false;
  const desk = new Console(me);
  document.addEventListener("visibilitychange", () => {
    if (desk.active) desk.markRead(desk.active);
  });
}

start();
