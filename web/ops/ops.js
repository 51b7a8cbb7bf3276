// The operations view: reads the gateway's live stream (`GET /admin/stream`, Server-Sent
// Events) and draws every pool and instance; its buttons call the admin API.
//
// The stream is read with `fetch` rather than `EventSource`: EventSource cannot send the
// `Authorization` header the admin API wants when `gateway.admin_token` is set, and a token in
// the URL would land in logs and history. The token is asked for once and kept in this tab's
// sessionStorage.

const TOKEN_KEY = "strata.ops.token";
const SVG = "http://www.w3.org/2000/svg";
/// Reconnect after this long when the stream ends or fails.
const RETRY_MS = 1000;

const $ = (id) => document.getElementById(id);
const announce = (text) => { $("announce").textContent = text; };
const lastHealth = new Map();
let control = false;

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken(message) {
  $("connection").textContent = message;
  const form = $("login");
  form.hidden = false;
  $("token").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("login").hidden = true;
  connect();
});

/// Reads the stream until it ends, drawing each snapshot; then tries again.
async function connect() {
  $("connection").textContent = "Connecting…";
  let response;
  try {
    response = await fetch("/admin/stream", { headers: headers(), cache: "no-store" });
  } catch (e) {
    return retry(`Cannot reach the gateway (${e.message}); retrying…`);
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    return askForToken("The admin API needs a token.");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const message = body.error ? body.error.message : response.statusText;
    return retry(`The stream answered ${response.status}: ${message}; retrying…`);
  }
  $("connection").textContent = "Live.";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) draw(JSON.parse(data));
      }
    }
  } catch (e) {
    return retry(`The stream broke (${e.message}); reconnecting…`);
  }
  retry("The stream ended; reconnecting…");
}

function retry(message) {
  $("connection").textContent = message;
  setTimeout(connect, RETRY_MS);
}

function draw(snapshot) {
  control = snapshot.control;
  const pools = $("pools");
  for (const pool of snapshot.pools) {
    let section = document.getElementById(`pool-${pool.name}`);
    if (!section) {
      section = poolSection(pool.name);
      pools.append(section);
    }
    section.querySelector(".summary").textContent =
      `${pool.algorithm.replaceAll("_", " ")}, ${pool.requests_per_sec.toFixed(1)} requests/s`;
    drawRows(section.querySelector("tbody"), pool);
    drawSpread(section.querySelector("svg"), pool);
  }
  drawSources(snapshot.sources);
}

function poolSection(name) {
  const section = document.createElement("section");
  section.id = `pool-${name}`;
  section.setAttribute("aria-labelledby", `pool-${name}-title`);
  section.innerHTML = `
    <h2 id="pool-${name}-title">Pool ${name}</h2>
    <p class="summary sub"></p>
    <div class="scroll" role="region" tabindex="0" aria-label="Instances of pool ${name}">
      <table>
        <caption>Instances of pool ${name}, over the last second</caption>
        <thead><tr>
          <th scope="col">Instance</th><th scope="col">Health</th>
          <th scope="col" class="num">In flight</th><th scope="col" class="num">Req/s</th>
          <th scope="col" class="num">p99</th><th scope="col" class="num">Errors/s</th>
          <th scope="col" class="num">Share</th><th scope="col" class="num">WebSockets</th>
          <th scope="col">Actions</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
    <h3 class="sub">Load spread</h3>`;
  const svg = document.createElementNS(SVG, "svg");
  svg.classList.add("spread");
  svg.setAttribute("role", "img");
  section.append(svg);
  return section;
}

function drawRows(tbody, pool) {
  const present = new Set();
  for (const instance of pool.instances) {
    present.add(instance.address);
    let row = tbody.querySelector(`tr[data-address="${CSS.escape(instance.address)}"]`);
    if (!row) {
      row = instanceRow(pool.name, instance.address, instance.id);
      tbody.append(row);
    }
    const health = instance.draining ? `${instance.health}, draining` : instance.health;
    const cell = row.querySelector(".health");
    cell.textContent = health;
    cell.className = `health ${instance.draining ? "draining" : instance.health}`;
    row.dataset.health = instance.health;
    row.dataset.share = instance.share;
    row.querySelector(".in-flight").textContent = instance.in_flight;
    row.querySelector(".rate").textContent = instance.requests_per_sec.toFixed(1);
    row.querySelector(".p99").textContent = instance.p99_ms === undefined ? "–" : `${instance.p99_ms} ms`;
    row.querySelector(".errors").textContent = instance.errors_per_sec.toFixed(1);
    row.querySelector(".share").textContent = `${Math.round(instance.share * 100)}%`;
    row.querySelector(".websockets").textContent = instance.websockets_open;
    row.querySelector("button.drain").disabled = instance.draining;
    for (const button of row.querySelectorAll("button.stop, button.start")) button.hidden = !control;
    const key = `${pool.name} ${instance.address}`;
    const before = lastHealth.get(key);
    if (before !== undefined && before !== health) announce(`${pool.name} ${instance.address} is now ${health}.`);
    lastHealth.set(key, health);
  }
  for (const row of tbody.querySelectorAll("tr")) {
    if (!present.has(row.dataset.address)) row.remove();
  }
}

function instanceRow(pool, address, id) {
  const row = document.createElement("tr");
  row.dataset.pool = pool;
  row.dataset.address = address;
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = address;
  row.append(th);
  for (const name of ["health", "in-flight num", "rate num", "p99 num", "errors num", "share num", "websockets num"]) {
    const td = document.createElement("td");
    td.className = name;
    row.append(td);
  }
  const actions = document.createElement("td");
  const group = document.createElement("div");
  group.className = "actions";
  for (const action of ["drain", "stop", "start"]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = action;
    button.dataset.action = action;
    button.textContent = action[0].toUpperCase() + action.slice(1);
    button.setAttribute("aria-label", `${button.textContent} ${pool} instance ${address}`);
    button.addEventListener("click", () => act(pool, address, id, action, button));
    group.append(button);
  }
  actions.append(group);
  row.append(actions);
  return row;
}

const PAST = { drain: "Draining", stop: "Stopped", start: "Started" };

/// Calls the admin API for one button and announces what it answered.
async function act(pool, address, id, action, button) {
  button.disabled = true;
  announce(`${action} ${pool} ${address}…`);
  try {
    // The instance's hex id names it in the path: an address's `:` would need escaping.
    const path = `/admin/pools/${encodeURIComponent(pool)}/instances/${encodeURIComponent(id)}/${action}`;
    const response = await fetch(path, { method: "POST", headers: headers() });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      announce(`${PAST[action]} ${pool} ${address}.`);
    } else {
      announce(`Could not ${action} ${pool} ${address}: ${body.error ? body.error.message : response.statusText}`);
      if (response.status === 401) askForToken("The admin API needs a token.");
    }
  } catch (e) {
    announce(`Could not ${action} ${pool} ${address}: ${e.message}`);
  } finally {
    if (action !== "drain") button.disabled = false;
  }
}

/// One horizontal bar per instance, its length the instance's share of the pool's requests.
function drawSpread(svg, pool) {
  const rowHeight = 26, labelWidth = 150, width = 400, barWidth = width - labelWidth - 50;
  const height = Math.max(1, pool.instances.length) * rowHeight;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const parts = pool.instances.map((i) => `${i.address} ${Math.round(i.share * 100)}%`);
  svg.setAttribute("aria-label", `Share of the requests of pool ${pool.name}: ${parts.join(", ") || "no instances"}`);
  svg.replaceChildren();
  pool.instances.forEach((instance, n) => {
    const y = n * rowHeight;
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", 0);
    label.setAttribute("y", y + 17);
    label.textContent = instance.address;
    const track = document.createElementNS(SVG, "rect");
    for (const [k, v] of [["x", labelWidth], ["y", y + 5], ["width", barWidth], ["height", 16], ["class", "track"]]) track.setAttribute(k, v);
    const bar = document.createElementNS(SVG, "rect");
    const out = instance.health !== "up" || instance.draining;
    for (const [k, v] of [["x", labelWidth], ["y", y + 5], ["width", Math.round(barWidth * instance.share)], ["height", 16], ["class", out ? "bar out" : "bar"]]) bar.setAttribute(k, v);
    const value = document.createElementNS(SVG, "text");
    value.setAttribute("x", labelWidth + barWidth + 6);
    value.setAttribute("y", y + 17);
    value.textContent = `${Math.round(instance.share * 100)}%`;
    svg.append(label, track, bar, value);
  });
}

function drawSources(sources) {
  const box = $("sources");
  if (sources.length === 0) {
    box.innerHTML = "<p>No sources configured (<code>gateway.ops.sources</code>).</p>";
    return;
  }
  box.replaceChildren();
  for (const source of sources) {
    const heading = document.createElement("p");
    const state = source.up && !source.stale ? "live" : source.age_ms === undefined ? "no figures yet" : `stale, ${(source.age_ms / 1000).toFixed(0)} s old`;
    heading.textContent = `${source.url}: ${state}${source.error ? ` (${source.error})` : ""}`;
    heading.className = source.stale ? "stale" : "";
    box.append(heading);
    if (source.samples.length === 0) continue;
    const wrap = document.createElement("div");
    wrap.className = "scroll";
    const table = document.createElement("table");
    table.innerHTML = `<caption></caption>
      <thead><tr><th scope="col">Figure</th><th scope="col">Of</th><th scope="col" class="num">Value</th></tr></thead>`;
    table.caption.textContent = `Event pipeline figures from ${source.url}`;
    const tbody = document.createElement("tbody");
    for (const sample of source.samples) {
      const row = tbody.insertRow();
      row.insertCell().textContent = sample.name.replace("strata_worker_", "").replaceAll("_", " ");
      row.insertCell().textContent = sample.labels.replaceAll('"', "") || "all";
      const value = row.insertCell();
      value.className = "num";
      value.textContent = sample.value;
    }
    table.append(tbody);
    wrap.append(table);
    box.append(wrap);
  }
}

connect();
