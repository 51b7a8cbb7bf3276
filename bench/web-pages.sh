#!/usr/bin/env bash
# The storefront's home page, as a browser gets it through the gateway of `strata up`, side by
# side with nginx serving the same rendered page as a file (the reference: a static server
# cannot be beaten on a static file, so the ratios say what rendering the page costs):
#
#  (a) bytes transferred for the page without images: the HTML of `/` and every stylesheet and
#      script it loads (its `<link>`s and `<script>`s, the modules they import and the
#      stylesheets they add: the chat widget's), each with `Accept-Encoding: br, gzip` and the
#      gateway's compression as shipped (nginx: `gzip on`, level 6, the same files). Budget:
#      under 100 KB.
#  (b) latency of `GET /` with `strata bench` (closed loop, CONNECTIONS connections, DURATION
#      per run), p50 and p99, strata and nginx interleaved, ROUNDS rounds, medians. The page is
#      small, so its latency is its time to first byte within a few microseconds. Budget: p50
#      under 10 ms.
#
#   bench/web-pages.sh               # release build (built here unless SKIP_BUILD=1)
#   PROFILE=debug bench/web-pages.sh # the debug build in target/debug (say so when quoting)
#
# Knobs (environment): ROUNDS (3), DURATION (5, seconds per run), CONNECTIONS (8), BASE_PORT
# (18500), PROFILE (release), SKIP_BUILD (0).
#
# The last line of output is one JSON object with the figures and the ratios.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-8}
BASE_PORT=${BASE_PORT:-18500}
PROFILE=${PROFILE:-release}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/$PROFILE/strata
GW_PORT=$BASE_PORT
GW_ADMIN_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))

WORK=$(mktemp -d /tmp/strata-bench-web.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

need curl curl
need python3 python3
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need nginx nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $SKIP_BUILD != 1 ]]; then
    if [[ $PROFILE == release ]]; then
        (cd "$ROOT" && CARGO_INCREMENTAL=0 cargo build --release -q -p strata --bin strata)
    else
        (cd "$ROOT" && CARGO_INCREMENTAL=0 cargo build -q -p strata --bin strata)
    fi
fi

# strata: one api instance behind the gateway, as `strata up` ships otherwise.
"$STRATA" up --api 1 --chat 1 --port "$GW_PORT" --admin-port "$GW_ADMIN_PORT" \
    --data-dir "$WORK/up" --log-level warn >"$WORK/up.log" 2>&1 &
PIDS+=($!)
STRATA_URL="http://127.0.0.1:$GW_PORT"
wait_ready "$STRATA_URL/"
for _ in $(seq 1 20); do # warm the cache and the connection pools
    curl -fsS -o /dev/null "$STRATA_URL/"
done

# The assets the home page loads: its stylesheets and scripts, then what those scripts import
# or add (`/static/…` named in them), until nothing new turns up.
mkdir -p "$WORK/www/static" "$WORK/nginx"
curl -fsS -o "$WORK/www/index.html" "$STRATA_URL/"
ASSETS=()
todo=("$WORK/www/index.html")
while ((${#todo[@]})); do
    file=${todo[0]}
    todo=("${todo[@]:1}")
    for asset in $(grep -oE '/static/[A-Za-z0-9._-]+\.(css|js)' "$file" | sort -u); do
        [[ " ${ASSETS[*]} " == *" $asset "* ]] && continue
        ASSETS+=("$asset")
        curl -fsS -o "$WORK/www$asset" "$STRATA_URL$asset"
        todo+=("$WORK/www$asset")
    done
done
echo "home page assets: ${ASSETS[*]}" >&2

# nginx: the same page, rendered once by strata, and the same assets, as files (readable by
# its workers, which run as `nobody` when it is started as root: mktemp's directory is 0700).
chmod a+x "$WORK"
chmod -R a+rX "$WORK/www"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn; events { worker_connections 1024; }
http {
    access_log off; client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    types { text/html html; text/css css; text/javascript js; }
    gzip on; gzip_comp_level 6; gzip_min_length 1024; gzip_types text/css text/javascript;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; index index.html; }
}
NGINX
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" &
PIDS+=($!)
NGINX_URL="http://127.0.0.1:$NGINX_PORT"
wait_ready "$NGINX_URL/" || { cat "$WORK/nginx/error.log" >&2; exit 1; }

# Bytes on the wire of the page's HTML and assets (bodies only, as compressed).
transferred() {
    local base=$1 total=0 path n
    for path in / "${ASSETS[@]}"; do
        n=$(curl -fsS -o /dev/null -H 'Accept-Encoding: br, gzip' -w '%{size_download}' "$base$path")
        echo "  $base$path: $n bytes" >&2
        total=$((total + n))
    done
    echo "$total"
}
raw_bytes=$(wc -c <"$WORK/www/index.html")
for asset in "${ASSETS[@]}"; do
    raw_bytes=$((raw_bytes + $(wc -c <"$WORK/www$asset")))
done
strata_bytes=$(transferred "$STRATA_URL")
nginx_bytes=$(transferred "$NGINX_URL")
echo "home page without images: $raw_bytes bytes, transferred strata $strata_bytes, nginx $nginx_bytes" >&2

# p50 and p99 (ms) of one `strata bench` run against URL (its `--json` report is one
# pretty-printed object; `latency_ms` is the whole run's).
latency() {
    "$STRATA" bench --url "$1" -c "$CONNECTIONS" --duration "${DURATION}s" --json 2>/dev/null |
        python3 -c '
import json, sys
report = json.load(sys.stdin)
latency = report.get("latency_ms") or {}
if report.get("ok", 0) == 0 or "p50" not in latency or "p99" not in latency:
    sys.exit("no successful request or no latency in the report: " + json.dumps(report)[:400])
print(latency["p50"], latency["p99"])
'
}

s50=() s99=() n50=() n99=()
for round in $(seq 1 "$ROUNDS"); do
    read -r a b < <(latency "$STRATA_URL/")
    read -r c d < <(latency "$NGINX_URL/")
    s50+=("$a") s99+=("$b") n50+=("$c") n99+=("$d")
    echo "round $round: strata p50 $a ms p99 $b ms; nginx p50 $c ms p99 $d ms" >&2
done
sp50=$(printf '%s\n' "${s50[@]}" | median)
sp99=$(printf '%s\n' "${s99[@]}" | median)
np50=$(printf '%s\n' "${n50[@]}" | median)
np99=$(printf '%s\n' "${n99[@]}" | median)

printf '%-40s %12s %12s %7s %10s\n' "what" "strata" "nginx" "ratio" "budget" >&2
printf '%-40s %12s %12s %7s %10s\n' "home page transferred (bytes)" "$strata_bytes" "$nginx_bytes" "$(ratio "$strata_bytes" "$nginx_bytes")" "< 102400" >&2
printf '%-40s %12s %12s %7s %10s\n' "GET / p50 (ms)" "$sp50" "$np50" "$(ratio "$sp50" "$np50")" "< 10" >&2
printf '%-40s %12s %12s %7s %10s\n' "GET / p99 (ms)" "$sp99" "$np99" "$(ratio "$sp99" "$np99")" "" >&2
echo "{\"build\": \"$PROFILE\", \"home_raw_bytes\": $raw_bytes, \"home_transferred_bytes\": $strata_bytes, \"nginx_transferred_bytes\": $nginx_bytes, \"transferred_ratio\": $(ratio "$strata_bytes" "$nginx_bytes"), \"p50_ms\": $sp50, \"p99_ms\": $sp99, \"nginx_p50_ms\": $np50, \"nginx_p99_ms\": $np99, \"p50_ratio\": $(ratio "$sp50" "$np50"), \"p99_ratio\": $(ratio "$sp99" "$np99"), \"connections\": $CONNECTIONS, \"rounds\": $ROUNDS, \"duration_s\": $DURATION}"
