#!/usr/bin/env bash
# pg-cluster.sh COMMAND DIR [DATABASE]: a private PostgreSQL cluster in DIR, reachable only
# through the unix socket in DIR/sock (listen_addresses='').
#   init DIR            create the cluster (once)
#   start DIR / stop DIR
#   createdb DIR NAME   create the roles `payments` (owner: migrations) and `payments_app` (the app:
#                       DML only, granted by `payments migrate` with DATABASE_APP_ROLE), and
#                       database NAME owned by `payments` (once)
#   url DIR NAME [ROLE] print the DATABASE_URL of NAME for ROLE (default `payments`, the owner)
set -euo pipefail
source "$(dirname "$0")/common.sh"

cmd=${1:?usage: pg-cluster.sh init|start|stop|createdb|url DIR [NAME]}
dir=${2:?cluster directory required}
dir=$(realpath -m "$dir")
data=$dir/data
sock=$dir/sock

running() { as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }
psql_admin() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres -tA "$@"; }

case $cmd in
init)
    [ -f "$data/PG_VERSION" ] && exit 0
    mkdir -p "$dir"
    make_traversable "$dir"
    chmod 711 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_postgres mkdir -p "$sock"
    as_postgres "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_postgres tee -a "$data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$sock'
max_connections = 100
CONF
    ;;
start)
    running && exit 0
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 start >/dev/null \
        || { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
    ;;
stop)
    running || exit 0
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null
    ;;
createdb)
    name=${3:?database name required}
    for role in payments payments_app; do
        [ -n "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ] \
            || psql_admin -c "CREATE ROLE $role LOGIN"
    done
    [ -n "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" ] \
        || psql_admin -c "CREATE DATABASE \"$name\" OWNER payments"
    ;;
url)
    echo "postgresql:///${3:?database name required}?host=$sock&user=${4:-payments}"
    ;;
*)
    die "unknown command: $cmd"
    ;;
esac
