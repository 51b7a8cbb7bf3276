#!/usr/bin/env bash
# strata's load generator against wrk, in one run, on the same target: `/healthz` of an api
# instance through the gateway of `strata up` (release build), as ratios (the machine is noisy).
#
#  (a) saturation: `wrk -t1 -cC` and `strata bench --threads 1 -c C` (closed loop), the same
#      connections and duration, interleaved, ROUNDS rounds; the figure is the median of the
#      rounds' ratios (strata bench's req/s over wrk's in the same round). Target: at least 1.
#      On a shared machine the server's rate drifts by tens of percent within a minute; the
#      two runs of one round see the same drift, so their ratio cancels it where a ratio of
#      the two medians (reported too) mixes rounds that saw different machines.
#      Each client's CPU time (user + system, /usr/bin/time) per request is measured too: on a
#      busy machine the rates swing from round to round, the cost per request much less.
#  (b) a set rate: `strata bench --rate R` with R = RATE_SHARE (0.5) of wrk's median, once;
#      the figure is the achieved rate over R. Target: within 1 %.
#
#   bench/loadgen-vs-wrk.sh                 # 3 rounds of 5 s, 32 connections
#   ROUNDS=5 CONNECTIONS=64 bench/loadgen-vs-wrk.sh
#
# Knobs (environment): ROUNDS (3), DURATION (5, seconds per run), CONNECTIONS (32),
# RATE_SHARE (0.5), BASE_PORT (18600), SKIP_BUILD (0).
#
# Both clients run on one thread and share the machine's cores with the gateway and the api
# instance they measure, so a client's own CPU cost shows in the rate it reaches: the cheaper
# client leaves more CPU to the server. Both keep every connection alive and send one request
# at a time on each.
#
# The last line of output is one JSON object with the medians and the ratios.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
RATE_SHARE=${RATE_SHARE:-0.5}
BASE_PORT=${BASE_PORT:-18600}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/release/strata
GW_PORT=$BASE_PORT
GW_ADMIN_PORT=$((BASE_PORT + 1))
URL=http://127.0.0.1:$GW_PORT/healthz

WORK=$(mktemp -d /tmp/strata-bench-loadgen.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[loadgen] $*" >&2; }

need wrk wrk
need curl curl
need python3 python3
need /usr/bin/time time

for port in $GW_PORT $GW_ADMIN_PORT; do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release strata"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p strata --bin strata)
fi

# One api instance behind the gateway; the gateway keeps the instances' operational
# endpoints off its public listener by default: let /healthz through here.
mkdir -p "$WORK/up"
STRATA_GATEWAY_API_INTERNAL_PATHS=/metrics,/readyz \
    STRATA_API_LISTEN=127.0.0.1:0 STRATA_CHAT_LISTEN=127.0.0.1:0 STRATA_WORKER_LISTEN=127.0.0.1:0 \
    "$STRATA" up --api 1 --chat 1 --port "$GW_PORT" --admin-port "$GW_ADMIN_PORT" \
    --data-dir "$WORK/up" --log-level warn >"$WORK/up.log" 2>&1 &
PIDS+=($!)
wait_ready "$URL" || {
    cat "$WORK/up.log" >&2
    exit 1
}

# Requests/s of a wrk report on stdin.
wrk_rps() { awk '/^Requests\/sec:/ {print $2}'; }
# Field PATH (dotted) of the JSON object on stdin.
json_field() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"; }

# CPU seconds (user + system) that /usr/bin/time wrote to FILE.
cpu_secs() { awk '{ print $1 + $2 }' "$1"; }
run_wrk() { # run_wrk SECONDS -> req/s on stdout; CPU seconds in $WORK/wrk.cpu
    local out
    out=$(timeout $(($1 + 30)) /usr/bin/time -f '%U %S' -o "$WORK/wrk.time" \
        wrk -t1 -c"$CONNECTIONS" -d"${1}s" --latency "$URL")
    cpu_secs "$WORK/wrk.time" >"$WORK/wrk.cpu"
    wrk_rps <<<"$out"
}
run_strata() { # run_strata SECONDS -> the JSON report on stdout; CPU seconds in $WORK/strata.cpu
    timeout $(($1 + 30)) /usr/bin/time -f '%U %S' -o "$WORK/strata.time" \
        "$STRATA" --log-level warn bench --threads 1 -c "$CONNECTIONS" -d "$1" --json --url "$URL"
    cpu_secs "$WORK/strata.time" >"$WORK/strata.cpu"
}
# Microseconds of CPU per request: cpu_us SECONDS_FILE RPS DURATION.
cpu_us() { awk -v c="$(cat "$1")" -v r="$2" -v d="$3" 'BEGIN { if (r > 0) printf "%.2f", c * 1e6 / (r * d); else print 0 }'; }

log "warming up"
run_wrk 1 >/dev/null
run_strata 1 >/dev/null

WRK=()
STRATA_RPS=()
WRK_CPU=()
STRATA_CPU=()
RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
    # Alternate which client goes first, so neither always follows the other.
    if ((round % 2)); then
        w=$(run_wrk "$DURATION")
        s=$(run_strata "$DURATION" | json_field req_per_sec)
    else
        s=$(run_strata "$DURATION" | json_field req_per_sec)
        w=$(run_wrk "$DURATION")
    fi
    WRK+=("$w")
    STRATA_RPS+=("$s")
    WRK_CPU+=("$(cpu_us "$WORK/wrk.cpu" "$w" "$DURATION")")
    STRATA_CPU+=("$(cpu_us "$WORK/strata.cpu" "$s" "$DURATION")")
    RATIOS+=("$(ratio "$s" "$w")")
    log "$(printf 'round %d: wrk %.0f req/s (%s us CPU/request), strata bench %.0f req/s (%s us), ratio %s' \
        "$round" "$w" "${WRK_CPU[-1]}" "$s" "${STRATA_CPU[-1]}" "${RATIOS[-1]}")"
done
wrk_med=$(printf '%s\n' "${WRK[@]}" | median)
strata_med=$(printf '%s\n' "${STRATA_RPS[@]}" | median)
saturation_ratio=$(printf '%s\n' "${RATIOS[@]}" | median)
medians_ratio=$(ratio "$strata_med" "$wrk_med")
rounds_min=$(printf '%s\n' "${RATIOS[@]}" | sort -g | head -1)
rounds_max=$(printf '%s\n' "${RATIOS[@]}" | sort -g | tail -1)
wrk_cpu_med=$(printf '%s\n' "${WRK_CPU[@]}" | median)
strata_cpu_med=$(printf '%s\n' "${STRATA_CPU[@]}" | median)

rate=$(awk -v w="$wrk_med" -v s="$RATE_SHARE" 'BEGIN { printf "%d", w * s }')
log "open loop at $rate/s for ${DURATION}s"
report=$(timeout $((DURATION + 30)) "$STRATA" --log-level warn bench --threads 1 -c "$CONNECTIONS" \
    -d "$DURATION" --rate "$rate" --json --url "$URL")
achieved=$(json_field rate.achieved <<<"$report")
late=$(json_field rate.late <<<"$report")
open_p99=$(json_field latency_ms.p99 <<<"$report")
rate_ratio=$(ratio "$achieved" "$rate")

printf '\n%-28s %12s\n' "" "req/s"
printf '%-28s %12.0f\n' "wrk -t1 (median)" "$wrk_med"
printf '%-28s %12.0f\n' "strata bench --threads 1" "$strata_med"
printf '%-28s %12s\n' "ratio (median of rounds)" "$saturation_ratio"
printf '%-28s %12s\n' "rounds' ratios" "$rounds_min-$rounds_max"
printf '%-28s %12s\n' "ratio of the medians" "$medians_ratio"
printf '%-28s %12s\n' "wrk CPU us/request" "$wrk_cpu_med"
printf '%-28s %12s\n' "strata CPU us/request" "$strata_cpu_med"
printf '%-28s %12s\n' "open loop: set rate" "$rate"
printf '%-28s %12.1f\n' "open loop: achieved" "$achieved"
printf '%-28s %12s\n' "achieved / set" "$rate_ratio"
echo
echo "{\"rounds\":$ROUNDS,\"duration_s\":$DURATION,\"connections\":$CONNECTIONS,\"wrk_rps\":$(printf '%.0f' "$wrk_med"),\"strata_bench_rps\":$(printf '%.0f' "$strata_med"),\"strata_bench_vs_wrk\":$saturation_ratio,\"rounds_ratio_min\":$rounds_min,\"rounds_ratio_max\":$rounds_max,\"medians_ratio\":$medians_ratio,\"wrk_cpu_us_per_request\":$wrk_cpu_med,\"strata_bench_cpu_us_per_request\":$strata_cpu_med,\"set_rate\":$rate,\"achieved_rate\":$achieved,\"achieved_vs_set\":$rate_ratio,\"open_loop_late\":$late,\"open_loop_p99_ms\":$open_p99}"
