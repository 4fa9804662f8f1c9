#!/usr/bin/env bash
# A Kafka-protocol broker on 127.0.0.1 for tests and demos: noida-db 0.2.3 (Rust, from PyPI;
# there is no Apache Kafka package on this machine), installed into a virtualenv under
# ~/.cache/ebroker/venv on first use, with a fresh data directory under $EBROKER_KAFKA_DIR.
#
#   deploy/local/kafka.sh start    # installs if needed, starts, waits until the port answers
#   deploy/local/kafka.sh status
#   deploy/local/kafka.sh stop     # SIGTERM, then SIGKILL after 10 s
#
# Use it with `EBROKER_KAFKA__BROKERS=127.0.0.1:9092 ebroker produce ...`.
# Known difference from Apache Kafka: an offset commit during a consumer-group rebalance is
# rejected (ebroker's ingest assigns partitions itself, so it never rebalances).
set -euo pipefail
DIR="${EBROKER_KAFKA_DIR:-/tmp/ebroker-kafka}"
PORT="${EBROKER_KAFKA_PORT:-9092}"
VENV="${EBROKER_VENV:-$HOME/.cache/ebroker/venv}"
VERSION=0.2.3

broker_binary() {
  "$VENV/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))'
}

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/pip" show noida-db 2>/dev/null | grep -q "^Version: $VERSION$"; then
    return
  fi
  echo "installing noida-db $VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "noida-db==$VERSION"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

case "${1:-}" in
  start)
    install
    if [ -f "$DIR/broker.pid" ] && kill -0 "$(cat "$DIR/broker.pid")" 2>/dev/null; then
      echo "broker already running (pid $(cat "$DIR/broker.pid"))"; exit 0
    fi
    rm -rf "$DIR/data"; mkdir -p "$DIR/data"
    bin="$(broker_binary)"
    chmod +x "$bin"
    (exec setsid "$bin" start --only kafka --host 127.0.0.1 --kafka-port "$PORT" --data-dir "$DIR/data" >"$DIR/broker.log" 2>&1) &
    echo $! >"$DIR/broker.pid"
    for _ in $(seq 100); do port_open && break; sleep 0.1; done
    if ! port_open; then echo "the broker did not open 127.0.0.1:$PORT; log: $DIR/broker.log" >&2; tail -20 "$DIR/broker.log" >&2; exit 1; fi
    echo "kafka ready: 127.0.0.1:$PORT (pid $(cat "$DIR/broker.pid"), log $DIR/broker.log)"
    ;;
  stop)
    f="$DIR/broker.pid"; [ -f "$f" ] || exit 0
    pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"; echo "stopped broker"
    ;;
  status)
    if [ -f "$DIR/broker.pid" ] && kill -0 "$(cat "$DIR/broker.pid")" 2>/dev/null; then
      echo "broker running (pid $(cat "$DIR/broker.pid")) on 127.0.0.1:$PORT"
    else
      echo "broker not running"; exit 1
    fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
