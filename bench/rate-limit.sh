#!/usr/bin/env bash
# Rate limits at the gateway against nginx's `limit_req`, in one run: how exactly a client over
# its limit is held to it, whether a client within its limit is touched, and what checking a
# limit costs per request.
#
#   bench/rate-limit.sh
#
# Knobs (environment): RATE (200, requests/s a client may send; the burst is the same),
# SECONDS_ACCURACY (5), ROUNDS (3), DURATION (5, seconds per wrk run), CONNECTIONS (32),
# WORKERS (1), BASE_PORT (18400), SKIP_BUILD (0).
#
# Accuracy: a greedy client sends 3 × RATE requests/s and a polite one RATE / 2, paced, on
# keep-alive connections, for SECONDS_ACCURACY seconds; the greedy one should receive
# burst + RATE × seconds (`*_accuracy` is received / expected), the polite one never a 429.
# Cost: wrk on a path no rule covers, on one limited per client IP, and (strata) on one limited
# per user of a session token (`key = "jwt_subject"`, each request's HS256 signature checked),
# every limit far above what wrk sends, so nothing is refused and only the check is priced.
# Both proxies front the same echo backend, one worker each, keep-alive upstream, no logs.
#
# The last line of output is one JSON object with the figures and the ratios.
set -euo pipefail

RATE=${RATE:-200}
SECONDS_ACCURACY=${SECONDS_ACCURACY:-5}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-1}
BASE_PORT=${BASE_PORT:-18400}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
. "$ROOT/bench/lib/common.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA=$TARGET_DIR/release/strata
ECHO=$TARGET_DIR/release/examples/echo

BACKEND=$((BASE_PORT + 1))
STRATA_PORT=$((BASE_PORT + 10))
STRATA_ADMIN=$((BASE_PORT + 11))
NGINX_PORT=$((BASE_PORT + 20))
SECRET="a secret of at least thirty-two bytes for rate-limit.sh"

log() { echo "[bench] $*" >&2; }

need wrk wrk
need curl curl
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need nginx nginx
PATH=$PATH:/usr/sbin

if [ "$SKIP_BUILD" != 1 ]; then
    log "building release strata and the echo backend"
    (cd "$ROOT" && timeout 1800 cargo build --release -q -p strata --bin strata &&
        timeout 1200 cargo build --release -q -p strata-gateway --example echo)
fi

WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $BACKEND $STRATA_PORT $STRATA_ADMIN $NGINX_PORT; do
    if ss -Htln "sport = :$port" | grep -q .; then
        log "port $port is in use; set BASE_PORT"
        exit 1
    fi
done

"$ECHO" "127.0.0.1:$BACKEND" >"$WORK/echo.out" 2>&1 &
PIDS+=($!)

# Limits far above what wrk can send: checked on every request, never refusing.
HIGH=1000000
cat >"$WORK/strata.toml" <<EOF
[[gateway.rate_limits]]
prefix = "/limited/"
key = "header:x-client"
per_second = $RATE
burst = $RATE

[[gateway.rate_limits]]
prefix = "/ip/"
per_second = $HIGH
burst = $HIGH

[[gateway.rate_limits]]
prefix = "/user/"
key = "jwt_subject"
per_second = $HIGH
burst = $HIGH
EOF
env STRATA_CONFIG="$WORK/strata.toml" STRATA_GATEWAY_LISTEN="127.0.0.1:$STRATA_PORT" \
    STRATA_GATEWAY_ADMIN_LISTEN="127.0.0.1:$STRATA_ADMIN" \
    STRATA_GATEWAY_UPSTREAM="api=http://127.0.0.1:$BACKEND" STRATA_GATEWAY_WORKERS="$WORKERS" \
    STRATA_AUTH_JWT_SECRET="$SECRET" STRATA_LOG_LEVEL=warn \
    "$STRATA" serve gateway >"$WORK/strata.out" 2>"$WORK/strata.err" &
PIDS+=($!)

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
    limit_req_zone \$http_x_client zone=client:10m rate=${RATE}r/s;
    limit_req_zone \$binary_remote_addr zone=ip:10m rate=${HIGH}r/s;
    limit_req_status 429;
    upstream backends {
        server 127.0.0.1:$BACKEND;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        location /limited/ {
            limit_req zone=client burst=$RATE nodelay;
            proxy_pass http://backends;
        }
        location /ip/ {
            limit_req zone=ip burst=$HIGH nodelay;
            proxy_pass http://backends;
        }
        location / {
            proxy_pass http://backends;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" >"$WORK/nginx.out" 2>&1 &
PIDS+=($!)

wait_ready "http://127.0.0.1:$BACKEND/"
wait_ready "http://127.0.0.1:$STRATA_PORT/free"
wait_ready "http://127.0.0.1:$NGINX_PORT/free"

# A session token for user 1, as the api would sign it.
TOKEN=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
claims = {"sub": "1", "email": "bench@example.com", "role": "customer", "iat": now, "exp": now + 3600}
body = head + b"." + b64(json.dumps(claims).encode())
print((body + b"." + b64(hmac.new(sys.argv[1].encode(), body, hashlib.sha256).digest())).decode())
PY
)
if [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$STRATA_PORT/user/x")" != 200 ]; then
    log "the token is refused"
    exit 1
fi

# accuracy PORT: "ALLOWED EXPECTED POLITE_REFUSED OTHER_STATUSES" for a greedy client at
# 3 × RATE and a polite one at RATE / 2, both paced, for SECONDS_ACCURACY seconds.
accuracy() {
    python3 - "$1" "$RATE" "$SECONDS_ACCURACY" <<'PY'
import http.client, sys, threading, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
results = {}

def client(name, per_second, threads):
    # Each thread sends its share on its own keep-alive connection at its intended times.
    counts = {"ok": 0, "refused": 0, "other": 0}
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    def run(offset):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        interval = threads / per_second
        k = 0
        while True:
            due = start + (offset + k * threads) / per_second
            if due - start >= seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", "/limited/x", headers={"x-client": name})
            response = conn.getresponse()
            response.read()
            key = {200: "ok", 429: "refused"}.get(response.status, "other")
            with lock:
                counts[key] += 1
            k += 1
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results[name] = counts

greedy = threading.Thread(target=client, args=("greedy", 3 * rate, 4))
polite = threading.Thread(target=client, args=("polite", rate / 2, 1))
greedy.start(); polite.start(); greedy.join(); polite.join()
expected = rate + rate * seconds
g, p = results["greedy"], results["polite"]
print(g["ok"], int(expected), p["refused"], g["other"] + p["other"])
PY
}

log "accuracy: strata"
read -r S_OK S_EXPECTED S_POLITE S_OTHER <<<"$(accuracy "$STRATA_PORT")"
sleep 2 # let the buckets refill
log "accuracy: nginx"
read -r N_OK N_EXPECTED N_POLITE N_OTHER <<<"$(accuracy "$NGINX_PORT")"
log "strata: greedy allowed $S_OK of $S_EXPECTED expected, polite refused $S_POLITE, other statuses $S_OTHER"
log "nginx:  greedy allowed $N_OK of $N_EXPECTED expected, polite refused $N_POLITE, other statuses $N_OTHER"

rps() { # rps URL [HEADER]: requests/s of one wrk run
    local args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
    [ $# -gt 1 ] && args+=(-H "$2")
    wrk "${args[@]}" "$1" 2>/dev/null | awk '/Requests\/sec/ {print $2}'
}

declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    RUNS[strata_free]+="$(rps "http://127.0.0.1:$STRATA_PORT/free")"$'\n'
    RUNS[nginx_free]+="$(rps "http://127.0.0.1:$NGINX_PORT/free")"$'\n'
    RUNS[strata_ip]+="$(rps "http://127.0.0.1:$STRATA_PORT/ip/x")"$'\n'
    RUNS[nginx_ip]+="$(rps "http://127.0.0.1:$NGINX_PORT/ip/x")"$'\n'
    RUNS[strata_user]+="$(rps "http://127.0.0.1:$STRATA_PORT/user/x" "Authorization: Bearer $TOKEN")"$'\n'
done
med() { printf '%s' "${RUNS[$1]}" | grep . | median; }
SF=$(med strata_free)
NF=$(med nginx_free)
SI=$(med strata_ip)
NI=$(med nginx_ip)
SU=$(med strata_user)
log "requests/s (median of $ROUNDS): strata free $SF, per IP $SI, per user $SU; nginx free $NF, per IP $NI"

printf '{"rate_per_sec":%s,"strata_accuracy":%s,"nginx_accuracy":%s,"strata_polite_refused":%s,"nginx_polite_refused":%s,"strata_rps_unlimited":%s,"strata_rps_ip_limit":%s,"strata_rps_user_limit":%s,"nginx_rps_unlimited":%s,"nginx_rps_ip_limit":%s,"strata_ip_limit_cost":%s,"strata_user_limit_cost":%s,"nginx_ip_limit_cost":%s,"strata_vs_nginx_ip_limit":%s}\n' \
    "$RATE" "$(ratio "$S_OK" "$S_EXPECTED")" "$(ratio "$N_OK" "$N_EXPECTED")" "$S_POLITE" "$N_POLITE" \
    "$SF" "$SI" "$SU" "$NF" "$NI" \
    "$(awk -v a="$SI" -v b="$SF" 'BEGIN {printf "%.3f", 1 - a/b}')" \
    "$(awk -v a="$SU" -v b="$SF" 'BEGIN {printf "%.3f", 1 - a/b}')" \
    "$(awk -v a="$NI" -v b="$NF" 'BEGIN {printf "%.3f", 1 - a/b}')" \
    "$(ratio "$SI" "$NI")"
