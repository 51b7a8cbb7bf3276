#!/usr/bin/env bash
# Start-up figures of the compose cluster (deploy/compose.yaml), from the host:
#   - the size of the strata image;
#   - time from `docker-compose up` to every strata instance answering /readyz (polled from
#     the host; Docker's own health status lags behind by up to its check interval);
#   - time from `docker start` of a stopped api (and chat) container to its /readyz answering
#     200, polled from the host over the container's bridge address every 5 ms, ROUNDS times;
#     `docker start` itself (the engine creating the container's namespaces and mounts) is
#     part of it, and reported alone as the start of a container that only prints a version.
# Brings the cluster up on a fresh project (volumes included) and removes it at the end.
#
#   deploy/test/startup.sh            # needs the images: deploy/images/build.sh, docker build
#
# Knobs: ROUNDS (5), PROJECT (strata-startup), CLUSTER_IMAGE (strata:dev), UP_TIMEOUT (180 s).
# The last line of output is one JSON object.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROUNDS=${ROUNDS:-5}
PROJECT=${PROJECT:-strata-startup}
UP_TIMEOUT=${UP_TIMEOUT:-180}
export CLUSTER_IMAGE=${CLUSTER_IMAGE:-strata:dev}
# Host ports of this run, away from a cluster a developer may have running.
export CLUSTER_PORT=${CLUSTER_PORT:-18580} CLUSTER_ADMIN_PORT=${CLUSTER_ADMIN_PORT:-18590}
export CLUSTER_PROMETHEUS_PORT=${CLUSTER_PROMETHEUS_PORT:-18591}

compose() { docker-compose -p "$PROJECT" -f "$ROOT/deploy/compose.yaml" "$@"; }
log() { printf '== %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

container() { compose ps -q "$1"; }
address() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" |
        awk '{print $1}'
}
# Milliseconds from `docker start SERVICE` until http://ADDR:PORT/readyz answers 200. The
# container and its address are looked up outside the timed loop (a `docker-compose` call
# alone takes longer than strata's start).
start_to_ready() {
    local service=$1 port=$2 id start ip=
    id=$(container "$service")
    docker stop -t 10 "$id" >/dev/null
    start=$(now_ms)
    docker start "$id" >/dev/null
    for _ in $(seq 1 3000); do
        [[ -n $ip ]] || ip=$(address "$id")
        if [[ -n $ip ]] && curl -fsS -m 0.2 -o /dev/null "http://$ip:$port/readyz" 2>/dev/null; then
            echo $(($(now_ms) - start))
            return
        fi
        sleep 0.005
    done
    log "$service never became ready"
    return 1
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

image_bytes=$(docker image inspect -f '{{.Size}}' "$CLUSTER_IMAGE")
cleanup
log "compose up"
start=$(now_ms)
compose up -d >/dev/null 2>&1
# Every strata instance and the port of its /readyz.
services=(gateway:9090 api-1:8101 api-2:8101 api-3:8101 chat-1:8201 chat-2:8201 worker-1:8301
    worker-2:8301)
urls=()
for entry in "${services[@]}"; do
    urls+=("http://$(address "$(container "${entry%%:*}")"):${entry##*:}/readyz")
done
deadline=$(( $(date +%s) + UP_TIMEOUT ))
all_ready() { local url; for url in "${urls[@]}"; do curl -fsS -m 0.5 -o /dev/null "$url" || return 1; done; }
until all_ready 2>/dev/null; do
    (( $(date +%s) < deadline )) || { log "not every instance became ready"; compose ps >&2; exit 1; }
    sleep 0.02
done
up_ms=$(( $(now_ms) - start ))
log "every strata instance ready after ${up_ms} ms"

api=() chat=()
for _ in $(seq 1 "$ROUNDS"); do
    api+=("$(start_to_ready api-1 8101)")
    chat+=("$(start_to_ready chat-1 8201)")
done
log "api start to ready (ms): ${api[*]}; chat: ${chat[*]}"
# The engine's share: a container of the same image that only prints the version.
bare=()
for _ in $(seq 1 "$ROUNDS"); do
    start=$(now_ms)
    docker run --rm "$CLUSTER_IMAGE" --version >/dev/null
    bare+=("$(( $(now_ms) - start ))")
done
log "bare container run (ms): ${bare[*]}"
bare_median=$(printf '%s\n' "${bare[@]}" | median)
api_median=$(printf '%s\n' "${api[@]}" | median)
chat_median=$(printf '%s\n' "${chat[@]}" | median)
printf '{"image_mb":%.1f,"compose_up_to_ready_ms":%d,"api_start_to_ready_ms":%d,"chat_start_to_ready_ms":%d,"bare_container_run_ms":%d,"rounds":%d}\n' \
    "$(echo "$image_bytes / 1000000" | bc -l)" "$up_ms" "$api_median" "$chat_median" \
    "$bare_median" "$ROUNDS"
