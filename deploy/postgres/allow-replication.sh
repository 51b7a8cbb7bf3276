#!/bin/sh
# An init script of the postgres image (/docker-entrypoint-initdb.d, run once, when PGDATA is
# initialised): lets standbys connect for replication (pg_basebackup, then streaming), with
# the same authentication as every other connection from the network. The image's
# POSTGRES_HOST_AUTH_METHOD rule names the databases `all`, which in pg_hba.conf does not
# include the `replication` pseudo-database. Written for the official postgres image and for
# deploy/images' one alike; the image may source it, so it sets no shell options.
echo "host replication all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
