#!/usr/bin/env bash
# A local Ballista cluster on 127.0.0.1: one ebroker-scheduler and two ebroker-executors,
# each with its own work directory and log under $EBROKER_CLUSTER_DIR.
#
#   deploy/local/cluster.sh start    # builds the binaries if needed, starts, waits until 2 executors registered
#   deploy/local/cluster.sh status   # processes and the scheduler's view of executors
#   deploy/local/cluster.sh stop     # SIGTERM, then SIGKILL after 10 s
#
# Executors run with --memory-pool-size=0 so that ebroker's engine.memory_limit is their
# budget (any other value makes Ballista install its own pool, 70% of host memory by default).
# Failure detection is tuned for tests and demos: executors heartbeat every 3 s, a silent
# executor is declared dead after 10 s, and with no executor left running jobs fail after 10 s.
# Ports: scheduler 50050 (gRPC + REST API + /api/metrics); executor A 50051/50052/50053
# (flight, gRPC, health); executor B 50061/50062/50063. Use it with
# `ebroker --cluster df://127.0.0.1:50050 ...`.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${EBROKER_CLUSTER_DIR:-/tmp/ebroker-cluster}"
PORT="${EBROKER_SCHEDULER_PORT:-50050}"
BIN="${EBROKER_BIN_DIR:-}"

start_one() { # name, command...
  local name=$1; shift
  mkdir -p "$DIR/$name"
  if [ -f "$DIR/$name.pid" ] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$DIR/$name.pid"))"; return
  fi
  (cd "$DIR/$name" && exec setsid "$@" >"$DIR/$name.log" 2>&1) &
  echo $! >"$DIR/$name.pid"
  echo "started $name (pid $!, log $DIR/$name.log)"
}

executors_registered() {
  curl -sf "http://127.0.0.1:$PORT/api/executors" 2>/dev/null | grep -o '"id"' | wc -l
}

case "${1:-}" in
  start)
    if [ -z "$BIN" ]; then
      source deploy/local/build.sh
      BIN="$BIN_DIR"
    fi
    mkdir -p "$DIR"
    start_one scheduler "$BIN/ebroker-scheduler" --bind-host 127.0.0.1 --bind-port "$PORT" --external-host 127.0.0.1 \
      --executor-timeout-seconds 10 --expire-dead-executor-interval-seconds 2 --no-executors-grace-period-seconds 10
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/version" >/dev/null 2>&1 && break; sleep 0.1; done
    start_one exec-a "$BIN/ebroker-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
      --scheduler-host 127.0.0.1 --scheduler-port "$PORT" -p 50051 --bind-grpc-port 50052 --bind-health-port 50053 \
      -c 2 --id exec-a --work-dir "$DIR/exec-a" --executor-heartbeat-interval-seconds 3 --memory-pool-size=0
    start_one exec-b "$BIN/ebroker-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
      --scheduler-host 127.0.0.1 --scheduler-port "$PORT" -p 50061 --bind-grpc-port 50062 --bind-health-port 50063 \
      -c 2 --id exec-b --work-dir "$DIR/exec-b" --executor-heartbeat-interval-seconds 3 --memory-pool-size=0
    for _ in $(seq 200); do [ "$(executors_registered)" -ge 2 ] && break; sleep 0.1; done
    n="$(executors_registered)"
    if [ "$n" -lt 2 ]; then
      echo "only $n executors registered with the scheduler; logs in $DIR" >&2; tail -5 "$DIR"/*.log >&2; exit 1
    fi
    echo "cluster ready: df://127.0.0.1:$PORT with $n executors"
    ;;
  stop)
    for name in exec-a exec-b scheduler; do
      f="$DIR/$name.pid"; [ -f "$f" ] || continue
      pid="$(cat "$f")"
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stopped $name"
      fi
      rm -f "$f"
    done
    ;;
  status)
    for name in scheduler exec-a exec-b; do
      f="$DIR/$name.pid"
      if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: stopped"; fi
    done
    echo "executors registered: $(executors_registered)"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
