#!/usr/bin/env bash
# Local carts (`carts.mode = "local"`): how long one `strata serve api` takes to serve again
# after kill -9 while holding CARTS carts (default 1,000,000).
#
#   bench/carts-recovery.sh                 # release build, 1M carts
#   CARTS=100000 bench/carts-recovery.sh
#
# Steps: a fresh data directory; the api starts with `carts.preload = CARTS` (the carts are
# made and written as its first snapshot; not measured), CHANGES cart changes are made over
# HTTP and acknowledged (they go to the log after the snapshot), the process is killed with
# SIGKILL, and started again. Measured: from the restart's spawn to the first 200 of `/readyz`
# (polled every 5 ms): the process's start, the store's connection, loading the snapshot and
# replaying the log. Then every acknowledged change is checked to be there.
#
# Knobs (environment): CARTS (1000000), CHANGES (90, at most 99: one line), PORT (18480), SKIP_BUILD (0),
# PROFILE (release).
#
# The last line of output is one JSON object.
set -euo pipefail

CARTS=${CARTS:-1000000}
CHANGES=${CHANGES:-90}
PORT=${PORT:-18480}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-release}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/$PROFILE/strata"
if [[ $SKIP_BUILD != 1 ]]; then
    if [[ $PROFILE == release ]]; then
        (cd "$ROOT" && cargo build --release -q -p strata)
    else
        (cd "$ROOT" && cargo build -q -p strata)
    fi
fi

DATA=$(mktemp -d -t strata-carts-bench.XXXXXX)
API_PID=
cleanup() {
    [[ -n $API_PID ]] && kill -9 "$API_PID" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

BASE="http://127.0.0.1:$PORT"
start_api() {
    env -u STRATA_LOG_FORMAT STRATA_AUTH_JWT_SECRET=carts-bench-secret-0123456789abcdef \
        STRATA_STORE_DATA_DIR="$DATA" STRATA_CARTS_MODE=local STRATA_CARTS_PRELOAD="$CARTS" \
        STRATA_LOG_FORMAT=json \
        "$BIN" serve api --listen "127.0.0.1:$PORT" --instance api-carts \
        >>"$DATA/api.log" 2>&1 &
    API_PID=$!
}
now_ms() { date +%s%3N; }
wait_ready() {
    local deadline=$(( $(now_ms) + ${1:-600000} ))
    until curl -sf -o /dev/null "$BASE/readyz"; do
        if (( $(now_ms) > deadline )); then
            echo "not ready in time; log:" >&2
            tail -20 "$DATA/api.log" >&2
            exit 1
        fi
        sleep 0.005
    done
}

echo "preloading $CARTS carts ..." >&2
start_api
wait_ready
jar="$DATA/cookies"
expected=0
for _ in $(seq 1 "$CHANGES"); do
    curl -sf -o /dev/null -b "$jar" -c "$jar" -H 'content-type: application/json' \
        -d '{"product_id": 1, "quantity": 1}' "$BASE/api/v1/cart/items"
    expected=$(( expected + 1 ))
    if (( expected == 99 )); then
        # A line holds at most 99 units: start the next product's line.
        break
    fi
done
acked=$expected

kill -9 "$API_PID"
wait "$API_PID" 2>/dev/null || true
snapshot_bytes=$(stat -c %s "$DATA/carts/api-carts/snapshot")
log_bytes=$(cat "$DATA"/carts/api-carts/log.* 2>/dev/null | wc -c)

t0=$(now_ms)
start_api
wait_ready
t1=$(now_ms)
ready_ms=$(( t1 - t0 ))

got=$(curl -sf -b "$jar" "$BASE/api/v1/cart" | python3 -c \
    'import json,sys; c=json.load(sys.stdin); print(sum(l["quantity"] for l in c["items"] if l["product_id"]==1))')
load_ms=$(grep '"local carts loaded"' "$DATA/api.log" | tail -1 | python3 -c \
    'import json,sys; print(json.loads(sys.stdin.readline())["load_ms"])' 2>/dev/null || echo null)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$API_PID/status")
intact=false
[[ $got == "$acked" ]] && intact=true
echo "{\"bench\":\"carts-recovery\",\"build\":\"$PROFILE\",\"carts\":$CARTS,\"acknowledged_changes\":$acked,\"changes_after_restart\":$got,\"intact\":$intact,\"snapshot_bytes\":$snapshot_bytes,\"log_bytes\":$log_bytes,\"load_ms\":$load_ms,\"ready_ms\":$ready_ms,\"rss_kb\":$rss_kb}"
