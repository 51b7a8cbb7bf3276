// The order page's live status: polls the order endpoint (which accepts the page's session
// cookie) and rewrites the status and its history in place as the order moves on (placed →
// paid → shipped), until it reaches a final status. Without JavaScript the page shows the
// status as it was at load and a link to refresh.

const status = document.getElementById("order-status");
const history = document.getElementById("history");
const refresh = document.getElementById("refresh");
const FINAL = new Set(["shipped", "payment_failed", "cancelled"]);
const LABELS = { payment_failed: "payment failed" };
// Once a second: the worker's steps take a few seconds each, and a poll is one cached-free
// primary-key read.
const INTERVAL_MS = 1000;

const label = (code) => LABELS[code] ?? code;

// `2026-12-06T08:01:30Z` as the page writes times: `2026-12-06 08:01 UTC`.
const when = (iso) => `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;

function show(order) {
  status.dataset.status = order.status;
  status.textContent = label(order.status);
  history.replaceChildren(
    ...order.history.map((change) => {
      const item = document.createElement("li");
      const at = document.createElement("small");
      at.textContent = when(change.at);
      item.append(`${label(change.status)} `, at);
      return item;
    }),
  );
}

async function poll() {
  try {
    const response = await fetch(`/api/v1/orders/${status.dataset.order}`, {
      headers: { accept: "application/json" },
      credentials: "same-origin",
    });
    if (response.ok) {
      const order = await response.json();
      if (order.status !== status.dataset.status) show(order);
      if (FINAL.has(order.status)) {
        if (refresh) refresh.hidden = true;
        return;
      }
    }
  } catch {
    // A network blip: the next poll tries again.
  }
  setTimeout(poll, INTERVAL_MS);
}

if (status && history && !FINAL.has(status.dataset.status)) {
  if (refresh) refresh.textContent = "This page follows the order as it moves on.";
  setTimeout(poll, INTERVAL_MS);
}
