#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on this machine, for `--store postgresql://…` and its
# tests (the store's suite on the PostgreSQL backend, tests/postgres.rs). Debian's
# postgresql package; the cluster is initialised in a state directory and runs as the
# unprivileged `postgres` user, listening on the loopback interface only.
#
#   scripts/postgres.sh install   install postgresql when missing
#   scripts/postgres.sh start     install if needed, initdb (first time) and start
#   scripts/postgres.sh stop      stop the cluster and delete its state directory
#   scripts/postgres.sh status    exit 0 when the cluster answers
#   scripts/postgres.sh url       print the URL tests use (FLOW_TEST_POSTGRES)
#
# State: $FLOW_PG_DIR (default /tmp/flow-postgres); port $FLOW_PG_PORT (default 55432),
# role `flow` (trust authentication on loopback), database `flow`.
set -euo pipefail

STATE="${FLOW_PG_DIR:-/tmp/flow-postgres}"
PORT="${FLOW_PG_PORT:-55432}"
DATA="$STATE/data"
URL="postgresql://flow@127.0.0.1:$PORT/flow"

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "postgresql is not installed: run scripts/postgres.sh install"
  echo "$dir"
}

install_packages() {
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends postgresql
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

status() {
  "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PORT"
}

start() {
  install_packages
  if status; then
    echo "postgres.sh: a server already answers on 127.0.0.1:$PORT"
    return 0
  fi
  local bin
  bin=$(bindir)
  mkdir -p "$STATE"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale >"$STATE/initdb.log"
  fi
  # Loopback only, sockets in the state dir; fsync off: the cluster holds test data only.
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$STATE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $STATE -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$STATE/server.log" >&2; die "the server did not start (log above)"; }
  "$bin/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'CREATE ROLE flow LOGIN CREATEDB' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flow')\gexec
SELECT 'CREATE DATABASE flow OWNER flow' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'flow')\gexec
SQL
  echo "postgres.sh: PostgreSQL on $URL (state in $STATE)"
}

stop() {
  if [ -f "$DATA/postmaster.pid" ]; then
    as_owner "$(bindir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$URL" ;;
  *) die "usage: $0 install|start|stop|status|url" ;;
esac
