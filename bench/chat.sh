#!/usr/bin/env bash
# The chat tier under load: two gateways (one process cannot hold 10,000 client connections
# plus 10,000 upstream ones under this machine's 20,000 file descriptor hard limit) in front
# of two chat instances (`strata serve`), on PostgreSQL, Redis and NATS JetStream. The load
# client (crates/strata-chat/examples/chat_load.rs) opens CONNS WebSocket connections through
# the gateways (rooms of ROOM_SIZE), measures the chat processes' RSS growth per idle
# connection, then sends RATE messages/s (one sender per room, phases spread evenly over the
# period unless STAGGER=0, which makes every room's sender fire at once) for SECS seconds and
# reports send→receipt latency percentiles over every receipt and send→ack percentiles.
#
#   bench/chat.sh                       # 10,000 connections, 1,000 messages/s, 10 s
#   CONNS=2000 RATE=500 bench/chat.sh
#
# Knobs: CONNS (10000), ROOM_SIZE (10), RATE (1000), SECS (10), STAGGER (1), SOURCES (4, loopback source
# addresses 127.0.0.1..N), SETTLE (12: seconds between the last connection and the measurements, so
# the presence announcements of the connect burst are over), CHECKPOINT (1: checkpoint PostgreSQL
# before connecting, see below), PG_URL, REDIS_URL, NATS_URL, SKIP_BUILD (0).
# The load client prints the latency of each second of the run on stderr (p50, p99, max), to
# tell a stall from a slowness spread over the run. The last line of output is one JSON object.
set -euo pipefail

CONNS=${CONNS:-10000}
ROOM_SIZE=${ROOM_SIZE:-10}
RATE=${RATE:-1000}
SECS=${SECS:-10}
SOURCES=${SOURCES:-4}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
TARGET=${CARGO_TARGET_DIR:-target}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"

ulimit -n "$(ulimit -Hn)"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    # Two invocations: a target flag (`--example`) would otherwise restrict both packages to
    # that example and leave the `strata` binary unbuilt.
    cargo build --release -p strata --bin strata >&2
    cargo build --release -p strata-chat --example chat_load >&2
fi
BIN="$TARGET/release/strata"
LOAD="$TARGET/release/examples/chat_load"

# A schema of its own, so the benchmark's rows and migrations touch nothing else.
SCHEMA="chat_bench_$$"
psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >&2
DB_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA"
NS="chatbench$$"
export STRATA_AUTH_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STRATA_LOG_LEVEL=warn

PIDS=()
LOAD_OUT=$(mktemp)
cleanup() {
    rm -f "$LOAD_OUT"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PG_URL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >&2 || true
    nats_delete_stream "$NATS_URL" "${NS^^}_CHAT"
}
trap cleanup EXIT

CHAT_PIDS=()
for i in 1 2; do
    STRATA_BUS_NAMESPACE=$NS "$BIN" serve chat --listen "127.0.0.1:1820$i" --instance "chat-$i" \
        --database-url "$DB_URL" --cache "$REDIS_URL" --bus "$NATS_URL" >/dev/null 2>/tmp/chat-bench-chat-$i.log &
    PIDS+=($!); CHAT_PIDS+=($!)
done
sleep 2
# Accepting thousands of connections at once keeps the chat instances busy: health checks get
# a generous timeout and the pool fails open rather than refusing everyone.
export STRATA_GATEWAY_CHAT_FAIL_OPEN=true STRATA_GATEWAY_CHAT_HEALTH_INTERVAL_MS=5000 STRATA_GATEWAY_CHAT_HEALTH_TIMEOUT_MS=5000 \
    STRATA_GATEWAY_CHAT_HEALTH_FALL=10 STRATA_GATEWAY_CHAT_HEALTH_EJECT_AFTER=1000
UPSTREAM="chat=http://127.0.0.1:18201,http://127.0.0.1:18202"
for i in 1 2; do
    "$BIN" serve gateway --listen "127.0.0.1:1808$i" --admin-listen "127.0.0.1:1809$i" \
        --upstream "$UPSTREAM" --upstream "api=http://127.0.0.1:18201" \
        >/dev/null 2>/tmp/chat-bench-gateway-$i.log &
    PIDS+=($!)
done
for port in 18201 18202 18081 18082; do
    for _ in $(seq 50); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.2
    done
done

# The load client signs support tokens for users 1..CONNS; chat reads the role that opens a
# lobby from the store, so those accounts exist (the instances have migrated the schema).
psql -q "$DB_URL" -c "INSERT INTO users (id, email, display_name, password_hash, role)
    OVERRIDING SYSTEM VALUE
    SELECT g, 'user' || g || '@example.test', 'User ' || g, 'not a password hash', 'support'
    FROM generate_series(1, $CONNS) AS g" >&2

# A checkpoint now, so that PostgreSQL's next timed one (checkpoint_timeout, 5 min by default)
# does not fall in the measurement: on this machine's disk its start (a burst of full-page
# images in the WAL) and its final fsyncs each stall commits for 0.1-0.9 s, which is
# PostgreSQL's schedule, not the chat tier. CHECKPOINT=0 leaves it to chance.
if [[ ${CHECKPOINT:-1} == 1 ]]; then
    psql -q "$PG_URL" -c CHECKPOINT >&2 || echo "cannot run CHECKPOINT (needs a superuser or pg_checkpoint)" >&2
fi
URLS=${LOAD_URLS:-http://127.0.0.1:18081,http://127.0.0.1:18082} SECRET=$STRATA_AUTH_JWT_SECRET \
    CONNS=$CONNS ROOM_SIZE=$ROOM_SIZE RATE=$RATE SECS=$SECS SOURCES=$SOURCES STAGGER=${STAGGER:-1} SETTLE=${SETTLE:-12} \
    PIDS=$(IFS=,; echo "${CHAT_PIDS[*]}") "$LOAD" >"$LOAD_OUT"
# Where the time went on each instance: its store commits and bus publishes (whole run,
# connection set-up included), from the instances' histograms.
for i in 1 2; do
    curl -fs "http://127.0.0.1:1820$i/metrics" | awk -v instance="chat-$i" '
        /^strata_chat_(commit|publish)_seconds_(bucket|count)/ {
            name = ($1 ~ /commit/) ? "commits" : "publishes"
            if ($1 ~ /_count/) { count[name] = $2 }
            else if ($1 ~ /le="0.032"/) { under32[name] = $2 }
            else if ($1 ~ /le="0.128"/) { under128[name] = $2 }
        }
        /^strata_chat_commit_batch_messages_(sum|count)/ { batch[$1 ~ /_sum/ ? "sum" : "n"] = $2 }
        END {
            for (name in count) {
                printf "%s: %d %s, %d over 32 ms, %d over 128 ms\n", instance, count[name], name,
                    count[name] - under32[name], count[name] - under128[name]
            }
            if (batch["n"] > 0) printf "%s: %.1f messages per commit\n", instance, batch["sum"] / batch["n"]
        }' >&2 || true
done
cat "$LOAD_OUT"
