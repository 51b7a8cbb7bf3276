#!/bin/bash
# Initialises an empty PGDATA the way the official image does (the subset strata uses), then
# runs the command (`postgres …`): initdb with POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_DB created, and the scripts of
# /docker-entrypoint-initdb.d run once against a server that listens on its socket only
# (`*.sh` executed when executable and sourced otherwise, `*.sql` through psql).
set -euo pipefail
shopt -s nullglob
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
    echo "host all all all $method" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    database=${POSTGRES_DB:-$user}
    scripts=(/docker-entrypoint-initdb.d/*)
    if [[ $database != "$user" || ${#scripts[@]} -gt 0 ]]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        if [[ $database != "$user" ]]; then
            psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres \
                -c "CREATE DATABASE \"$database\"" >/dev/null
        fi
        for script in "${scripts[@]}"; do
            case $script in
                *.sh)
                    echo "running $script" >&2
                    if [[ -x $script ]]; then "$script"; else . "$script"; fi
                    ;;
                *.sql)
                    echo "running $script" >&2
                    psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$database" \
                        -f "$script" >/dev/null
                    ;;
                *) echo "ignoring $script" >&2 ;;
            esac
        done
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
fi
exec "$@"
