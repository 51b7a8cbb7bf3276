#!/usr/bin/env bash
# The event pipeline end to end on PostgreSQL + NATS JetStream (+ Redis for the cache), on
# loopback, as a ratio of its ceiling measured in the same run (the machine is noisy):
#
#  (1) orders/s from checkout to shipped: one `strata serve api` and one `strata serve worker`
#      (release build, payment decline rate 0 and latency 0, so every order goes
#      placed → paid → shipped); ORDERS checkouts fired at CONCURRENCY (wrk, one connection per
#      checkout in flight); the clock runs from just before the first checkout is sent to the
#      `order_status_history.at` of the last `shipped` (the database is polled with psql).
#  (2) the ceiling, the slower of
#      (a) the bus alone: crates/strata-lab/examples/jetstream_ceiling.rs moves the messages of
#          ORDERS orders with the worker's own client (`strata_bus::NatsBus`: publish awaiting
#          JetStream's ack, durable pull consumers, double acks): per order 3 publishes
#          (order.placed, order.paid, order.shipped: the relay publishes every outbox row) and
#          5 acked deliveries (payment ← placed, fulfilment ← paid, notifications ← order.>
#          takes all three), CONCURRENCY publishers, 16 deliveries in hand per handler;
#      (b) the store alone: pgbench runs, as custom scripts with prepared statements, the SQL
#          the pipeline runs per order, statement for statement (crates/strata-store/src/
#          orders.rs, events.rs, notifications.rs, outbox.rs): the checkout transaction
#          (9 statements), payment's processed-event check (1) and its transition (4),
#          fulfilment's transition (4), three notification transactions (2 each): 24
#          statements in 6 transactions, CONCURRENCY clients, each running one order's whole
#          chain per pgbench transaction. The outbox relay runs beside it as a second pgbench
#          with one client, like the worker's one relay loop: BEGIN, the batch SELECT … FOR
#          UPDATE SKIP LOCKED (up to 256 rows), the UPDATE … WHERE id = ANY(…) stamp, COMMIT,
#          and a 50 ms pause when the batch was not full (relay_batch, relay_interval_ms).
#      ratio = (1) ÷ min(a, b); target ≥ 0.5.
#  (3) latency at half that rate: LATENCY_ORDERS checkouts sent on a fixed schedule at half of
#      (1)'s orders/s (python, CONCURRENCY connections); per order, the `at` of its `shipped`
#      status minus the time its checkout was sent (client clock = database clock: one
#      machine). p50 and p99; the same figures from the order's `created_at` are given too.
#
#   bench/events.sh                   # ORDERS=3000 at CONCURRENCY=16
#   ORDERS=1000 SKIP_BUILD=1 bench/events.sh
#
# Knobs (environment): ORDERS (3000), CONCURRENCY (16: wrk connections = pgbench clients =
# ceiling publishers), LATENCY_ORDERS (ORDERS), BASE_PORT (18500: api, worker = +1),
# PG_URL (postgres://postgres@127.0.0.1:5432), PG_DB (test), NATS_URL
# (nats://127.0.0.1:4222), REDIS_URL (redis://127.0.0.1:6379), WAIT_S (300: longest wait for
# a run's orders to ship), SKIP_BUILD (0), CARGO_TARGET_DIR (target).
#
# Setup (not measured): a schema of its own in PG_DB (every connection's search_path), a bus
# namespace and a cache prefix of its own; users are inserted with SQL (no argon2: checkout
# never reads the password), each with a one-line cart (random product, quantity 1..3), stock
# far above what a run sells, and each user's JWT signed here with the api's secret. Each
# checkout is a different user with a fresh Idempotency-Key. The api and worker are stopped
# before the ceilings run, so their relay cannot pick up pgbench's outbox rows. Everything is
# removed on exit (processes, schema, streams).
#
# The last line of output is one JSON object.
set -euo pipefail

ORDERS=${ORDERS:-3000}
CONCURRENCY=${CONCURRENCY:-16}
LATENCY_ORDERS=${LATENCY_ORDERS:-$ORDERS}
BASE_PORT=${BASE_PORT:-18500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_DB=${PG_DB:-test}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
WAIT_S=${WAIT_S:-300}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET/release/strata
CEILING=$TARGET/release/examples/jetstream_ceiling
API_PORT=$BASE_PORT
WORKER_PORT=$((BASE_PORT + 1))
RUN_ID=$(head -c 5 /dev/urandom | od -An -tx1 | tr -d ' \n')
SCHEMA=bench_events_$RUN_ID
NAMESPACE=bench-events-$RUN_ID
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
JWT_KID=k1
# Every connection of the run works in its schema.
DB_URL="$PG_URL/$PG_DB?options=-c%20search_path%3D$SCHEMA"
RELAY_BATCH=256
RELAY_INTERVAL_MS=50

WORK=$(mktemp -d /tmp/strata-bench-events.XXXXXX)
PIDS=()
SCHEMA_CREATED=0

psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$PG_DB" "$@"; }
psql_run() { PGOPTIONS="-c search_path=$SCHEMA" psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$PG_DB" "$@"; }

stop_pid() {
    kill "$1" 2>/dev/null || true
    # Bounded: a process that ignores SIGTERM for 15 s is killed.
    for _ in $(seq 1 150); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup() {
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -x $CEILING ]]; then
        for ns in "$NAMESPACE" "$NAMESPACE-ceiling"; do
            NATS_URL=$NATS_URL NAMESPACE=$ns DELETE_ONLY=1 timeout 20 "$CEILING" >/dev/null 2>&1 || true
        done
    fi
    if [[ $SCHEMA_CREATED == 1 ]]; then
        psql_db -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need wrk wrk
need curl curl
need python3 python3
need psql postgresql-client
need pgbench postgresql-contrib

if [[ $SKIP_BUILD != 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p strata &&
        cargo build --release -q -p strata-lab --example jetstream_ceiling)
fi

now_s() { date +%s.%N; }
min() { awk -v a="$1" -v b="$2" 'BEGIN {print (a < b) ? a : b}'; }

# Waits (at most WAIT_S) until every order above id $1 is shipped; $2 orders are expected.
wait_shipped() {
    local after=$1 want=$2 deadline=$((SECONDS + WAIT_S)) done_count=0
    while ((SECONDS < deadline)); do
        done_count=$(psql_run -At -c "SELECT count(*) FROM orders WHERE id > $after AND status = 'shipped'")
        if ((done_count >= want)); then
            return 0
        fi
        sleep 0.2
    done
    echo "only $done_count of $want orders shipped after ${WAIT_S} s" >&2
    psql_run -At -c "SELECT status, count(*) FROM orders WHERE id > $after GROUP BY status" >&2
    return 1
}

# ---------------------------------------------------------------- setup
psql_db -c "CREATE SCHEMA $SCHEMA" >/dev/null
SCHEMA_CREATED=1

export STRATA_BUS_NAMESPACE=$NAMESPACE
export STRATA_CACHE_PREFIX=$NAMESPACE
STRATA_AUTH_JWT_SECRET=$JWT_SECRET STRATA_AUTH_KEY_ID=$JWT_KID "$STRATA" serve api \
    --database-url "$DB_URL" --listen "127.0.0.1:$API_PORT" --cache "$REDIS_URL" \
    --bus "$NATS_URL" --log-level warn >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
wait_ready "http://127.0.0.1:$API_PORT/readyz" || { tail -20 "$WORK/api.log" >&2; exit 1; }
STRATA_WORKER_PAYMENT_DECLINE_RATE=0 STRATA_WORKER_PAYMENT_LATENCY_MS=0 \
    STRATA_WORKER_PAYMENT_ERROR_RATE=0 "$STRATA" serve worker \
    --database-url "$DB_URL" --listen "127.0.0.1:$WORKER_PORT" --cache "$REDIS_URL" \
    --bus "$NATS_URL" --log-level warn >"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
wait_ready "http://127.0.0.1:$WORKER_PORT/readyz" || { tail -20 "$WORK/worker.log" >&2; exit 1; }

USERS=$((ORDERS + LATENCY_ORDERS))
seed_buyers psql_run "$USERS"
refill_carts psql_run

# One JWT per user, in user id order (HS256, the api's secret and key id).
mint_tokens psql_run "$JWT_SECRET" "$JWT_KID" "$WORK/tokens.txt"
head -n "$ORDERS" "$WORK/tokens.txt" >"$WORK/tokens-throughput.txt"
tail -n "$LATENCY_ORDERS" "$WORK/tokens.txt" >"$WORK/tokens-latency.txt"

# ---------------------------------------------------------------- (1) throughput, checkout → shipped
# wrk: request i is user i's checkout; once all are sent, its loop stops (the request it must
# still return is a GET /healthz that is never sent) and it says so in a file. The orders are
# counted in the database, and the rate uses that count: wrk leaves a request it built but had
# not written when its loop stopped (1 of 3000 in practice), which the run reports.
cat >"$WORK/checkout.lua" <<'LUA'
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  run = args[2]
  report = args[3]
  i = 0
end
function request()
  i = i + 1
  if i > #tokens then
    if i == #tokens + 1 then
      local f = io.open(report, "w")
      f:write("issued\n")
      f:close()
    end
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", "/api/v1/orders", {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Idempotency-Key"] = "events-" .. run .. "-" .. i,
  }, nil)
end
LUA

count_orders() { psql_run -At -c "SELECT count(*) FROM orders WHERE id > $1"; }
BEFORE=$(psql_run -At -c "SELECT coalesce(max(id), 0) FROM orders")
START=$(now_s)
wrk -t1 -c"$CONCURRENCY" -d"${WAIT_S}s" -s "$WORK/checkout.lua" "http://127.0.0.1:$API_PORT" \
    -- "$WORK/tokens-throughput.txt" "$RUN_ID" "$WORK/issued.txt" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
for _ in $(seq 1 $((WAIT_S * 20))); do
    [[ -s $WORK/issued.txt ]] && break
    kill -0 "$WRK_PID" 2>/dev/null || break
    sleep 0.05
done
# Every checkout was sent and wrk's loop stopped; its connections stay open (wrk sleeps out its
# duration) until the checkouts in flight are in the database, or a second passed without one.
created=0
for _ in $(seq 1 $((WAIT_S * 5))); do
    now_count=$(count_orders "$BEFORE")
    ((now_count >= ORDERS)) && { created=$now_count; break; }
    if ((now_count == created)); then
        stable=$((${stable:-0} + 1))
        ((stable >= 5)) && break
    else
        stable=0
    fi
    created=$now_count
    sleep 0.2
done
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
unset 'PIDS[-1]'
other=$((ORDERS - created))
((created > 0)) || { cat "$WORK/wrk.out" >&2; echo "no checkout succeeded" >&2; exit 1; }
((other == 0)) || echo "warning: $other of $ORDERS checkouts made no order" >&2
wait_shipped "$BEFORE" "$created"
read -r LAST_SHIPPED LAST_CREATED < <(psql_run -At -F ' ' -c "
    SELECT extract(epoch FROM max(h.at)), extract(epoch FROM max(o.created_at))
    FROM orders o JOIN order_status_history h ON h.order_id = o.id AND h.status = 'shipped'
    WHERE o.id > $BEFORE")
STRATA_OPS=$(awk -v n="$created" -v a="$START" -v b="$LAST_SHIPPED" 'BEGIN {printf "%.1f", n / (b - a)}')
CHECKOUT_OPS=$(awk -v n="$created" -v a="$START" -v b="$LAST_CREATED" 'BEGIN {printf "%.1f", n / (b - a)}')
# The relay's batches: every row of one batch carries the same sent_at.
RELAY_AVG_BATCH=$(psql_run -At -c "SELECT round(count(*)::numeric / greatest(count(DISTINCT sent_at), 1), 1) FROM outbox WHERE sent_at IS NOT NULL")
echo "(1) $created orders checkout → shipped in $(awk -v a="$START" -v b="$LAST_SHIPPED" 'BEGIN {printf "%.2f", b - a}') s: $STRATA_OPS orders/s (checkouts alone $CHECKOUT_OPS/s, relay batch avg $RELAY_AVG_BATCH)" >&2
curl -fsS "http://127.0.0.1:$WORKER_PORT/metrics" >"$WORK/metrics-throughput.txt" 2>/dev/null || true

# ---------------------------------------------------------------- (3) latency at half the rate
RATE=$(awk -v r="$STRATA_OPS" 'BEGIN {printf "%.1f", r / 2}')
BEFORE_LAT=$(psql_run -At -c "SELECT coalesce(max(id), 0) FROM orders")
python3 - "$WORK/tokens-latency.txt" "$API_PORT" "$RATE" "$CONCURRENCY" "$RUN_ID" "$WORK/sent.csv" <<'PY'
import http.client, json, sys, threading, time
tokens = [l.strip() for l in open(sys.argv[1]) if l.strip()]
port, rate, conc, run, out = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
lock = threading.Lock()
state = {"next": 0}
rows, failures, late = [], [0], [0]
start = time.time() + 0.2
def worker():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        with lock:
            i = state["next"]
            state["next"] += 1
        if i >= len(tokens):
            return
        due = start + i / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        elif pause < -0.01:
            late[0] += 1
        sent = time.time()
        try:
            conn.request("POST", "/api/v1/orders", headers={
                "Authorization": "Bearer " + tokens[i],
                "Idempotency-Key": f"events-lat-{run}-{i}"})
            resp = conn.getresponse()
            body = resp.read()
        except Exception:
            failures[0] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        if resp.status == 201:
            with lock:
                rows.append((json.loads(body)["id"], sent))
        else:
            failures[0] += 1
threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
with open(out, "w") as f:
    for order_id, sent in rows:
        f.write(f"{order_id},{sent:.6f}\n")
print(f"paced: {len(rows)} created, {failures[0]} failed, {late[0]} sent more than 10 ms late", file=sys.stderr)
PY
LAT_CREATED=$(wc -l <"$WORK/sent.csv")
wait_shipped "$BEFORE_LAT" "$LAT_CREATED"
read -r P50 P99 P50_CREATED P99_CREATED < <(psql_run -At -F ' ' <<SQL
CREATE TEMP TABLE sent (order_id bigint PRIMARY KEY, sent_at double precision);
\copy sent FROM '$WORK/sent.csv' WITH (FORMAT csv)
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms_created)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms_created)::numeric, 1)
FROM (SELECT (extract(epoch FROM h.at) - s.sent_at) * 1000 AS ms,
             extract(epoch FROM h.at - o.created_at) * 1000 AS ms_created
      FROM sent s JOIN orders o ON o.id = s.order_id
      JOIN order_status_history h ON h.order_id = o.id AND h.status = 'shipped') t;
SQL
)
echo "(3) $LAT_CREATED orders at $RATE/s: checkout sent → shipped p50 $P50 ms, p99 $P99 ms (from created_at: p50 $P50_CREATED, p99 $P99_CREATED)" >&2
curl -fsS "http://127.0.0.1:$WORKER_PORT/events/stats" >"$WORK/stats.json" 2>/dev/null || true

# The pipeline is done: stop it, so its relay does not take pgbench's outbox rows.
stop_pid "$WORKER_PID"
stop_pid "$API_PID"
PIDS=()

# ---------------------------------------------------------------- (2a) ceiling: the bus alone
ceiling=$(NATS_URL=$NATS_URL NAMESPACE="$NAMESPACE-ceiling" ORDERS=$ORDERS \
    CONCURRENCY=$CONCURRENCY HANDLER_CONCURRENCY=16 timeout "$WAIT_S" "$CEILING")
BUS_OPS=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["orders_per_s"])' "$ceiling")
echo "(2a) bus alone: $ceiling" >&2

# ---------------------------------------------------------------- (2b) ceiling: the store alone
# One pgbench transaction = one order's chain: the checkout (bench/lib/checkout.sql), then each
# handler's transaction. Event ids are the order id × 4 + k (unique,
# like the outbox ids the handlers key on); user = first + client_id + clients × (n − 1).
{ cat "$ROOT/bench/lib/checkout.sql"; cat <<'SQL'
\set ev_placed :order_id * 4
\set ev_paid :order_id * 4 + 1
\set ev_shipped :order_id * 4 + 2
SELECT COUNT(*) FROM processed_events WHERE handler = 'payment' AND event_id = :ev_placed;
BEGIN;
INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('payment', :ev_placed, now()) ON CONFLICT (handler, event_id) DO NOTHING;
UPDATE orders SET status = 'paid', updated_at = now() WHERE id = :order_id AND status = 'placed' RETURNING user_id, total_cents;
INSERT INTO order_status_history (order_id, status, at) VALUES (:order_id, 'paid', now());
INSERT INTO outbox (topic, payload, created_at) VALUES ('order.paid', :changed, now());
COMMIT;
BEGIN;
INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('fulfilment', :ev_paid, now()) ON CONFLICT (handler, event_id) DO NOTHING;
UPDATE orders SET status = 'shipped', updated_at = now() WHERE id = :order_id AND status = 'paid' RETURNING user_id, total_cents;
INSERT INTO order_status_history (order_id, status, at) VALUES (:order_id, 'shipped', now());
INSERT INTO outbox (topic, payload, created_at) VALUES ('order.shipped', :changed, now());
COMMIT;
BEGIN;
INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('notifications', :ev_placed, now()) ON CONFLICT (handler, event_id) DO NOTHING;
INSERT INTO notifications (user_id, order_id, kind, message, event_id, created_at) SELECT :uid, :order_id, 'placed', 'Order ' || :order_id || ': We received your order.', :ev_placed, now() WHERE EXISTS (SELECT 1 FROM orders WHERE id = :order_id AND user_id = :uid) ON CONFLICT (event_id) DO NOTHING;
COMMIT;
BEGIN;
INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('notifications', :ev_paid, now()) ON CONFLICT (handler, event_id) DO NOTHING;
INSERT INTO notifications (user_id, order_id, kind, message, event_id, created_at) SELECT :uid, :order_id, 'paid', 'Order ' || :order_id || ': Your payment was accepted.', :ev_paid, now() WHERE EXISTS (SELECT 1 FROM orders WHERE id = :order_id AND user_id = :uid) ON CONFLICT (event_id) DO NOTHING;
COMMIT;
BEGIN;
INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('notifications', :ev_shipped, now()) ON CONFLICT (handler, event_id) DO NOTHING;
INSERT INTO notifications (user_id, order_id, kind, message, event_id, created_at) SELECT :uid, :order_id, 'shipped', 'Order ' || :order_id || ': Your order is on its way.', :ev_shipped, now() WHERE EXISTS (SELECT 1 FROM orders WHERE id = :order_id AND user_id = :uid) ON CONFLICT (event_id) DO NOTHING;
COMMIT;
SQL
} >"$WORK/order.sql"
# The relay loop (outbox.rs `relay`, relay.rs): the batch's ids are gathered in the SELECT so
# the stamp can name them, as the worker does with the rows it read.
cat >"$WORK/relay.sql" <<SQL
BEGIN;
SELECT coalesce(array_agg(id), '{}') AS ids, count(*) AS batch FROM (SELECT id, topic, payload, created_at, sent_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $RELAY_BATCH FOR UPDATE SKIP LOCKED) b \gset
\if :batch > 0
UPDATE outbox SET sent_at = now() WHERE id = ANY(:ids::bigint[]);
\endif
COMMIT;
\if :batch < $RELAY_BATCH
\sleep $RELAY_INTERVAL_MS ms
\endif
SQL
refill_carts psql_run
BEFORE_PG=$(psql_run -At -c "SELECT coalesce(max(id), 0) FROM outbox")
PGB_URL="$PG_URL/$PG_DB"
export PGOPTIONS="-c search_path=$SCHEMA"
PER_CLIENT=$(((ORDERS + CONCURRENCY - 1) / CONCURRENCY))
pgbench -n -M prepared -c 1 -T "$WAIT_S" -f "$WORK/relay.sql" "$PGB_URL" >"$WORK/relay.out" 2>&1 &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
out=$(pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -t "$PER_CLIENT" -f "$WORK/order.sql" \
    -D n=0 -D first="$FIRST_UID" -D clients="$CONCURRENCY" -D run=7 \
    -D fingerprint='{"coupon":null,"region":null}' \
    -D placed='{"order_id":1000000,"user_id":1000000,"total_cents":123456,"lines":[{"product_id":17,"quantity":2}],"placed_at":"2026-11-23T10:00:00.000000Z"}' \
    -D changed='{"order_id":1000000,"user_id":1000000,"status":"paid","total_cents":123456,"at":"2026-11-23T10:00:00.000000Z"}' \
    "$PGB_URL" 2>&1) || { echo "$out" >&2; exit 1; }
# Let the relay stamp what is left, then stop it.
for _ in $(seq 1 50); do
    left=$(psql_run -At -c "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    ((left == 0)) && break
    sleep 0.1
done
stop_pid "$RELAY_PID"
PIDS=()
PG_RELAY_AVG_BATCH=$(psql_run -At -c "SELECT round(count(*)::numeric / greatest(count(DISTINCT sent_at), 1), 1) FROM outbox WHERE id > $BEFORE_PG AND sent_at IS NOT NULL")
unset PGOPTIONS
PG_OPS=$(awk '/^tps = / {printf "%.1f", $3}' <<<"$out")
failed=$(awk '/number of failed transactions/ {print $5}' <<<"$out")
echo "(2b) store alone: $PG_OPS orders/s (pgbench, ${failed:-0} failed; relay batch avg $PG_RELAY_AVG_BATCH)" >&2

CEILING_OPS=$(min "$BUS_OPS" "$PG_OPS")
RATIO=$(ratio "$STRATA_OPS" "$CEILING_OPS")
LIMIT_BY=$(awk -v a="$BUS_OPS" -v b="$PG_OPS" 'BEGIN {print (a < b) ? "bus" : "store"}')
printf '%-40s %10s\n' "orders/s checkout → shipped (strata)" "$STRATA_OPS" \
    "ceiling: bus alone (JetStream)" "$BUS_OPS" "ceiling: store alone (pgbench)" "$PG_OPS" \
    "ratio (target ≥ 0.5)" "$RATIO" "p50 ms at $RATE orders/s" "$P50" "p99 ms at $RATE orders/s" "$P99"
echo "{\"orders\": $created, \"concurrency\": $CONCURRENCY, \"orders_per_s\": $STRATA_OPS, \"checkouts_per_s\": $CHECKOUT_OPS, \"relay_avg_batch\": $RELAY_AVG_BATCH, \"pgbench_relay_avg_batch\": $PG_RELAY_AVG_BATCH, \"bus_ceiling_orders_per_s\": $BUS_OPS, \"pgbench_ceiling_orders_per_s\": $PG_OPS, \"ceiling_orders_per_s\": $CEILING_OPS, \"ceiling_limited_by\": \"$LIMIT_BY\", \"ratio\": $RATIO, \"bus_publishes_per_order\": 3, \"bus_deliveries_per_order\": 5, \"sql_statements_per_order\": 24, \"sql_transactions_per_order\": 6, \"latency_orders\": $LAT_CREATED, \"latency_rate_per_s\": $RATE, \"p50_ms\": $P50, \"p99_ms\": $P99, \"p50_ms_from_created_at\": $P50_CREATED, \"p99_ms_from_created_at\": $P99_CREATED}"
