#!/usr/bin/env bash
# Peak buffering: a burst of order.placed events far above what one worker handles per second.
# One `strata serve worker` (relay + handlers, release build) runs on PostgreSQL and NATS
# JetStream; EVENTS placed orders and their outbox events are written in one transaction (the
# burst); the worker's relay publishes them as fast as it can while its handlers consume.
# The script samples the worker's consumer lag and outbox backlog (GET /events/stats) until the
# pipeline is quiet, then checks that nothing was lost (every order final, one notification per
# status change, nothing left in the outbox or unacked) and reports the peak RSS of the worker
# and of the NATS server (VmHWM), the peak lag and the time to drain.
#
#   bench/events-peak.sh                 # 50,000 events
#   EVENTS=5000 bench/events-peak.sh
#
# Knobs: EVENTS (50000), TIMEOUT_SECS (900), PG_URL, NATS_URL, SKIP_BUILD (0).
# The last line of output is one JSON object.
set -euo pipefail

EVENTS=${EVENTS:-50000}
TIMEOUT_SECS=${TIMEOUT_SECS:-900}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
TARGET=${CARGO_TARGET_DIR:-target}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release -p strata >&2
fi
BIN="$TARGET/release/strata"

SCHEMA="events_peak_$$"
psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >&2
DB_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA"
PSQL=(psql -qtA "$PG_URL" -v ON_ERROR_STOP=1 -c "SET search_path = $SCHEMA")
export STRATA_BUS_NAMESPACE="peak$$"
export STRATA_LOG_LEVEL=warn
PORT=$((18300 + $$ % 500))

WORKER_PID=
cleanup() {
    [[ -n $WORKER_PID ]] && kill "$WORKER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    psql -q "$PG_URL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >&2 || true
}
trap cleanup EXIT

STRATA_WORKER_PAYMENT_LATENCY_MS=0 "$BIN" serve worker --listen "127.0.0.1:$PORT" \
    --database-url "$DB_URL" --bus "$NATS_URL" >/dev/null 2>/tmp/events-peak-worker.log &
WORKER_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "worker did not start" >&2; exit 1; }

# The burst: EVENTS placed orders (1,000 customers, one product), their history and their
# order.placed outbox events, committed at once.
"${PSQL[@]}" -c "
BEGIN;
INSERT INTO users (email, display_name, password_hash)
    SELECT 'peak' || g || '@example.test', 'Peak ' || g, 'x' FROM generate_series(1, 1000) g;
INSERT INTO products (sku, name, category, price_cents, stock)
    VALUES ('PEAK-1', 'Peak product', 'test', 1000, 1000000000);
INSERT INTO orders (user_id, status, region, tax_rate_bps, subtotal_cents, discount_cents,
        tax_cents, total_cents)
    SELECT (SELECT min(id) FROM users) + g % 1000, 'placed', 'EU-DE', 0, 1000, 0, 0, 1000
    FROM generate_series(1, $EVENTS) g;
INSERT INTO order_lines (order_id, position, product_id, sku, name, unit_price_cents, quantity,
        discount_cents, total_cents)
    SELECT o.id, 1, p.id, p.sku, p.name, 1000, 1, 0, 1000 FROM orders o, products p;
UPDATE products SET stock = stock - $EVENTS;
INSERT INTO order_status_history (order_id, status, at) SELECT id, 'placed', created_at FROM orders;
INSERT INTO outbox (topic, payload, created_at)
    SELECT 'order.placed', json_build_object('order_id', o.id, 'user_id', o.user_id,
        'total_cents', o.total_cents,
        'lines', json_build_array(json_build_object('product_id', p.id, 'quantity', 1)),
        'placed_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text,
        o.created_at
    FROM orders o, products p ORDER BY o.id;
COMMIT;" >&2
START=$(date +%s.%N)

peak_lag=0
peak_backlog=0
deadline=$(( $(date +%s) + TIMEOUT_SECS ))
while :; do
    stats=$(curl -sf "http://127.0.0.1:$PORT/events/stats" || echo '{}')
    read -r outbox lag unfinished <<<"$(python3 -c '
import json, sys
s = json.loads(sys.argv[1] or "{}")
lag = sum(c["lag"] + c["pending"] for st in s.get("streams", []) if st["stream"] == "order" for c in st["consumers"])
print(s.get("outbox_pending", -1), lag, 0)' "$stats")"
    left=$("${PSQL[@]}" -c "SELECT count(*) FROM orders WHERE status NOT IN ('shipped', 'payment_failed')" | tail -n1)
    (( lag > peak_lag )) && peak_lag=$lag
    (( outbox > peak_backlog )) && peak_backlog=$outbox
    printf 'outbox %s, consumer lag %s, unfinished orders %s\n' "$outbox" "$lag" "$left" >&2
    if [[ $outbox == 0 && $lag == 0 && $left == 0 ]]; then break; fi
    (( $(date +%s) < deadline )) || { echo "not drained within ${TIMEOUT_SECS}s" >&2; exit 1; }
    sleep 1
done
END=$(date +%s.%N)

worker_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
nats_pid=$(pgrep -x nats-server | head -n1 || true)
nats_hwm=$([[ -n $nats_pid ]] && awk '/VmHWM/ {print $2}' "/proc/$nats_pid/status" || echo 0)

# Nothing lost, nothing doubled.
read -r shipped failed changes notifications distinct <<<"$("${PSQL[@]}" -F ' ' -c "
SELECT (SELECT count(*) FROM orders WHERE status = 'shipped'),
       (SELECT count(*) FROM orders WHERE status = 'payment_failed'),
       (SELECT count(*) FROM order_status_history),
       (SELECT count(*) FROM notifications),
       (SELECT count(*) FROM (SELECT DISTINCT order_id, kind FROM notifications) d)" | tail -n1)"
lost=$(( EVENTS - shipped - failed ))
[[ $lost == 0 ]] || { echo "lost $lost orders" >&2; exit 1; }
[[ $notifications == "$changes" && $notifications == "$distinct" ]] || {
    echo "notifications $notifications, distinct $distinct, status changes $changes" >&2; exit 1; }

python3 - "$EVENTS" "$START" "$END" "$peak_lag" "$peak_backlog" "$worker_hwm" "$nats_hwm" \
    "$shipped" "$failed" "$notifications" <<'PY'
import json, sys
events, start, end, lag, backlog, worker, nats, shipped, failed, notes = sys.argv[1:]
secs = float(end) - float(start)
print(json.dumps({
    "events": int(events),
    "drain_secs": round(secs, 1),
    "orders_per_sec": round(int(events) / secs, 1),
    "peak_consumer_lag": int(lag),
    "peak_outbox_backlog": int(backlog),
    "worker_peak_rss_mib": round(int(worker) / 1024, 1),
    "nats_peak_rss_mib": round(int(nats) / 1024, 1),
    "shipped": int(shipped),
    "payment_failed": int(failed),
    "notifications": int(notes),
    "lost": 0,
}))
PY
