#!/usr/bin/env bash
# The api tier, measured against its own ceilings, on loopback, as ratios (the machine is noisy):
#
#  (a) cached catalog reads (`GET /api/v1/products/7`) through the gateway of `strata up`, as a
#      ratio of the same api instance's `/healthz` through the same gateway (the ceiling: the
#      cheapest answer the instance gives). wrk, interleaved, ROUNDS rounds, medians.
#  (b) checkouts per second on PostgreSQL (`POST /api/v1/orders` straight to one `strata serve
#      api` process, no gateway), as a ratio of pgbench running the statements of the checkout
#      transaction (crates/strata-store/src/orders.rs) as a custom script, against the same
#      fresh database after the same migrations, at the same concurrency. Interleaved, ROUNDS
#      rounds, medians.
#
#   bench/api.sh                 # both parts, 3 rounds of 5 s
#   PARTS=catalog bench/api.sh   # only (a); PARTS=checkout: only (b)
#
# Knobs (environment): ROUNDS (3), DURATION (5, seconds per run), CONNECTIONS (32, part a),
# CHECKOUT_CONCURRENCY (16, part b: wrk connections = pgbench clients = the api's default pool
# size), BENCH_USERS (60000), BASE_PORT (18400), PG_URL (postgres://postgres@127.0.0.1:5432),
# PG_ADMIN_DB (test), SKIP_BUILD (0).
#
# Part (b) in detail. Setup (not measured): BENCH_USERS customers are inserted with SQL (no
# argon2 hashing: the checkout never reads the password), each gets a cart with one line of a
# random product (quantity 1..3), every product's stock is set far above what a run can sell,
# and each user's JWT is signed here with the same HS256 secret and key id the api verifies.
# strata: wrk (one thread, CHECKOUT_CONCURRENCY connections) posts checkouts, each as the next
# user in the list (so every checkout finds a filled cart) with a fresh Idempotency-Key; only
# 201 answers count. pgbench: the same transaction, statement for statement (idempotency key
# claim, cart lock, DELETE … RETURNING of the lines, conditional stock update, order, line,
# status history, outbox event, key → order), prepared statements like sqlx, each client taking
# the next user of its own slice. Carts are refilled before every run. strata's request does a
# little more than pgbench's transaction: JWT check, pricing, JSON, and reading the order back
# (3 SELECTs) for the answer, so the ratio is conservative.
#
# The last line of output is one JSON object with the medians and the ratios.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
CHECKOUT_CONCURRENCY=${CHECKOUT_CONCURRENCY:-16}
BENCH_USERS=${BENCH_USERS:-60000}
BASE_PORT=${BASE_PORT:-18400}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_ADMIN_DB=${PG_ADMIN_DB:-test}
SKIP_BUILD=${SKIP_BUILD:-0}
PARTS=${PARTS:-catalog,checkout}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/release/strata
GW_PORT=$BASE_PORT
GW_ADMIN_PORT=$((BASE_PORT + 1))
API_PORT=$((BASE_PORT + 2))
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
JWT_KID=k1

WORK=$(mktemp -d /tmp/strata-bench-api.XXXXXX)
DB=strata_bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
DB_CREATED=0

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$PG_ADMIN_DB" "$@"; }
psql_bench() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$DB" "$@"; }

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $DB_CREATED == 1 ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

need wrk wrk
need curl curl
need python3 python3
if [[ $PARTS == *checkout* ]]; then
    need psql postgresql-client
    need pgbench postgresql-contrib
fi

if [[ $SKIP_BUILD != 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p strata)
fi

# Requests/s of a wrk report on stdin.
rps() { awk '/^Requests\/sec:/ {print $2}'; }
# p99 latency (ms) of a wrk --latency report on stdin.
p99_ms() {
    awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v*=1000}; print v}'
}

JSON_PARTS=()
TABLE=()

# ---------------------------------------------------------------- (a) cached catalog reads
if [[ $PARTS == *catalog* ]]; then
    mkdir -p "$WORK/up"
    # The reference is the instance's /healthz through the gateway, which keeps the instances'
    # operational endpoints off its public listener by default: let /healthz through here.
    STRATA_GATEWAY_API_INTERNAL_PATHS=/metrics,/readyz \
    STRATA_AUTH_JWT_SECRET=$JWT_SECRET "$STRATA" up --api 1 --chat 1 --port "$GW_PORT" \
        --admin-port "$GW_ADMIN_PORT" --data-dir "$WORK/up" --log-level warn \
        >"$WORK/up.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$GW_PORT/healthz"
    wait_ready "http://127.0.0.1:$GW_PORT/api/v1/products/7"
    for _ in $(seq 1 50); do # warm the cache (and the connection pools)
        curl -fsS -o /dev/null "http://127.0.0.1:$GW_PORT/api/v1/products/7"
    done
    product_rps=()
    healthz_rps=()
    product_p99=()
    healthz_p99=()
    for round in $(seq 1 "$ROUNDS"); do
        out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            "http://127.0.0.1:$GW_PORT/api/v1/products/7")
        product_rps+=("$(rps <<<"$out")")
        product_p99+=("$(p99_ms <<<"$out")")
        out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
            "http://127.0.0.1:$GW_PORT/healthz")
        healthz_rps+=("$(rps <<<"$out")")
        healthz_p99+=("$(p99_ms <<<"$out")")
        echo "round $round: products/7 ${product_rps[-1]} req/s, healthz ${healthz_rps[-1]} req/s" >&2
    done
    p_med=$(printf '%s\n' "${product_rps[@]}" | median)
    h_med=$(printf '%s\n' "${healthz_rps[@]}" | median)
    p_p99=$(printf '%s\n' "${product_p99[@]}" | median)
    h_p99=$(printf '%s\n' "${healthz_p99[@]}" | median)
    cat_ratio=$(ratio "$p_med" "$h_med")
    TABLE+=("$(printf '%-44s %12s %12s %7s %7s' "cached GET /products/7 via gateway (req/s)" "$p_med" "$h_med" "$cat_ratio" "0.7")")
    TABLE+=("$(printf '%-44s %12s %12s' "  p99 latency (ms)" "$p_p99" "$h_p99")")
    JSON_PARTS+=("\"catalog_rps\": $p_med, \"healthz_rps\": $h_med, \"catalog_p99_ms\": $p_p99, \"healthz_p99_ms\": $h_p99, \"catalog_vs_healthz_ratio\": $cat_ratio")
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
fi

# ---------------------------------------------------------------- (b) checkouts on PostgreSQL
if [[ $PARTS == *checkout* ]]; then
    psql_admin -c "CREATE DATABASE $DB" >/dev/null
    DB_CREATED=1
    STRATA_AUTH_JWT_SECRET=$JWT_SECRET STRATA_AUTH_KEY_ID=$JWT_KID "$STRATA" serve api \
        --database-url "$PG_URL/$DB" --listen "127.0.0.1:$API_PORT" --cache memory \
        --bus memory --log-level warn >"$WORK/api.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$API_PORT/readyz" || { tail -20 "$WORK/api.log" >&2; exit 1; }

    # Users, carts, stock: straight into the database the api migrated.
    seed_buyers psql_bench "$BENCH_USERS"

    # One JWT per user, in user id order (HS256, the api's secret and key id).
    mint_tokens psql_bench "$JWT_SECRET" "$JWT_KID" "$WORK/tokens.txt"
    TOKENS=$(wc -l <"$WORK/tokens.txt")
    # A token works (and the cart a checkout needs is there).
    refill_carts psql_bench
    probe=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(tail -1 "$WORK/tokens.txt")" \
        "http://127.0.0.1:$API_PORT/api/v1/cart")
    [[ $probe == 200 ]] || { echo "token probe answered $probe" >&2; exit 1; }

    # wrk: every request is the next user's checkout, with a fresh key; count the 201s.
    cat >"$WORK/checkout.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  run = args[2]
  i = 0
  created = 0
  other = 0
end
function request()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("POST", "/api/v1/orders", {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Idempotency-Key"] = "wrk-" .. run .. "-" .. i,
  }, nil)
end
function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); o = o + t:get("other") end
  io.write(string.format("created %d other %d\n", c, o))
end
LUA

    # pgbench: the checkout transaction's statements (bench/lib/checkout.sql), each client
    # taking the next user of its own slice: user = first + client_id + clients × (n − 1).

    strata_tps=()
    pgbench_tps=()
    strata_other=()
    for round in $(seq 1 "$ROUNDS"); do
        refill_carts psql_bench
        out=$(wrk -t1 -c"$CHECKOUT_CONCURRENCY" -d"${DURATION}s" -s "$WORK/checkout.lua" \
            "http://127.0.0.1:$API_PORT" -- "$WORK/tokens.txt" "$round")
        created=$(awk '/^created/ {print $2}' <<<"$out")
        other=$(awk '/^created/ {print $4}' <<<"$out")
        if ((created + other >= TOKENS)); then
            echo "warning: wrk went through every user; raise BENCH_USERS" >&2
        fi
        strata_tps+=("$(awk -v c="$created" -v d="$DURATION" 'BEGIN {printf "%.1f", c/d}')")
        strata_other+=("$other")
        refill_carts psql_bench
        out=$(pgbench -n -M prepared -c "$CHECKOUT_CONCURRENCY" -j 2 -T "$DURATION" \
            -f "$ROOT/bench/lib/checkout.sql" -D n=0 -D first="$FIRST_UID" \
            -D clients="$CHECKOUT_CONCURRENCY" -D run="$round" \
            -D fingerprint='{"coupon":null,"region":null}' \
            -D placed='{"order_id":1000000,"user_id":1000000,"total_cents":123456,"lines":[{"product_id":17,"quantity":2}],"placed_at":"2026-11-23T10:00:00.000000Z"}' "$PG_URL/$DB" 2>&1) || {
            echo "$out" >&2
            exit 1
        }
        failed=$(awk '/number of failed transactions/ {print $5}' <<<"$out")
        pgbench_tps+=("$(awk '/^tps = / {printf "%.1f", $3}' <<<"$out")")
        echo "round $round: strata ${strata_tps[-1]} checkouts/s (${other} not 201), pgbench ${pgbench_tps[-1]} tx/s (${failed:-0} failed)" >&2
    done
    s_med=$(printf '%s\n' "${strata_tps[@]}" | median)
    g_med=$(printf '%s\n' "${pgbench_tps[@]}" | median)
    o_max=$(printf '%s\n' "${strata_other[@]}" | sort -g | tail -1)
    co_ratio=$(ratio "$s_med" "$g_med")
    TABLE+=("$(printf '%-44s %12s %12s %7s %7s' "checkouts/s on PostgreSQL vs pgbench" "$s_med" "$g_med" "$co_ratio" "0.7")")
    JSON_PARTS+=("\"checkout_tps\": $s_med, \"pgbench_tps\": $g_med, \"checkout_non_201_max\": ${o_max:-0}, \"checkout_concurrency\": $CHECKOUT_CONCURRENCY, \"checkout_vs_pgbench_ratio\": $co_ratio")
fi

printf '%-44s %12s %12s %7s %7s\n' "what" "strata" "reference" "ratio" "target"
printf '%s\n' "${TABLE[@]}"
joined=$(printf '%s, ' "${JSON_PARTS[@]}")
echo "{${joined%, }, \"rounds\": $ROUNDS, \"duration_s\": $DURATION}"
