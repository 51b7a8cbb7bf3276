#!/usr/bin/env bash
# strata's gateway against nginx and HAProxy, each fronting the same two tiny HTTP backends on
# loopback, measured with wrk in one run, interleaved, as ratios (the machine is noisy).
#
#   bench/gateway-vs-peers.sh                 # 1 worker each, 3 rounds of 5 s
#   WORKERS=2 bench/gateway-vs-peers.sh       # 2 worker threads / processes each
#   ACCESS_LOG=1 bench/gateway-vs-peers.sh    # also strata with JSON access logs (every request)
#
# Knobs (environment): WORKERS (1), ROUNDS (3), DURATION (5, seconds per wrk run),
# CONNECTIONS (32), WRK_THREADS (1), ACCESS_LOG (0), PIN (none|split), BASE_PORT (18100),
# SKIP_BUILD (0), PIPELINE_DEPTH (16, strata's default; 1 turns pipelining to the backends off).
#
# strata is the product binary, `strata serve gateway` with `gateway.workers = WORKERS`; the
# backends are `crates/strata-gateway/examples/echo.rs`.
#
# Equivalent configurations: round robin over the two backends, keep-alive to them, the same
# worker count, no access logs (strata at `warn`; ACCESS_LOG=1 adds a run at `info` to price
# them), and the same forwarding headers added (X-Forwarded-For, X-Forwarded-Proto).
#
# Placement (PIN=none, the default, for any WORKERS): nothing is pinned; every target, the
# "direct" ceiling included, runs under the same rule: all processes (wrk, the backends, the
# proxy under test) share the machine's cores as the scheduler sees fit. On this 2-core
# machine that is the only placement that treats every target alike without capping them:
# - a proxy on CPU 0 with wrk and both backends on CPU 1 (PIN=split, the former default)
#   saturates CPU 1, so every proxy measures the same client-side ceiling (strata used 0.43
#   of its core) and "direct" (wrk on CPU 1, the backend alone on CPU 0) is a different
#   layout from the proxied runs;
# - a proxy on CPU 0, wrk on CPU 1 and the backends on either would only move the same
#   contention elsewhere: with 2 cores there is no core to give the backends alone.
# The price of not pinning: with one worker the proxy can use at most one core, while wrk and
# the backends compete with it for both; runs are noisier, hence medians of interleaved rounds.
# Only the other processes running on the machine differ between targets; rerun when the
# figures look disturbed.
#
# The last line of output is one JSON object with the medians and the ratios.
set -euo pipefail

WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
ACCESS_LOG=${ACCESS_LOG:-0}
PIN=${PIN:-none}
BASE_PORT=${BASE_PORT:-18100}
SKIP_BUILD=${SKIP_BUILD:-0}
PIPELINE_DEPTH=${PIPELINE_DEPTH:-16}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/examples
STRATA=$TARGET_DIR/release/strata

BACKEND1=$((BASE_PORT + 1))
BACKEND2=$((BASE_PORT + 2))
STRATA_PORT=$((BASE_PORT + 10))
STRATA_ADMIN=$((BASE_PORT + 11))
STRATA_LOG_PORT=$((BASE_PORT + 12))
STRATA_LOG_ADMIN=$((BASE_PORT + 13))
NGINX_PORT=$((BASE_PORT + 20))
HAPROXY_PORT=$((BASE_PORT + 30))

log() { echo "[bench] $*" >&2; }

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    timeout 300 $SUDO apt-get install -y "${missing[@]}" >&2
fi
PATH=$PATH:/usr/sbin

# --- build ---------------------------------------------------------------------------------
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release strata and the echo backend"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p strata --bin strata &&
        timeout 1200 cargo build --release -q -p strata-gateway --example echo)
fi

# --- pinning -------------------------------------------------------------------------------
NCPU=$(nproc)
if [ "$PIN" = split ] && [ "$WORKERS" -eq 1 ] && [ "$NCPU" -ge 2 ]; then
    PIN_PROXY=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)   # wrk, and the backends behind a proxy
    PIN_DIRECT=(taskset -c 0)   # the backend wrk hits directly
    PIN_DESC="split: proxy cpu0; wrk+backends cpu1; direct backend cpu0"
else
    PIN_PROXY=()
    PIN_CLIENT=()
    PIN_DIRECT=()
    PIN_DESC="none"
fi

# --- processes -----------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
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

for port in $BACKEND1 $BACKEND2 $((BACKEND1 + 50)) $STRATA_PORT $STRATA_ADMIN $STRATA_LOG_PORT \
    $STRATA_LOG_ADMIN $NGINX_PORT $HAPROXY_PORT; do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing answers on port $port"
    return 1
}

start() { # start NAME PIN... -- COMMAND...
    local name=$1
    shift
    local pin=()
    while [ "$1" != -- ]; do
        pin+=("$1")
        shift
    done
    shift
    "${pin[@]}" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
}

# Two backends behind the proxies, and a third one for the direct ceiling (pinned as a proxy).
start backend1 "${PIN_CLIENT[@]}" -- "$BIN/echo" "127.0.0.1:$BACKEND1"
start backend2 "${PIN_CLIENT[@]}" -- "$BIN/echo" "127.0.0.1:$BACKEND2"
DIRECT_PORT=$((BACKEND1 + 50))
start direct "${PIN_DIRECT[@]}" -- "$BIN/echo" "127.0.0.1:$DIRECT_PORT"

UPSTREAM="api=http://127.0.0.1:$BACKEND1,http://127.0.0.1:$BACKEND2"
start_strata() { # start_strata NAME PORT ADMIN_PORT LOG_LEVEL [ACCESS_SAMPLE]
    start "$1" "${PIN_PROXY[@]}" -- env STRATA_GATEWAY_LISTEN="127.0.0.1:$2" \
        STRATA_GATEWAY_ADMIN_LISTEN="127.0.0.1:$3" STRATA_GATEWAY_UPSTREAM="$UPSTREAM" \
        STRATA_GATEWAY_WORKERS="$WORKERS" STRATA_GATEWAY_API_PIPELINE_DEPTH="$PIPELINE_DEPTH" \
        STRATA_LOG_LEVEL="$4" STRATA_LOG_ACCESS_SAMPLE="${5:-0}" "$STRATA" serve gateway
}
start_strata strata "$STRATA_PORT" "$STRATA_ADMIN" warn
if [ "$ACCESS_LOG" = 1 ]; then
    # JSON access lines go to a file, as they would in production (not to a terminal).
    start_strata strata_log "$STRATA_LOG_PORT" "$STRATA_LOG_ADMIN" info 1
fi

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream backends {
        server 127.0.0.1:$BACKEND1;
        server 127.0.0.1:$BACKEND2;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
start nginx "${PIN_PROXY[@]}" -- nginx -p "$WORK/nginx" -c "$WORK/nginx.conf"

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend public
    bind 127.0.0.1:$HAPROXY_PORT
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    default_backend backends
backend backends
    balance roundrobin
    server b1 127.0.0.1:$BACKEND1
    server b2 127.0.0.1:$BACKEND2
EOF
start haproxy "${PIN_PROXY[@]}" -- haproxy -db -f "$WORK/haproxy.cfg"

TARGETS=(direct strata nginx haproxy)
declare -A PORT=([direct]=$DIRECT_PORT [strata]=$STRATA_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
if [ "$ACCESS_LOG" = 1 ]; then
    TARGETS+=(strata_log)
    PORT[strata_log]=$STRATA_LOG_PORT
fi
for target in "${TARGETS[@]}"; do
    wait_port "${PORT[$target]}" || {
        cat "$WORK"/*.err >&2
        exit 1
    }
done
log "strata pipeline_depth=$PIPELINE_DEPTH workers=$WORKERS rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS pin: $PIN_DESC"

# --- measuring -----------------------------------------------------------------------------
to_ms() { # "542.00us" | "1.20ms" | "1.01s" -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%.3f", v } }'
}

RESULTS=$WORK/results.txt
: >"$RESULTS"
run_wrk() { # run_wrk TARGET SECONDS -> appends "target rps p50 p99 errors" unless warm-up
    local target=$1 seconds=$2 out
    out=$(timeout $((seconds + 20)) "${PIN_CLIENT[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" \
        -d"${seconds}s" --latency "http://127.0.0.1:${PORT[$target]}/" 2>&1) || {
        log "wrk against $target failed: $out"
        return 1
    }
    [ "$3" = warmup ] && return 0
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }' <<<"$out")
    echo "$target $rps $p50 $p99 $errors" >>"$RESULTS"
    log "$(printf '%-10s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s' "$target" "$rps" "$p50" "$p99" "$errors")"
}

for target in "${TARGETS[@]}"; do
    run_wrk "$target" 1 warmup
done
for round in $(seq 1 "$ROUNDS"); do
    log "round $round"
    # Rotate the order each round so no target always follows the same one.
    n=${#TARGETS[@]}
    for i in $(seq 0 $((n - 1))); do
        run_wrk "${TARGETS[$(((i + round - 1) % n))]}" "$DURATION" measure
    done
done

median() { # median TARGET COLUMN
    awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total_errors() { awk -v t="$1" '$1 == t { n += $5 } END { print n + 0 }' "$RESULTS"; }

declare -A RPS P50 P99
printf '\n%-12s %12s %10s %10s %8s\n' target "req/s" "p50 ms" "p99 ms" errors
for target in "${TARGETS[@]}"; do
    RPS[$target]=$(median "$target" 2)
    P50[$target]=$(median "$target" 3)
    P99[$target]=$(median "$target" 4)
    printf '%-12s %12.0f %10.3f %10.3f %8s\n' "$target" "${RPS[$target]}" "${P50[$target]}" \
        "${P99[$target]}" "$(total_errors "$target")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }'; }
json="{\"workers\":$WORKERS,\"pipeline_depth\":$PIPELINE_DEPTH,\"pin\":\"$PIN\",\"rounds\":$ROUNDS,\"duration_s\":$DURATION,\"connections\":$CONNECTIONS"
for target in "${TARGETS[@]}"; do
    json+=",\"${target}_rps\":$(printf '%.0f' "${RPS[$target]}")"
    json+=",\"${target}_p50_ms\":${P50[$target]},\"${target}_p99_ms\":${P99[$target]}"
done
json+=",\"strata_vs_nginx\":$(ratio "${RPS[strata]}" "${RPS[nginx]}")"
json+=",\"strata_vs_haproxy\":$(ratio "${RPS[strata]}" "${RPS[haproxy]}")"
json+=",\"strata_vs_direct\":$(ratio "${RPS[strata]}" "${RPS[direct]}")"
if [ "$ACCESS_LOG" = 1 ]; then
    json+=",\"access_log_vs_off\":$(ratio "${RPS[strata_log]}" "${RPS[strata]}")"
fi
json+=",\"errors\":$(awk '{ n += $5 } END { print n + 0 }' "$RESULTS")}"
echo
echo "$json"
