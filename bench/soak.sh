#!/usr/bin/env bash
# Soak: the shop mix and chat through `strata serve` roles on PostgreSQL, Redis and NATS
# JetStream for SOAK_MINUTES (30) at half of the measured capacity, sampling every process's
# resident memory, open file descriptors and TCP connections every 10 s. Fails when any of
# them grows by more than 10 % between minute 5 and the end in one of strata's processes
# (Redis's and NATS's are shown too: JetStream's grows with the events and messages its
# streams are kept to hold), or when any request fails.
#
#   bench/soak.sh                   # 30 minutes
#   SOAK_MINUTES=8 bench/soak.sh    # a shorter run (the comparison is then minute 5 → 8)
#
# Knobs (environment): SOAK_MINUTES (30), CAPACITY_SECONDS (20: the closed-loop run that
# measures capacity), CONNECTIONS (32), USERS (200, shop customers), CHAT_RATE (50 messages/s),
# CHAT_ROOMS (20), BASE_PORT (18600), PG_URL (postgres://postgres@127.0.0.1:5432), PG_ADMIN_DB
# (test), SKIP_BUILD (0), KEEP (0: keep the work directory with the samples).
#
# Setup: a fresh PostgreSQL database, a Redis server and a NATS server with JetStream of the
# soak's own (on BASE_PORT + 6 and + 7), then `strata serve`: gateway, api × 2, chat × 2 and
# worker × 1, every setting at its default. Capacity is the shop mix's closed-loop rate through
# the gateway at CONNECTIONS connections; the soak then runs it open loop at half that rate,
# beside CHAT_RATE chat messages/s over CHAT_ROOMS rooms, both through the gateway.
#
# The samples are written to the work directory (samples.csv: time, process, rss_kib, fds,
# tcp). Growth compares the mean of the samples of minute 5 (4:30 to 5:30) with the mean of
# the last minute's, per process and figure. The last line of output is one JSON object.
set -euo pipefail

SOAK_MINUTES=${SOAK_MINUTES:-30}
CAPACITY_SECONDS=${CAPACITY_SECONDS:-20}
CONNECTIONS=${CONNECTIONS:-32}
USERS=${USERS:-200}
CHAT_RATE=${CHAT_RATE:-50}
CHAT_ROOMS=${CHAT_ROOMS:-20}
BASE_PORT=${BASE_PORT:-18600}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_ADMIN_DB=${PG_ADMIN_DB:-test}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
SAMPLE_EVERY=10
MAX_GROWTH=0.10

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/release/strata
GW_PORT=$BASE_PORT
GW_ADMIN_PORT=$((BASE_PORT + 1))
API_PORTS=($((BASE_PORT + 2)) $((BASE_PORT + 3)))
CHAT_PORTS=($((BASE_PORT + 4)) $((BASE_PORT + 5)))
REDIS_PORT=$((BASE_PORT + 6))
NATS_PORT=$((BASE_PORT + 7))
WORKER_PORT=$((BASE_PORT + 8))
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

WORK=$(mktemp -d /tmp/strata-soak.XXXXXX)
DB=strata_soak_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
declare -A ROLE_PIDS
DB_CREATED=0

log() { echo "[soak] $(date +%H:%M:%S) $*" >&2; }
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$PG_ADMIN_DB" "$@"; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $DB_CREATED == 1 ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ $KEEP == 1 ]]; then
        log "samples kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need curl curl
need psql postgresql-client
need redis-server redis-server
command -v nats-server >/dev/null || need nats-server nats-server

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release strata"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p strata --bin strata)
fi

for port in $GW_PORT $GW_ADMIN_PORT "${API_PORTS[@]}" "${CHAT_PORTS[@]}" $REDIS_PORT $NATS_PORT \
    $WORKER_PORT; do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

# --- the data tier, the soak's own ----------------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
ROLE_PIDS[redis]=$!
mkdir -p "$WORK/jetstream"
nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/jetstream" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
ROLE_PIDS[nats]=$!
psql_admin -c "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1

# --- strata, every role its own process -----------------------------------------------------
export STRATA_AUTH_JWT_SECRET=$JWT_SECRET
export STRATA_STORE_DATABASE_URL=$PG_URL/$DB
export STRATA_CACHE_URL=redis://127.0.0.1:$REDIS_PORT
export STRATA_BUS_URL=nats://127.0.0.1:$NATS_PORT
export STRATA_LOG_LEVEL=warn
# An admin, whose token the chat load uses (agents' lobbies admit support and admin users).
ADMIN_EMAIL=soak-admin@example.com
ADMIN_PASSWORD=soak-admin-password
serve() { # serve NAME ROLE ARGS...
    local name=$1
    shift
    "$STRATA" serve "$@" --instance "$name" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    ROLE_PIDS[$name]=$!
}
for i in 0 1; do
    STRATA_ADMIN_EMAIL=$ADMIN_EMAIL STRATA_ADMIN_PASSWORD=$ADMIN_PASSWORD \
        serve "api-$i" api --listen "127.0.0.1:${API_PORTS[$i]}"
    wait_ready "http://127.0.0.1:${API_PORTS[$i]}/readyz" || { tail -20 "$WORK/api-$i.log" >&2; exit 1; }
done
for i in 0 1; do
    serve "chat-$i" chat --listen "127.0.0.1:${CHAT_PORTS[$i]}"
    wait_ready "http://127.0.0.1:${CHAT_PORTS[$i]}/readyz" || { tail -20 "$WORK/chat-$i.log" >&2; exit 1; }
done
# The demo catalog holds a few units per product, which a long run would sell out (and every
# later checkout be refused): stock far above what the soak can sell.
psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/$DB" -c "UPDATE products SET stock = 1000000000" >/dev/null
serve worker-0 worker --listen "127.0.0.1:$WORKER_PORT"
wait_ready "http://127.0.0.1:$WORKER_PORT/readyz" || { tail -20 "$WORK/worker-0.log" >&2; exit 1; }
STRATA_GATEWAY_LISTEN=127.0.0.1:$GW_PORT STRATA_GATEWAY_ADMIN_LISTEN=127.0.0.1:$GW_ADMIN_PORT \
    STRATA_GATEWAY_UPSTREAM="api=http://127.0.0.1:${API_PORTS[0]},http://127.0.0.1:${API_PORTS[1]};chat=http://127.0.0.1:${CHAT_PORTS[0]},http://127.0.0.1:${CHAT_PORTS[1]}" \
    serve gateway gateway
wait_ready "http://127.0.0.1:$GW_PORT/api/v1/products/1" || { tail -20 "$WORK/gateway.log" >&2; exit 1; }
GATEWAY=http://127.0.0.1:$GW_PORT
ADMIN_TOKEN=$(curl -fsS -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "$GATEWAY/api/v1/sessions" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# --- capacity, then the soak ------------------------------------------------------------------
log "measuring capacity: the shop mix, closed loop, $CONNECTIONS connections, ${CAPACITY_SECONDS}s"
"$STRATA" bench --url "$GATEWAY" --scenario shop --users "$USERS" -c "$CONNECTIONS" \
    -d "${CAPACITY_SECONDS}s" --json >"$WORK/capacity.json" 2>"$WORK/capacity.err" || {
    tail -20 "$WORK/capacity.err" >&2
    exit 1
}
CAPACITY=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["req_per_sec"]))' "$WORK/capacity.json")
RATE=$((CAPACITY / 2))
[[ $RATE -ge 1 ]] || { log "capacity $CAPACITY req/s: nothing to soak at"; exit 1; }
log "capacity $CAPACITY req/s: soaking at $RATE req/s and $CHAT_RATE chat messages/s for $SOAK_MINUTES min"

SOAK=${SOAK_MINUTES}m
"$STRATA" bench --url "$GATEWAY" --scenario shop --users "$USERS" -c "$((CONNECTIONS * 4))" \
    --rate "$RATE" -d "$SOAK" --json >"$WORK/shop.json" 2>"$WORK/shop.err" &
SHOP_PID=$!
PIDS+=($SHOP_PID)
STRATA_BENCH_TOKEN=$ADMIN_TOKEN "$STRATA" bench --url "$GATEWAY" --scenario chat \
    --rooms "$CHAT_ROOMS" --listeners 2 --rate "$CHAT_RATE" -d "$SOAK" --json >"$WORK/chat.json" 2>"$WORK/chat.err" &
CHAT_PID=$!
PIDS+=($CHAT_PID)

# --- samples ------------------------------------------------------------------------------------
echo "secs,process,rss_kib,fds,tcp" >"$WORK/samples.csv"
sample() {
    local secs=$1 name pid rss fds tcp
    for name in "${!ROLE_PIDS[@]}"; do
        pid=${ROLE_PIDS[$name]}
        [[ -d /proc/$pid ]] || { log "$name (pid $pid) is gone"; return 1; }
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        tcp=$(ss -Htanp 2>/dev/null | grep -c "pid=$pid," || true)
        echo "$secs,$name,$rss,$fds,$tcp" >>"$WORK/samples.csv"
    done
}
START=$(date +%s)
END=$((START + SOAK_MINUTES * 60))
while [[ $(date +%s) -lt $END ]]; do
    sample "$(($(date +%s) - START))"
    if (($(date +%s) - START >= 60)) && (((($(date +%s) - START) / SAMPLE_EVERY) % 30 == 0)); then
        log "minute $(((($(date +%s) - START)) / 60)) of $SOAK_MINUTES"
    fi
    sleep "$SAMPLE_EVERY"
done
SHOP_RC=0
wait "$SHOP_PID" || SHOP_RC=$?
CHAT_RC=0
wait "$CHAT_PID" || CHAT_RC=$?
sample "$(($(date +%s) - START))"

# --- verdict ------------------------------------------------------------------------------------
python3 - "$WORK" "$SOAK_MINUTES" "$MAX_GROWTH" "$RATE" "$CAPACITY" "$SHOP_RC" "$CHAT_RC" <<'PY'
import csv, json, sys
work, minutes, max_growth, rate, capacity, shop_rc, chat_rc = sys.argv[1:]
minutes, max_growth = int(minutes), float(max_growth)
rows = list(csv.DictReader(open(f"{work}/samples.csv")))
end = max(int(r["secs"]) for r in rows)
def window(name, lo, hi, key):
    values = [int(r[key]) for r in rows if r["process"] == name and lo <= int(r["secs"]) <= hi]
    return sum(values) / len(values) if values else None
processes = sorted({r["process"] for r in rows})
figures, failures = {}, []
for name in processes:
    for key in ("rss_kib", "fds", "tcp"):
        early = window(name, 270, 330, key)
        late = window(name, end - 60, end, key)
        if early is None or late is None:
            failures.append(f"{name} {key}: no samples")
            continue
        growth = (late - early) / early if early else 0.0
        figures[f"{name}_{key}_min5"] = round(early, 1)
        figures[f"{name}_{key}_end"] = round(late, 1)
        # Redis and NATS are measured and shown, not judged: JetStream keeps every event
        # and chat message (strata's streams have no limits; an operator sets them), so
        # its memory grows with the data it is asked to keep, whatever strata does.
        judged = name not in ("redis", "nats")
        if judged and growth > max_growth:
            failures.append(f"{name} {key}: {early:.0f} -> {late:.0f} (+{growth:.1%})")
        note = "" if judged else "  (data service: shown, not judged)"
        print(f"[soak] {name:9} {key:8} minute 5 {early:10.0f}  end {late:10.0f}  {growth:+.1%}{note}", file=sys.stderr)
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}
shop, chat = load(f"{work}/shop.json"), load(f"{work}/chat.json")
def failed(report):
    return report.get("failed", 0) + report.get("non_2xx", 0)
shop_failed, chat_failed = failed(shop), failed(chat)
if shop_rc != "0" or not shop:
    failures.append(f"the shop load exited {shop_rc}")
if chat_rc != "0" or not chat:
    failures.append(f"the chat load exited {chat_rc}")
if shop_failed:
    failures.append(f"{shop_failed} shop requests failed")
if chat_failed:
    failures.append(f"{chat_failed} chat messages failed")
for f in failures:
    print(f"[soak] FAIL {f}", file=sys.stderr)
summary = {
    "minutes": minutes, "capacity_rps": int(capacity), "rate_rps": int(rate),
    "shop_requests": shop.get("requests", 0), "shop_failed": shop_failed,
    "shop_p99_ms": shop.get("latency_ms", {}).get("p99"),
    "chat_messages": chat.get("requests", 0), "chat_failed": chat_failed,
    "passed": 0 if failures else 1,
}
summary.update(figures)
print(json.dumps(summary))
sys.exit(1 if failures else 0)
PY
