#!/usr/bin/env bash
# ClickHouse on 127.0.0.1 for tests and demos: Debian's clickhouse-server (18.16), installed
# with apt when missing, run with the project's own config (deploy/local/clickhouse/*.xml:
# loopback only, data under $EBROKER_CH_DIR, server time zone $EBROKER_CH_TIMEZONE (default
# UTC), LowCardinality allowed).
#
#   deploy/local/clickhouse.sh start    # installs if needed, starts, waits for /ping
#   deploy/local/clickhouse.sh status
#   deploy/local/clickhouse.sh stop     # SIGTERM, then SIGKILL after 10 s
#
# Use it with `EBROKER_CLICKHOUSE__URL=http://127.0.0.1:18123 ebroker publish clickhouse`.
# A second server beside it needs its own EBROKER_CH_DIR, EBROKER_CH_HTTP_PORT and
# EBROKER_CH_TCP_PORT; deploy/local/test.sh starts one with EBROKER_CH_TIMEZONE=America/New_York
# (a server west of UTC, where a zone-less DateTime would put D 00:00 UTC on the day before).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${EBROKER_CH_DIR:-/tmp/ebroker-clickhouse}"
HTTP_PORT="${EBROKER_CH_HTTP_PORT:-18123}"
TCP_PORT="${EBROKER_CH_TCP_PORT:-19000}"
SERVER="${EBROKER_CH_SERVER:-/usr/sbin/clickhouse-server}"
TIMEZONE="${EBROKER_CH_TIMEZONE:-UTC}"

install() {
  [ -x "$SERVER" ] && return
  echo "installing ClickHouse (Debian packages clickhouse-server clickhouse-client)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

ping() { curl -sf "http://127.0.0.1:$HTTP_PORT/ping" >/dev/null 2>&1; }

case "${1:-}" in
  start)
    install
    if [ -f "$DIR/server.pid" ] && kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
      echo "clickhouse already running (pid $(cat "$DIR/server.pid"))"; exit 0
    fi
    # data is kept across stop/start (tests restart the server mid-publish); use a fresh
    # EBROKER_CH_DIR for a clean server
    mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas"
    for f in config.xml users.xml; do
      sed -e "s|@DIR@|$DIR|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@TCP_PORT@|$TCP_PORT|g" \
        -e "s|@TIMEZONE@|$TIMEZONE|g" "$HERE/clickhouse/$f" >"$DIR/$f"
    done
    (cd "$DIR" && exec setsid "$SERVER" --config-file="$DIR/config.xml" >"$DIR/stdout.log" 2>&1) &
    echo $! >"$DIR/server.pid"
    for _ in $(seq 300); do ping && break; sleep 0.1; done
    if ! ping; then echo "clickhouse did not answer on 127.0.0.1:$HTTP_PORT; logs in $DIR" >&2; tail -20 "$DIR"/*.log >&2; exit 1; fi
    echo "clickhouse ready: http://127.0.0.1:$HTTP_PORT (time zone $TIMEZONE, pid $(cat "$DIR/server.pid"), logs $DIR)"
    ;;
  stop)
    f="$DIR/server.pid"; [ -f "$f" ] || exit 0
    pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"; echo "stopped clickhouse"
    ;;
  status)
    if ping; then echo "clickhouse running on 127.0.0.1:$HTTP_PORT"; else echo "clickhouse not running"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
