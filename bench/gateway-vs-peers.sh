#!/usr/bin/env bash
# strata's gateway against nginx and HAProxy in front of the same instances on loopback,
# measured with wrk (h2load for HTTP/2 clients) in one run, interleaved, as ratios (the machine
# is noisy). Five scenarios, each with 1 and 2 workers per proxy:
#
#   echo  two tiny `echo` backends (crates/strata-gateway/examples/echo.rs), plus the direct
#         ceiling (wrk straight to a third one);
#   api   strata's own api: three api instances of one `strata up` (SQLite, in-memory cache),
#         cached `GET /api/v1/products/7`; strata also with `upstream_protocol = "http1"`
#         (one request per connection at a time, a connection pool) as `strata_h1`; and the
#         direct ceiling, wrk straight to one of the instances (no proxy): no proxy that sends
#         every request on to an instance can pass it on this machine, so `direct_vs_nginx`
#         bounds what any proxy's ratio to nginx can be;
#   hol   head-of-line mix: two `echo` backends answering `/fast` at once and `/slow` after
#         100 ms; wrk -c32 on `/fast` and, at the same time, wrk -c4 on `/slow` (about 0.1 % of
#         the requests are slow); the figures are the fast requests'. strata also as
#         `strata_h1` (http1, no pipelining) and `strata_pipelined` (http1, pipeline_depth 16);
#   h2    HTTP/2 clients: h2load with H2_CONNECTIONS connections of H2_STREAMS concurrent
#         streams each, h2c with prior knowledge, through each proxy to the two `echo`
#         backends (each proxy with its own upstream protocol and defaults: strata h2c, nginx
#         and HAProxy HTTP/1.1 keep-alive); nginx with `listen … http2`, HAProxy with
#         `proto h2`. h2load reports no percentiles: the p50 and p99 columns hold its mean
#         and its maximum request time;
#   h2api the same HTTP/2 clients in front of strata's own api (the api scenario's instances
#         and path): a body of 256 bytes or more (a product is 327) is one the `h2` crate
#         flushes on its own, which the echo backends' short answers never are.
#
#   bench/gateway-vs-peers.sh                       # every scenario, 1 and 2 workers
#   SCENARIOS=api WORKERS=1 bench/gateway-vs-peers.sh
#
# Knobs (environment): WORKERS ("1 2": worker counts, run in turn), SCENARIOS ("echo api
# hol h2 h2api"), ROUNDS (3), DURATION (5, seconds per wrk run), CONNECTIONS (32), SLOW_CONNECTIONS
# (4), SLOW_MS (100), WRK_THREADS (1), H2_CONNECTIONS (8), H2_STREAMS (16), BASE_PORT
# (18100), SKIP_BUILD (0), STEAL_MAX_PCT (2), STEAL_TRIES (3).
#
# On a virtual machine the hypervisor may take some of the CPU time (`steal` in /proc/stat):
# runs during which it took a quarter to a third reached a half to a quarter of their usual
# rate, whichever proxy they measured. Each measurement during which steal exceeded
# STEAL_MAX_PCT % of the machine's CPU time is measured again, STEAL_TRIES times at most in
# all; the last is kept whatever its steal, and every figure's steal is printed beside it, so a
# disturbed one shows.
#
# strata is the product binary with its defaults (`strata serve gateway`, `gateway.workers` =
# the worker count), nginx has `worker_processes` and upstream keep-alive 64, HAProxy `nbthread`
# and `http-reuse always`; all three round-robin over the same instances, add the same
# forwarding headers (X-Forwarded-For, X-Forwarded-Proto) and write no access log.
#
# Placement: nothing is pinned; every target shares the machine's cores with wrk and the
# instances as the scheduler sees fit (on 2 cores there is no core to give anyone alone).
# Runs are noisy, hence medians of interleaved rounds; rerun when the figures look disturbed.
#
# The last line of output is one JSON object with the medians and the ratios, keys
# `w<workers>_<scenario>_<target>_<figure>` and `w<workers>_<scenario>_strata_vs_<peer>`
# (requests/s, strata over peer) and, for hol, `w<workers>_hol_p99_strata_over_<peer>` (fast
# requests' p99, strata over peer: at most 1 means no worse); `w<workers>_h2_strata_vs_nginx` and
# `w<workers>_h2api_strata_vs_nginx` are h2load's requests/s through strata over nginx's;
# `w<workers>_api_direct_vs_nginx` is the api's rate with no proxy over its rate behind nginx.
# `<prefix>_proxy_cpu_us` and `<prefix>_instances_cpu_us` are the medians of the CPU time (user +
# system) per request of the proxy's processes and of the instances' processes,
# `<prefix>_proxy_sys_us` and `<prefix>_instances_sys_us` the kernel's part of them (system calls
# and the loopback network path they run), `<prefix>_idle_pct` the share of the machine's CPU
# time left idle during the run and `<prefix>_steal_pct` the share the hypervisor took: on a
# shared 2-core machine the rate a proxy reaches is bounded by what every process spends per
# request, and these show where it goes (the client's share is the rest).
set -euo pipefail

WORKERS_LIST=${WORKERS:-"1 2"}
SCENARIOS=${SCENARIOS:-"echo api hol h2 h2api"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
SLOW_CONNECTIONS=${SLOW_CONNECTIONS:-4}
SLOW_MS=${SLOW_MS:-100}
WRK_THREADS=${WRK_THREADS:-1}
H2_CONNECTIONS=${H2_CONNECTIONS:-8}
H2_STREAMS=${H2_STREAMS:-16}
BASE_PORT=${BASE_PORT:-18100}
SKIP_BUILD=${SKIP_BUILD:-0}
STEAL_MAX_PCT=${STEAL_MAX_PCT:-2}
STEAL_TRIES=${STEAL_TRIES:-3}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/examples
STRATA=$TARGET_DIR/release/strata

# Instances.
ECHO1=$((BASE_PORT + 1))
ECHO2=$((BASE_PORT + 2))
DIRECT_PORT=$((BASE_PORT + 3))
HOL1=$((BASE_PORT + 4))
HOL2=$((BASE_PORT + 5))
UP_PORT=$((BASE_PORT + 6))
UP_ADMIN=$((BASE_PORT + 7))
API1=$((BASE_PORT + 10)) # API1..API1+2; chat and worker listen beyond
CHAT1=$((BASE_PORT + 15))
WORKER1=$((BASE_PORT + 18))
# Proxies: scenario × target, see `port_of`.
PROXY_BASE=$((BASE_PORT + 30))

log() { echo "[bench] $*" >&2; }

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
[[ " $SCENARIOS " == *" h2"* ]] && { command -v h2load >/dev/null || missing+=(nghttp2-client); }
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

# --- processes -----------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
PIDS=()      # for the whole run
PROXY_PIDS=() # for one worker count
stop_pids() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    stop_pids "${PROXY_PIDS[@]}" "${PIDS[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $(seq "$BASE_PORT" $((PROXY_BASE + 60))); do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

wait_port() { # wait_port PORT [PATH [CURL_OPTION]]
    local port=$1 path=${2:-/} option=${3:---http1.1} i
    for i in $(seq 1 300); do
        if curl -fs "$option" -o /dev/null "http://127.0.0.1:$port$path"; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing answers on port $port$path"
    return 1
}

declare -A PID_OF=() # process name -> pid, for the CPU accounting
start() { # start NAME COMMAND... (for the whole run)
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    PID_OF[$name]=$!
}
start_proxy() { # start_proxy NAME COMMAND... (for one worker count)
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PROXY_PIDS+=($!)
    PID_OF[$name]=$!
}

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
# Whether a scenario's clients speak HTTP/2 (h2load) rather than HTTP/1.1 (wrk).
h2_clients() { [ "$1" = h2 ] || [ "$1" = h2api ]; }

if has echo || has h2; then
    start echo1 "$BIN/echo" "127.0.0.1:$ECHO1"
    start echo2 "$BIN/echo" "127.0.0.1:$ECHO2"
    start direct "$BIN/echo" "127.0.0.1:$DIRECT_PORT"
fi
if has hol; then
    start hol1 env ECHO_SLOW_MS="$SLOW_MS" "$BIN/echo" "127.0.0.1:$HOL1"
    start hol2 env ECHO_SLOW_MS="$SLOW_MS" "$BIN/echo" "127.0.0.1:$HOL2"
fi
if has api || has h2api; then
    mkdir -p "$WORK/up"
    # Three api instances; the gateway of `strata up` itself is not measured.
    start up env STRATA_API_LISTEN="127.0.0.1:$API1" STRATA_CHAT_LISTEN="127.0.0.1:$CHAT1" \
        STRATA_WORKER_LISTEN="127.0.0.1:$WORKER1" \
        "$STRATA" up --api 3 --chat 1 --port "$UP_PORT" --admin-port "$UP_ADMIN" \
        --data-dir "$WORK/up" --log-level warn
    for i in 0 1 2; do
        wait_port $((API1 + i)) /api/v1/products/7 || {
            cat "$WORK/up.err" >&2
            exit 1
        }
    done
fi

# --- scenarios and targets -----------------------------------------------------------------
declare -A INSTANCES=(
    [echo]="$ECHO1 $ECHO2"
    [api]="$API1 $((API1 + 1)) $((API1 + 2))"
    [hol]="$HOL1 $HOL2"
    [h2]="$ECHO1 $ECHO2"
    [h2api]="$API1 $((API1 + 1)) $((API1 + 2))"
)
declare -A PATH_OF=([echo]=/ [api]=/api/v1/products/7 [hol]=/fast [h2]=/
    [h2api]=/api/v1/products/7)
declare -A TARGETS_OF=(
    [echo]="direct strata nginx haproxy"
    [api]="direct strata strata_h1 nginx haproxy"
    [hol]="strata strata_h1 strata_pipelined nginx haproxy"
    [h2]="strata nginx haproxy"
    [h2api]="strata nginx haproxy"
)
SCENARIO_LIST=(echo api hol h2 h2api)
TARGET_LIST=(direct strata strata_h1 strata_pipelined nginx haproxy)
port_of() { # port_of SCENARIO TARGET
    local s t
    for s in "${!SCENARIO_LIST[@]}"; do [ "${SCENARIO_LIST[$s]}" = "$1" ] && break; done
    for t in "${!TARGET_LIST[@]}"; do [ "${TARGET_LIST[$t]}" = "$2" ] && break; done
    if [ "$2" = direct ] && [ "$1" = api ]; then
        echo "$API1"
    elif [ "$2" = direct ]; then
        echo "$DIRECT_PORT"
    else
        echo $((PROXY_BASE + s * 10 + t))
    fi
}

start_proxies() { # start_proxies WORKERS
    local workers=$1 scenario target port upstream instance
    mkdir -p "$WORK/nginx"
    {
        echo "worker_processes $workers; daemon off; pid $WORK/nginx.pid;"
        echo "error_log $WORK/nginx/error.log warn; events { worker_connections 4096; }"
        echo "http { access_log off; client_body_temp_path $WORK/nginx/body;"
        echo "proxy_temp_path $WORK/nginx/proxy; fastcgi_temp_path $WORK/nginx/fastcgi;"
        echo "uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;"
    } >"$WORK/nginx.conf"
    {
        echo "global"
        echo "    nbthread $workers"
        echo "    maxconn 4000"
        echo "defaults"
        echo "    mode http"
        echo "    option http-keep-alive"
        echo "    http-reuse always"
        echo "    timeout connect 1s"
        echo "    timeout client 30s"
        echo "    timeout server 30s"
    } >"$WORK/haproxy.cfg"
    for scenario in "${SCENARIO_LIST[@]}"; do
        has "$scenario" || continue
        upstream=""
        for instance in ${INSTANCES[$scenario]}; do
            upstream+="${upstream:+,}http://127.0.0.1:$instance"
        done
        for target in strata strata_h1 strata_pipelined; do
            [[ " ${TARGETS_OF[$scenario]} " == *" $target "* ]] || continue
            port=$(port_of "$scenario" "$target")
            local settings=()
            case $target in
            strata_h1) settings=(STRATA_GATEWAY_API_UPSTREAM_PROTOCOL=http1) ;;
            strata_pipelined) settings=(STRATA_GATEWAY_API_UPSTREAM_PROTOCOL=http1
                STRATA_GATEWAY_API_PIPELINE_DEPTH=16) ;;
            esac
            start_proxy "$scenario-$target" env STRATA_GATEWAY_LISTEN="127.0.0.1:$port" \
                STRATA_GATEWAY_ADMIN_LISTEN="127.0.0.1:$((port + 300))" \
                STRATA_GATEWAY_UPSTREAM="api=$upstream" STRATA_GATEWAY_WORKERS="$workers" \
                STRATA_LOG_LEVEL=warn "${settings[@]}" "$STRATA" serve gateway
        done
        {
            echo "upstream $scenario {"
            for instance in ${INSTANCES[$scenario]}; do echo "    server 127.0.0.1:$instance;"; done
            echo "    keepalive 64; keepalive_requests 1000000;"
            echo "}"
            # HTTP/2 over cleartext with prior knowledge (nginx has no h2c upgrade).
            local http2=""
            h2_clients "$scenario" && http2=" http2"
            # nginx closes a client connection after 1 000 requests by default (HTTP/2 ones
            # too, which h2load counts as failed streams); strata and HAProxy do not.
            echo "server { listen 127.0.0.1:$(port_of "$scenario" nginx)$http2;"
            echo "    keepalive_requests 1000000; location / {"
            echo "    proxy_pass http://$scenario; proxy_http_version 1.1;"
            echo "    proxy_set_header Connection \"\"; proxy_set_header Host \$host;"
            echo "    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
            echo "    proxy_set_header X-Forwarded-Proto \$scheme; } }"
        } >>"$WORK/nginx.conf"
        {
            echo "frontend $scenario"
            if h2_clients "$scenario"; then
                echo "    bind 127.0.0.1:$(port_of "$scenario" haproxy) proto h2"
            else
                echo "    bind 127.0.0.1:$(port_of "$scenario" haproxy)"
            fi
            echo "    option forwardfor"
            echo "    http-request set-header X-Forwarded-Proto http"
            echo "    default_backend $scenario-instances"
            echo "backend $scenario-instances"
            echo "    balance roundrobin"
            local i=0
            for instance in ${INSTANCES[$scenario]}; do
                i=$((i + 1))
                echo "    server i$i 127.0.0.1:$instance"
            done
        } >>"$WORK/haproxy.cfg"
    done
    echo "}" >>"$WORK/nginx.conf"
    start_proxy nginx nginx -p "$WORK/nginx" -c "$WORK/nginx.conf"
    start_proxy haproxy haproxy -db -f "$WORK/haproxy.cfg"
    for scenario in "${SCENARIO_LIST[@]}"; do
        has "$scenario" || continue
        local option=--http1.1
        h2_clients "$scenario" && option=--http2-prior-knowledge
        for target in ${TARGETS_OF[$scenario]}; do
            wait_port "$(port_of "$scenario" "$target")" "${PATH_OF[$scenario]}" "$option" || {
                cat "$WORK"/*.err >&2
                exit 1
            }
        done
    done
}

# --- measuring -----------------------------------------------------------------------------
to_ms() { # "542.00us" | "1.20ms" | "1.01s" -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "%.3f", v } }'
}

# CPU time of PIDs and their children (nginx's workers), all threads included, as "total
# system" clock ticks (total = user + system); a process that is gone counts 0.
cpu_ticks() {
    local total=0 system=0 pid child ticks
    for pid in "$@"; do
        for child in "$pid" $(pgrep -P "$pid" || true); do
            # Fields after the command name, which may hold spaces: utime and stime are the
            # 12th and 13th.
            read -r ticks stime <<<"$(sed 's/.*) //' "/proc/$child/stat" 2>/dev/null |
                awk '{ print $12 + $13, $13 }')"
            total=$((total + ${ticks:-0}))
            system=$((system + ${stime:-0}))
        done
    done
    echo "$total $system"
}
# The machine's idle, total and stolen clock ticks (every CPU), from /proc/stat.
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t, $9 }' /proc/stat; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# The processes of a target (the proxy) and of a scenario's instances, for cpu_ticks.
proxy_pids() { # proxy_pids SCENARIO TARGET
    case $2 in
    direct) ;;
    nginx | haproxy) echo "${PID_OF[$2]}" ;;
    *) echo "${PID_OF[$1-$2]}" ;;
    esac
}
instance_pids() { # instance_pids SCENARIO TARGET
    case $1/$2 in
    api/* | h2api/*) echo "${PID_OF[up]}" ;;
    */direct) echo "${PID_OF[direct]}" ;;
    hol/*) echo "${PID_OF[hol1]} ${PID_OF[hol2]}" ;;
    *) echo "${PID_OF[echo1]} ${PID_OF[echo2]}" ;;
    esac
}
# Microseconds of CPU per request: per_request TICKS REQUESTS.
per_request() { awk -v t="$1" -v n="$2" -v u="$TICK_US" 'BEGIN { if (n > 0) printf "%.2f", t * u / n; else print 0 }'; }
# cpu_pair KEY: "proxy_ticks proxy_system instances_ticks instances_system idle_ticks
# machine_ticks steal_ticks" now, for KEY = w<workers>-<scenario>-<target>.
cpu_pair() {
    local scenario target
    IFS=- read -r _ scenario target <<<"$1"
    # shellcheck disable=SC2046
    echo "$(cpu_ticks $(proxy_pids "$scenario" "$target")) $(cpu_ticks $(instance_pids "$scenario" "$target")) $(machine_ticks)"
}
# cpu_per_request KEY BEFORE REQUESTS: "proxy_us instances_us proxy_sys_us instances_sys_us
# idle_pct steal_pct" since BEFORE (a cpu_pair): CPU microseconds per request (in all, then
# the system's part) and the shares of the machine's CPU time left idle and taken by the
# hypervisor.
cpu_per_request() {
    local -a before now
    read -r -a before <<<"$2"
    read -r -a now <<<"$(cpu_pair "$1")"
    local d=() i
    for i in 0 1 2 3 4 5 6; do d[i]=$((now[i] - before[i])); done
    echo "$(per_request "${d[0]}" "$3") $(per_request "${d[2]}" "$3")" \
        "$(per_request "${d[1]}" "$3") $(per_request "${d[3]}" "$3")" \
        "$(share "${d[4]}" "${d[5]}") $(share "${d[6]}" "${d[5]}")"
}
# share PART WHOLE: PART as a percentage of WHOLE, one decimal.
share() { awk -v p="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.1f", 100 * p / w; else print 0 }'; }

RESULTS=$WORK/results.txt
: >"$RESULTS"
# run_wrk KEY PORT PATH SECONDS [warmup]: appends "KEY rps p50 p99 errors proxy_us
# instances_us proxy_sys_us instances_sys_us idle_pct steal_pct" (CPU microseconds per request
# of the proxy's processes and of the instances', in all and the kernel's part, see
# `cpu_ticks`, and the machine's idle and stolen shares; in the api scenario the instances'
# process also holds an idle chat and worker); in the hol scenario the slow requests run
# alongside on SLOW_CONNECTIONS connections (and count in the CPU figures, not in the requests).
run_wrk() {
    local key=$1 port=$2 path=$3 seconds=$4 mode=${5:-measure} out slow_pid="" before
    before=$(cpu_pair "$key")
    if [ "$path" = /fast ]; then
        timeout $((seconds + 20)) wrk -t1 -c"$SLOW_CONNECTIONS" -d"${seconds}s" \
            "http://127.0.0.1:$port/slow" >"$WORK/slow.out" 2>&1 &
        slow_pid=$!
    fi
    out=$(timeout $((seconds + 20)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${seconds}s" \
        --latency "http://127.0.0.1:$port$path" 2>&1) || {
        log "wrk against $key failed: $out"
        return 1
    }
    [ -n "$slow_pid" ] && wait "$slow_pid"
    [ "$mode" = warmup ] && return 0
    local rps p50 p99 errors requests cpu
    requests=$(awk '/ requests in / { print $1 }' <<<"$out")
    cpu=$(cpu_per_request "$key" "$before" "$requests")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }' <<<"$out")
    if [ -n "$slow_pid" ]; then
        errors=$((errors + $(awk '/Non-2xx/ { n += $NF } END { print n + 0 }' "$WORK/slow.out")))
    fi
    echo "$key $rps $p50 $p99 $errors $cpu" >>"$RESULTS"
    log "$(printf '%-26s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s' "$key" "$rps" "$p50" "$p99" "$errors")$(cpu_log $cpu)"
}

# run_h2load KEY PORT PATH SECONDS [warmup]: as run_wrk, with h2load's HTTP/2 clients
# (H2_CONNECTIONS × H2_STREAMS); its mean and longest request times stand for p50 and p99.
run_h2load() {
    local key=$1 port=$2 path=$3 seconds=$4 mode=${5:-measure} out before
    before=$(cpu_pair "$key")
    out=$(timeout $((seconds + 20)) h2load -t1 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" \
        -D"$seconds" "http://127.0.0.1:$port$path" 2>&1) || {
        log "h2load against $key failed: $out"
        return 1
    }
    [ "$mode" = warmup ] && return 0
    local rps mean max errors requests cpu
    requests=$(awk '/^requests:/ { gsub(/,/, ""); print $8 }' <<<"$out")
    cpu=$(cpu_per_request "$key" "$before" "$requests")
    rps=$(awk '/^finished in/ { gsub(/,/, ""); print $4 }' <<<"$out")
    mean=$(to_ms "$(awk '/^time for request:/ { print $6 }' <<<"$out")")
    max=$(to_ms "$(awk '/^time for request:/ { print $5 }' <<<"$out")")
    errors=$(awk '/^requests:/ { gsub(/,/, ""); print $10 + $12 + $14 }' <<<"$out")
    errors=$((errors + $(awk '/^status codes:/ { gsub(/,/, ""); print $7 + $9 }' <<<"$out")))
    echo "$key $rps $mean $max $errors $cpu" >>"$RESULTS"
    log "$(printf '%-26s %10.0f req/s  mean %6.3f ms  max %7.3f ms  errors %s' "$key" "$rps" "$mean" "$max" "$errors")$(cpu_log $cpu)"
}

# cpu_log PROXY_US INSTANCES_US PROXY_SYS_US INSTANCES_SYS_US IDLE_PCT STEAL_PCT: the log's
# CPU part.
cpu_log() {
    printf '  CPU/request proxy %6.2f us (sys %5.2f) instances %6.2f us (sys %5.2f)  idle %4.1f %%  steal %4.1f %%' \
        "$1" "$3" "$2" "$4" "$5" "$6"
}

# measure RUN KEY PORT PATH SECONDS: RUN (run_wrk or run_h2load) measures once and appends
# its record; one during which the hypervisor took more than STEAL_MAX_PCT % of the machine's
# CPU time is dropped and measured again, STEAL_TRIES times at most in all (the last is kept).
measure() {
    local run=$1 key=$2 attempt steal
    for attempt in $(seq 1 "$STEAL_TRIES"); do
        "$run" "$key" "$3" "$4" "$5" || return 1
        steal=$(tail -n 1 "$RESULTS" | awk '{ print $11 }')
        awk -v s="$steal" -v m="$STEAL_MAX_PCT" 'BEGIN { exit !(s > m) }' || return 0
        if [ "$attempt" -ge "$STEAL_TRIES" ]; then
            log "$key: kept after $attempt tries, with $steal % of the CPU time stolen"
            return 0
        fi
        log "$key: the hypervisor took $steal % of the CPU time; measuring again"
        sed -i '$d' "$RESULTS"
    done
}

median() { # median KEY COLUMN
    awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total_errors() { awk -v t="$1" '$1 == t { n += $5 } END { print n + 0 }' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print 0 }'; }

json="{\"rounds\":$ROUNDS,\"h2_connections\":$H2_CONNECTIONS,\"h2_streams\":$H2_STREAMS,\"duration_s\":$DURATION,\"connections\":$CONNECTIONS,\"slow_connections\":$SLOW_CONNECTIONS,\"slow_ms\":$SLOW_MS"
TABLE=""
for workers in $WORKERS_LIST; do
    log "workers=$workers: starting the proxies"
    start_proxies "$workers"
    for scenario in "${SCENARIO_LIST[@]}"; do
        has "$scenario" || continue
        read -r -a targets <<<"${TARGETS_OF[$scenario]}"
        path=${PATH_OF[$scenario]}
        run=run_wrk
        h2_clients "$scenario" && run=run_h2load
        log "workers=$workers scenario=$scenario rounds=$ROUNDS duration=${DURATION}s"
        for target in "${targets[@]}"; do
            $run "w$workers-$scenario-$target" "$(port_of "$scenario" "$target")" "$path" 1 warmup
        done
        for round in $(seq 1 "$ROUNDS"); do
            n=${#targets[@]}
            # Rotate the order each round so no target always follows the same one.
            for i in $(seq 0 $((n - 1))); do
                target=${targets[$(((i + round - 1) % n))]}
                measure "$run" "w$workers-$scenario-$target" "$(port_of "$scenario" "$target")" \
                    "$path" "$DURATION"
            done
        done
        declare -A RPS=() P50=() P99=()
        for target in "${targets[@]}"; do
            key="w$workers-$scenario-$target"
            RPS[$target]=$(median "$key" 2)
            P50[$target]=$(median "$key" 3)
            P99[$target]=$(median "$key" 4)
            proxy_us=$(median "$key" 6)
            instances_us=$(median "$key" 7)
            proxy_sys_us=$(median "$key" 8)
            instances_sys_us=$(median "$key" 9)
            idle_pct=$(median "$key" 10)
            steal_pct=$(median "$key" 11)
            TABLE+=$(printf '%-8s %-6s %-18s %12.0f %10.3f %10.3f %8s %10.2f %10.2f %10.2f %10.2f %7.1f %8.1f' \
                "$workers" "$scenario" "$target" "${RPS[$target]}" "${P50[$target]}" \
                "${P99[$target]}" "$(total_errors "$key")" "$proxy_us" "$proxy_sys_us" \
                "$instances_us" "$instances_sys_us" "$idle_pct" "$steal_pct")$'\n'
            prefix="w${workers}_${scenario}_${target}"
            json+=",\"${prefix}_rps\":$(printf '%.0f' "${RPS[$target]}")"
            json+=",\"${prefix}_p50_ms\":${P50[$target]},\"${prefix}_p99_ms\":${P99[$target]}"
            json+=",\"${prefix}_proxy_cpu_us\":$proxy_us,\"${prefix}_instances_cpu_us\":$instances_us"
            json+=",\"${prefix}_proxy_sys_us\":$proxy_sys_us,\"${prefix}_instances_sys_us\":$instances_sys_us"
            json+=",\"${prefix}_idle_pct\":$idle_pct,\"${prefix}_steal_pct\":$steal_pct"
        done
        for peer in nginx haproxy direct strata_h1; do
            [[ " ${targets[*]} " == *" $peer "* ]] || continue
            json+=",\"w${workers}_${scenario}_strata_vs_${peer}\":$(ratio "${RPS[strata]}" "${RPS[$peer]}")"
            if [ "$scenario" = api ] || [ "$scenario" = hol ]; then
                json+=",\"w${workers}_${scenario}_p99_strata_over_${peer}\":$(ratio "${P99[strata]}" "${P99[$peer]}")"
            fi
        done
        if [ "$scenario" = api ]; then
            json+=",\"w${workers}_api_direct_vs_nginx\":$(ratio "${RPS[direct]}" "${RPS[nginx]}")"
        fi
        unset RPS P50 P99
    done
    stop_pids "${PROXY_PIDS[@]}"
    PROXY_PIDS=()
done

printf '\n%-8s %-6s %-18s %12s %10s %10s %8s %10s %10s %10s %10s %7s %8s\n' workers scene target \
    "req/s" "p50 ms" "p99 ms" errors "proxy us" "proxy sys" "inst. us" "inst. sys" "idle %" \
    "steal %"
printf '%s' "$TABLE"
json+=",\"errors\":$(awk '{ n += $5 } END { print n + 0 }' "$RESULTS")}"
echo
echo "$json"
