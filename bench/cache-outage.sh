#!/usr/bin/env bash
# The api through a Redis outage: throughput and log-in time through the gateway with Redis
# healthy (the reference), frozen (SIGSTOP: connections open, nothing answers) and killed
# (connections refused), then after Redis is back, as ratios of the healthy figure. The cache
# is not the source of truth: while it is out, reads go straight to PostgreSQL (the cache's
# circuit breaker fails fast instead of waiting on Redis for every request).
#
#   bench/cache-outage.sh
#
# Knobs (environment): DURATION (5, seconds per phase: the outage lasts that long),
# CONNECTIONS (32), BASE_PORT (18500), PG_URL (postgres://postgres@127.0.0.1:5432),
# PG_ADMIN_DB (test), SKIP_BUILD (0).
#
# Setup: a fresh PostgreSQL database, a Redis server of the benchmark's own (so freezing it
# touches nothing else), two `strata serve api` on them with the shipped defaults
# (`cache.timeout_ms`, `cache.breaker_*`), and `strata serve gateway` in front. The load is
# wrk (one thread) reading 20 catalog products round robin, the reads the cache serves.
#
# The last line of output is one JSON object with the figures and the ratios.
set -euo pipefail

DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_ADMIN_DB=${PG_ADMIN_DB:-test}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/release/strata
GW_PORT=$BASE_PORT
GW_ADMIN_PORT=$((BASE_PORT + 1))
API1_PORT=$((BASE_PORT + 2))
API2_PORT=$((BASE_PORT + 3))
REDIS_PORT=$((BASE_PORT + 6))
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

WORK=$(mktemp -d /tmp/strata-bench-cache.XXXXXX)
DB=strata_bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
REDIS_PID=
DB_CREATED=0

log() { echo "[bench] $*" >&2; }
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$PG_ADMIN_DB" "$@"; }

cleanup() {
    if [[ -n $REDIS_PID ]]; then
        kill -CONT "$REDIS_PID" 2>/dev/null || true
        kill "$REDIS_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $DB_CREATED == 1 ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need wrk wrk
need curl curl
need psql postgresql-client
need redis-server redis-server

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release strata"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p strata --bin strata)
fi

for port in $GW_PORT $GW_ADMIN_PORT $API1_PORT $API2_PORT $REDIS_PORT; do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "redis did not start"
    return 1
}
start_redis

psql_admin -c "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1
for port in $API1_PORT $API2_PORT; do
    STRATA_AUTH_JWT_SECRET=$JWT_SECRET "$STRATA" serve api --database-url "$PG_URL/$DB" \
        --listen "127.0.0.1:$port" --cache "redis://127.0.0.1:$REDIS_PORT" --bus memory \
        --log-level warn >"$WORK/api-$port.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$port/readyz" || { tail -20 "$WORK/api-$port.log" >&2; exit 1; }
done
STRATA_GATEWAY_LISTEN=127.0.0.1:$GW_PORT STRATA_GATEWAY_ADMIN_LISTEN=127.0.0.1:$GW_ADMIN_PORT \
    STRATA_GATEWAY_UPSTREAM="api=http://127.0.0.1:$API1_PORT,http://127.0.0.1:$API2_PORT" \
    STRATA_LOG_LEVEL=warn "$STRATA" serve gateway >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_ready "http://127.0.0.1:$GW_PORT/api/v1/products/1"

# A customer to log in as (the log-in reads the account through the cache-aside path too).
curl -fsS -o /dev/null -H 'content-type: application/json' \
    -d '{"email":"outage@example.com","password":"outage password","display_name":"Outage"}' \
    "http://127.0.0.1:$GW_PORT/api/v1/users"
login_ms() {
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' -H 'content-type: application/json' \
        -d '{"email":"outage@example.com","password":"outage password"}' \
        "http://127.0.0.1:$GW_PORT/api/v1/sessions" |
        awk '{ if ($1 == 201 || $1 == 200) printf "%.1f", $2 * 1000; else print "failed:" $1 }'
}

cat >"$WORK/products.lua" <<'LUA'
local n = 0
request = function()
  n = n % 20 + 1
  return wrk.format("GET", "/api/v1/products/" .. n)
end
LUA
# phase: "RPS ERRORS P99_MS" of one wrk run of DURATION seconds.
phase() {
    local out
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/products.lua" \
        "http://127.0.0.1:$GW_PORT")
    local rps errors p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v*=1000}; print v}' <<<"$out")
    echo "$rps $errors $p99"
}

# Warm the cache, the connection pools and the gateway's connections to the instances: one
# phase under the full load, not counted (a cold reference once measured half of the rate
# the same servers reached after the outage).
for n in $(seq 1 20); do curl -fsS -o /dev/null "http://127.0.0.1:$GW_PORT/api/v1/products/$n"; done
log "warming up"
phase >/dev/null

log "healthy"
read -r HEALTHY_RPS HEALTHY_ERR HEALTHY_P99 <<<"$(phase)"
HEALTHY_LOGIN=$(login_ms)

log "frozen (SIGSTOP) for ${DURATION}s"
kill -STOP "$REDIS_PID"
FROZEN_LOGIN=$(login_ms)
read -r FROZEN_RPS FROZEN_ERR FROZEN_P99 <<<"$(phase)"
kill -CONT "$REDIS_PID"

log "killed for ${DURATION}s"
kill -KILL "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
KILLED_LOGIN=$(login_ms)
read -r KILLED_RPS KILLED_ERR KILLED_P99 <<<"$(phase)"

log "back"
start_redis
sleep 2 # the breaker's probe closes it within its cooldown
read -r BACK_RPS BACK_ERR BACK_P99 <<<"$(phase)"

log "requests/s: healthy $HEALTHY_RPS (p99 $HEALTHY_P99 ms), frozen $FROZEN_RPS (p99 $FROZEN_P99 ms), killed $KILLED_RPS (p99 $KILLED_P99 ms), back $BACK_RPS (p99 $BACK_P99 ms)"
log "errors: healthy $HEALTHY_ERR, frozen $FROZEN_ERR, killed $KILLED_ERR, back $BACK_ERR"
log "log-in ms: healthy $HEALTHY_LOGIN, frozen $FROZEN_LOGIN, killed $KILLED_LOGIN"

quote() { [[ $1 =~ ^[0-9.]+$ ]] && echo "$1" || echo "\"$1\""; }
printf '{"healthy_rps":%s,"frozen_rps":%s,"killed_rps":%s,"back_rps":%s,"frozen_vs_healthy":%s,"killed_vs_healthy":%s,"back_vs_healthy":%s,"healthy_p99_ms":%s,"frozen_p99_ms":%s,"killed_p99_ms":%s,"errors":%s,"healthy_login_ms":%s,"frozen_login_ms":%s,"killed_login_ms":%s}\n' \
    "$HEALTHY_RPS" "$FROZEN_RPS" "$KILLED_RPS" "$BACK_RPS" \
    "$(ratio "$FROZEN_RPS" "$HEALTHY_RPS")" "$(ratio "$KILLED_RPS" "$HEALTHY_RPS")" \
    "$(ratio "$BACK_RPS" "$HEALTHY_RPS")" "$HEALTHY_P99" "$FROZEN_P99" "$KILLED_P99" \
    "$((HEALTHY_ERR + FROZEN_ERR + KILLED_ERR + BACK_ERR))" \
    "$(quote "$HEALTHY_LOGIN")" "$(quote "$FROZEN_LOGIN")" "$(quote "$KILLED_LOGIN")"
