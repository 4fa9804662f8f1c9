#!/usr/bin/env bash
# PostgreSQL 15 on 127.0.0.1, the tests' stand-in for Greenplum (Greenplum and PXF cannot be
# installed here): Debian's `postgresql` package, installed with apt when missing, and a
# throw-away cluster under $EBROKER_PG_DIR (initdb as the postgres user, trust auth).
#
#   deploy/local/postgres.sh start    # installs if needed, initdb, starts, waits until ready
#   deploy/local/postgres.sh status
#   deploy/local/postgres.sh stop
#
# Use it with `GPHOST=127.0.0.1 GPPORT=55432 GPUSER=postgres ebroker publish greenplum`.
set -euo pipefail
DIR="${EBROKER_PG_DIR:-/tmp/ebroker-pg}"
PORT="${EBROKER_PG_PORT:-55432}"
PGBIN="${EBROKER_PG_BIN:-/usr/lib/postgresql/15/bin}"

install() {
  [ -x "$PGBIN/initdb" ] && return
  echo "installing PostgreSQL 15 (Debian package postgresql)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    install
    if [ -f "$DIR/data/postmaster.pid" ] && as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      echo "postgres already running on 127.0.0.1:$PORT"; exit 0
    fi
    rm -rf "$DIR"; mkdir -p "$DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres "$DIR"
    as_postgres "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
    as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
    echo "postgres ready: 127.0.0.1:$PORT (user postgres, trust auth, data $DIR/data)"
    ;;
  stop)
    [ -d "$DIR/data" ] || exit 0
    as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    echo "stopped postgres"
    ;;
  status)
    as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" status
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
