#!/usr/bin/env bash
# strata's load generator against wrk, in one run, on the same target: `/healthz` of an api
# instance through the gateway of `strata up` (release build), as ratios (the machine is noisy).
#
#  (a) saturation: `wrk -t1 -cC` and `strata bench --threads 1 -c C` (closed loop), the same
#      connections and duration, ROUNDS rounds. Each round runs them twice:
#      - together: both at once against the saturated server, each with its C connections; the
#        ratio of their rates says which one keeps its connections busier. Both see the same
#        server at the same moments, so the machine's drift cancels and the rounds agree within
#        about 1 %. Which client starts first alternates (the one started first has the server
#        to itself for a few milliseconds, the other at the end). The figure: the geometric
#        mean of these ratios with its 95 % interval. Target: at least 1.
#      - one after the other (which goes first alternates): each client's own rate and CPU time
#        (user + system, /usr/bin/time) per request. On a shared machine the server's rate
#        drifts by tens of percent within a minute, so these ratios swing by ±10 %; their median,
#        the ratio of the medians and their geometric mean are reported too.
#  (b) a set rate: `strata bench --rate R` with R = RATE_SHARE (0.5) of wrk's median, once;
#      the figure is the achieved rate over R. Target: within 1 %.
#
#   bench/loadgen-vs-wrk.sh                 # 3 rounds of 5 s, 32 connections
#   ROUNDS=20 CONNECTIONS=64 bench/loadgen-vs-wrk.sh
#
# Knobs (environment): ROUNDS (3), DURATION (5, seconds per run), CONNECTIONS (32),
# RATE_SHARE (0.5), PIN (1), BASE_PORT (18600), SKIP_BUILD (0).
#
# Where the clients run (PIN):
#  - PIN=1 (the default): the stack is pinned to CPU 0 and the clients to CPU 1 (`taskset`), so
#    the server's capacity does not depend on the CPU a client takes from it: the server is
#    saturated and the figures say whether the client keeps it so as well as wrk does.
#  - PIN=0: the clients share the machine's cores with the gateway and the api instance they
#    measure, so a client's own CPU cost shows in the rate it reaches: the cheaper client
#    leaves more CPU to the server (and the rates swing with everything else on the machine).
# Both keep every connection alive and send one request at a time on each, the same request
# (wrk is given strata bench's `User-Agent`).
#
# The last line of output is one JSON object with the medians and the ratios.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
RATE_SHARE=${RATE_SHARE:-0.5}
PIN=${PIN:-1}
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

# SERVER and CLIENT prefix the commands that start the stack and the clients.
SERVER=()
CLIENT=()
if [[ $PIN == 1 ]]; then
    need taskset util-linux
    if (($(nproc) < 2)); then
        log "PIN=1 needs two CPUs; this machine has $(nproc): run with PIN=0"
        exit 1
    fi
    SERVER=(taskset -c 0)
    CLIENT=(taskset -c 1)
fi

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
    "${SERVER[@]}" "$STRATA" up --api 1 --chat 1 --port "$GW_PORT" --admin-port "$GW_ADMIN_PORT" \
    --data-dir "$WORK/up" --log-level warn >"$WORK/up.log" 2>&1 &
PIDS+=($!)
STACK_PID=$!
wait_ready "$URL" || {
    cat "$WORK/up.log" >&2
    exit 1
}

# The header strata bench sends, so wrk's requests are the same bytes to the gateway.
USER_AGENT="user-agent: strata-lab/$("$STRATA" --version | awk '{ print $2 }')"

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
# The stack's CPU time (every unit of `strata up` runs in its one process) in clock ticks, and
# the time now; `busy_since MARK` is the share of one CPU the stack used since MARK.
CLK_TCK=$(getconf CLK_TCK)
stack_mark() { echo "$(awk '{ print $14 + $15 }' "/proc/$STACK_PID/stat") $(date +%s.%N)"; }
busy_since() {
    local now
    now=$(stack_mark)
    awk -v a="$1" -v b="$now" -v hz="$CLK_TCK" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.2f", (y[1] - x[1]) / hz / (y[2] - x[2]) }'
}
# The two clients' commands, without their duration.
WRK_CMD=(wrk -t1 -c"$CONNECTIONS" --latency -H "$USER_AGENT")
STRATA_CMD=("$STRATA" --log-level warn bench --threads 1 -c "$CONNECTIONS" --json)
# run_wrk SECONDS -> req/s on stdout; CPU seconds in $WORK/wrk.cpu, the stack's busy share in
# $WORK/wrk.busy.
run_wrk() {
    local out mark
    mark=$(stack_mark)
    out=$(timeout $(($1 + 30)) /usr/bin/time -f '%U %S' -o "$WORK/wrk.time" \
        "${CLIENT[@]}" "${WRK_CMD[@]}" -d"${1}s" "$URL")
    busy_since "$mark" >"$WORK/wrk.busy"
    cpu_secs "$WORK/wrk.time" >"$WORK/wrk.cpu"
    wrk_rps <<<"$out"
}
# run_strata SECONDS -> the JSON report on stdout; CPU seconds in $WORK/strata.cpu, the stack's
# busy share in $WORK/strata.busy.
run_strata() {
    local mark
    mark=$(stack_mark)
    timeout $(($1 + 30)) /usr/bin/time -f '%U %S' -o "$WORK/strata.time" \
        "${CLIENT[@]}" "${STRATA_CMD[@]}" -d "$1" --url "$URL"
    busy_since "$mark" >"$WORK/strata.busy"
    cpu_secs "$WORK/strata.time" >"$WORK/strata.cpu"
}
# run_together SECONDS FIRST -> "WRK_RPS STRATA_RPS" on stdout: both clients at once, FIRST
# (wrk or strata) started first; the stack's busy share in $WORK/together.busy.
together_wrk() {
    timeout $(($1 + 30)) "${CLIENT[@]}" "${WRK_CMD[@]}" -d"${1}s" "$URL" >"$WORK/together.wrk"
}
together_strata() {
    timeout $(($1 + 30)) "${CLIENT[@]}" "${STRATA_CMD[@]}" -d "$1" --url "$URL" >"$WORK/together.strata"
}
run_together() {
    local mark first second pid
    mark=$(stack_mark)
    first=$2
    second=$([[ $first == wrk ]] && echo strata || echo wrk)
    "together_$first" "$1" &
    pid=$!
    "together_$second" "$1"
    wait "$pid"
    busy_since "$mark" >"$WORK/together.busy"
    echo "$(wrk_rps <"$WORK/together.wrk") $(json_field req_per_sec <"$WORK/together.strata")"
}
# Microseconds of CPU per request: cpu_us SECONDS_FILE RPS DURATION.
cpu_us() { awk -v c="$(cat "$1")" -v r="$2" -v d="$3" 'BEGIN { if (r > 0) printf "%.2f", c * 1e6 / (r * d); else print 0 }'; }

# geo_ci: the geometric mean of the ratios on stdin (one per line) and its 95 % confidence
# interval (Student's t on the logarithms), as "low high mean".
geo_ci() {
    python3 -c '
import math, sys
logs = [math.log(float(x)) for x in sys.stdin if float(x) > 0]
n = len(logs)
mean = sum(logs) / n
sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1)) if n > 1 else 0.0
# two-sided 95 % quantiles of t for 1..30 degrees of freedom, then the normal one
t = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
     2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
     2.05, 2.04]
q = t[n - 2] if 2 <= n <= 31 else 1.96
half = q * sd / math.sqrt(n) if n > 1 else 0.0
print("%.3f %.3f %.3f" % (math.exp(mean - half), math.exp(mean + half), math.exp(mean)))'
}

log "warming up"
run_wrk 1 >/dev/null
run_strata 1 >/dev/null

WRK=()
STRATA_RPS=()
WRK_CPU=()
STRATA_CPU=()
WRK_BUSY=()
STRATA_BUSY=()
RATIOS=()
TOGETHER=()
TOGETHER_BUSY=()
for round in $(seq 1 "$ROUNDS"); do
    # Alternate which client goes first, so neither always follows the other.
    if ((round % 2)); then first=wrk; else first=strata; fi
    together=$(run_together "$DURATION" "$first")
    read -r tw ts <<<"$together"
    if [[ $first == wrk ]]; then
        w=$(run_wrk "$DURATION")
        s=$(run_strata "$DURATION" | json_field req_per_sec)
    else
        s=$(run_strata "$DURATION" | json_field req_per_sec)
        w=$(run_wrk "$DURATION")
    fi
    TOGETHER+=("$(ratio "$ts" "$tw")")
    TOGETHER_BUSY+=("$(cat "$WORK/together.busy")")
    WRK+=("$w")
    STRATA_RPS+=("$s")
    WRK_CPU+=("$(cpu_us "$WORK/wrk.cpu" "$w" "$DURATION")")
    STRATA_CPU+=("$(cpu_us "$WORK/strata.cpu" "$s" "$DURATION")")
    WRK_BUSY+=("$(cat "$WORK/wrk.busy")")
    STRATA_BUSY+=("$(cat "$WORK/strata.busy")")
    RATIOS+=("$(ratio "$s" "$w")")
    log "$(printf 'round %d: together wrk %.0f, strata bench %.0f req/s, ratio %s (stack %s CPUs busy); alone wrk %.0f req/s (%s us CPU/request, stack %s), strata bench %.0f req/s (%s us, %s), ratio %s' \
        "$round" "$tw" "$ts" "${TOGETHER[-1]}" "${TOGETHER_BUSY[-1]}" "$w" "${WRK_CPU[-1]}" "${WRK_BUSY[-1]}" "$s" "${STRATA_CPU[-1]}" "${STRATA_BUSY[-1]}" "${RATIOS[-1]}")"
done
wrk_med=$(printf '%s\n' "${WRK[@]}" | median)
strata_med=$(printf '%s\n' "${STRATA_RPS[@]}" | median)
saturation_ratio=$(printf '%s\n' "${RATIOS[@]}" | median)
medians_ratio=$(ratio "$strata_med" "$wrk_med")
rounds_min=$(printf '%s\n' "${RATIOS[@]}" | sort -g | head -1)
rounds_max=$(printf '%s\n' "${RATIOS[@]}" | sort -g | tail -1)
read -r ci_low ci_high geo_mean < <(printf '%s\n' "${RATIOS[@]}" | geo_ci)
read -r together_low together_high together_geo < <(printf '%s\n' "${TOGETHER[@]}" | geo_ci)
together_min=$(printf '%s\n' "${TOGETHER[@]}" | sort -g | head -1)
together_max=$(printf '%s\n' "${TOGETHER[@]}" | sort -g | tail -1)
together_busy_med=$(printf '%s\n' "${TOGETHER_BUSY[@]}" | median)
wrk_cpu_med=$(printf '%s\n' "${WRK_CPU[@]}" | median)
strata_cpu_med=$(printf '%s\n' "${STRATA_CPU[@]}" | median)
wrk_busy_med=$(printf '%s\n' "${WRK_BUSY[@]}" | median)
strata_busy_med=$(printf '%s\n' "${STRATA_BUSY[@]}" | median)

rate=$(awk -v w="$wrk_med" -v s="$RATE_SHARE" 'BEGIN { printf "%d", w * s }')
log "open loop at $rate/s for ${DURATION}s"
report=$(timeout $((DURATION + 30)) "${CLIENT[@]}" "${STRATA_CMD[@]}" -d "$DURATION" --rate "$rate" \
    --url "$URL")
achieved=$(json_field rate.achieved <<<"$report")
late=$(json_field rate.late <<<"$report")
open_p99=$(json_field latency_ms.p99 <<<"$report")
rate_ratio=$(ratio "$achieved" "$rate")

printf '\n%-28s %12s\n' "together" ""
printf '%-28s %12s\n' "geometric mean of ratios" "$together_geo"
printf '%-28s %12s\n' "its 95 % interval" "$together_low-$together_high"
printf '%-28s %12s\n' "rounds' ratios" "$together_min-$together_max"
printf '%-28s %12s\n' "stack CPUs busy" "$together_busy_med"
printf '\n%-28s %12s\n' "one after the other" "req/s"
printf '%-28s %12.0f\n' "wrk -t1 (median)" "$wrk_med"
printf '%-28s %12.0f\n' "strata bench --threads 1" "$strata_med"
printf '%-28s %12s\n' "ratio (median of rounds)" "$saturation_ratio"
printf '%-28s %12s\n' "rounds' ratios" "$rounds_min-$rounds_max"
printf '%-28s %12s\n' "ratio of the medians" "$medians_ratio"
printf '%-28s %12s\n' "geometric mean of ratios" "$geo_mean"
printf '%-28s %12s\n' "its 95 % interval" "$ci_low-$ci_high"
printf '%-28s %12s\n' "wrk CPU us/request" "$wrk_cpu_med"
printf '%-28s %12s\n' "strata CPU us/request" "$strata_cpu_med"
printf '%-28s %12s\n' "stack CPUs busy, wrk" "$wrk_busy_med"
printf '%-28s %12s\n' "stack CPUs busy, strata" "$strata_busy_med"
printf '%-28s %12s\n' "open loop: set rate" "$rate"
printf '%-28s %12.1f\n' "open loop: achieved" "$achieved"
printf '%-28s %12s\n' "achieved / set" "$rate_ratio"
echo
echo "{\"pinned\":$PIN,\"rounds\":$ROUNDS,\"duration_s\":$DURATION,\"connections\":$CONNECTIONS,\"together_ratio\":$together_geo,\"together_ci95_low\":$together_low,\"together_ci95_high\":$together_high,\"together_rounds_min\":$together_min,\"together_rounds_max\":$together_max,\"stack_busy_together\":$together_busy_med,\"wrk_rps\":$(printf '%.0f' "$wrk_med"),\"strata_bench_rps\":$(printf '%.0f' "$strata_med"),\"strata_bench_vs_wrk\":$saturation_ratio,\"rounds_ratio_min\":$rounds_min,\"rounds_ratio_max\":$rounds_max,\"medians_ratio\":$medians_ratio,\"geo_mean_ratio\":$geo_mean,\"ratio_ci95_low\":$ci_low,\"ratio_ci95_high\":$ci_high,\"wrk_cpu_us_per_request\":$wrk_cpu_med,\"strata_bench_cpu_us_per_request\":$strata_cpu_med,\"stack_busy_wrk\":$wrk_busy_med,\"stack_busy_strata_bench\":$strata_busy_med,\"set_rate\":$rate,\"achieved_rate\":$achieved,\"achieved_vs_set\":$rate_ratio,\"open_loop_late\":$late,\"open_loop_p99_ms\":$open_p99}"
