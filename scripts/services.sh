#!/usr/bin/env bash
# Starts the servers strata's tests and benchmarks talk to, on loopback: PostgreSQL (database
# `test`, trust auth), Redis, NATS with JetStream, and an S3-compatible object store (moto's
# server, from PyPI, in a virtualenv of its own). Each one already running is left alone; a
# missing one is installed first (Debian's packages; PyPI for moto). Developers and `.ci/run`
# use this same script. Prints the URLs the tests read (TEST_POSTGRES_URL, TEST_REDIS_URL,
# TEST_NATS_URL, TEST_S3_URL).
set -euo pipefail

log() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
# wait_for NAME CMD…: retries CMD for up to 30 s.
wait_for() {
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && { log "$name is up"; return 0; }; sleep 0.5; done
  log "$name did not come up"; return 1
}

ensure_postgres() {
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  # Local tests connect without a password, as on the development machines. The package may be
  # installed already with its default authentication, so this is checked every time.
  local hba changed=
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    if grep -Eq '^(host|local)\s+all\s+all\s+.*(md5|scram-sha-256|peer)$' "$hba"; then
      as_root sed -i -E 's/^(host|local)(\s+all\s+all\s+.*)\s(md5|scram-sha-256|peer)$/\1\2 trust/' "$hba"
      changed=1
    fi
  done
  local version
  version=$(ls /etc/postgresql | head -n1)
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if [ -n "$changed" ]; then as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload; fi
    log "PostgreSQL is up"
  else
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
  fi
  if ! psql -h 127.0.0.1 -U postgres -d test -tAc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null
  fi
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 ping 2>/dev/null | grep -q PONG; then log "Redis is up"; return; fi
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis sh -c 'redis-cli -h 127.0.0.1 ping | grep -q PONG'
}

ensure_nats() {
  if tcp_open 127.0.0.1 4222; then log "NATS is up"; return; fi
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { log "installing NATS"; apt_install nats-server; }
  log "starting NATS with JetStream"
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for NATS tcp_open 127.0.0.1 4222
}

# moto's S3 server: the object store's S3 backend is tested against it (a bucket per test). It
# keeps everything in memory, so a restart forgets every bucket; tests create their own.
MOTO_VERSION=5.2.6
moto_venv="${XDG_CACHE_HOME:-$HOME/.cache}/strata/moto"
ensure_moto() {
  if curl -fsS -o /dev/null http://127.0.0.1:5000/ 2>/dev/null; then log "moto (S3) is up"; return; fi
  if ! "$moto_venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      log "installing python3-venv"
      apt_install python3 python3-venv
    fi
    log "installing moto[server] $MOTO_VERSION into $moto_venv"
    rm -rf "$moto_venv"
    mkdir -p "$(dirname "$moto_venv")"
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  log "starting moto's S3 server"
  mkdir -p "$(dirname "$moto_venv")/log"
  # setsid: the server outlives this script and the shell that ran it.
  setsid "$moto_venv/bin/python" -m moto.server -H 127.0.0.1 -p 5000 \
    >>"$(dirname "$moto_venv")/log/moto.log" 2>&1 </dev/null &
  wait_for "moto (S3)" curl -fsS -o /dev/null http://127.0.0.1:5000/
}

command -v curl >/dev/null || apt_install curl
command -v pg_isready >/dev/null || apt_install postgresql-client
command -v redis-cli >/dev/null || apt_install redis-tools
ensure_postgres
ensure_redis
ensure_nats
ensure_moto

echo "TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
echo "TEST_REDIS_URL=redis://127.0.0.1:6379"
echo "TEST_NATS_URL=nats://127.0.0.1:4222"
echo "TEST_S3_URL=http://127.0.0.1:5000"
