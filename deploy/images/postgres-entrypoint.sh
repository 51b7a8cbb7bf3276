#!/bin/bash
# Initialises an empty PGDATA the way the official image does (the subset strata uses), then
# runs the command (`postgres …`).
set -euo pipefail
if [[ ${1:-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
    user=${POSTGRES_USER:-postgres}
    method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    if [[ -z ${POSTGRES_PASSWORD:-} && $method != trust ]]; then
        echo "POSTGRES_PASSWORD is required unless POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host="$method" \
        -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    {
        echo "host all all all $method"
        echo "host replication all all $method"
    } >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [[ -n ${POSTGRES_DB:-} && $POSTGRES_DB != "$user" ]]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
fi
exec "$@"
