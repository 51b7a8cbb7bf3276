#!/bin/bash
# The entry point of a PostgreSQL hot standby, for the official postgres image and for
# deploy/images' one alike (run it as the postgres user). On first start, with an empty PGDATA,
# it waits for the primary to accept connections and clones it with pg_basebackup, streaming
# the WAL written meanwhile (-X stream) and writing the standby settings (-R: standby.signal
# and primary_conninfo); on every start it then runs `postgres ARGS`, which replays what the
# primary streams and answers read-only queries.
#
# PRIMARY_HOST (postgres) and PRIMARY_USER (postgres) name the primary; the primary must allow
# replication connections from here (allow-replication.sh). A standby needs max_connections
# (and the other limits) at least as high as the primary's: pass the same values as ARGS.
set -euo pipefail
primary=${PRIMARY_HOST:-postgres}
user=${PRIMARY_USER:-postgres}
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    until pg_isready -q -h "$primary" -U "$user"; do
        echo "replica: waiting for the primary at $primary" >&2
        sleep 1
    done
    echo "replica: cloning $primary into $PGDATA" >&2
    pg_basebackup -h "$primary" -U "$user" -D "$PGDATA" -R -X stream --checkpoint=fast
    # The data directory may come from a volume with looser permissions; postgres wants 0700.
    chmod 0700 "$PGDATA"
fi
exec postgres "$@"
