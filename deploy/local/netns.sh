#!/usr/bin/env bash
# A Ballista cluster across three test hosts on this machine: Linux network namespaces
# (iproute2's `ip netns`), each with a veth pair into a bridge in the root namespace and an
# address of its own, and a plain HDFS on the bridge address that every host reaches. The
# client (ebroker, the tests) stays in the root namespace and reaches the hosts through the
# bridge; all hosts share this machine's file system (the --input directory is one path).
#
#   deploy/local/netns.sh up       # network, HDFS, scheduler and executors; waits until 2 registered
#   deploy/local/netns.sh status   # namespaces, processes (and their namespace), executors, HDFS
#   deploy/local/netns.sh down     # stops everything, removes the namespaces, veths and bridge
#   . $EBROKER_NETNS_DIR/env       # EBROKER_TEST_NETNS, EBROKER_NETNS_DIR, EBROKER_TEST_HDFS_NETNS
#
# Topology (EBROKER_NETNS_SUBNET=10.77.0, a /24):
#   root namespace  bridge ebr0 10.77.0.1   HDFS: NameNode RPC :9000, HTTP :9001, 3 DataNodes
#   eb-sched        10.77.0.2               ebroker-scheduler :50050 (gRPC + REST API)
#   eb-exec1        10.77.0.3               ebroker-executor exec1 :50051/:50052/:50053
#   eb-exec2        10.77.0.4               ebroker-executor exec2 :50051/:50052/:50053
# Each namespace has lo up, eth0 (its end of the veth) and a default route via the bridge;
# nothing is forwarded beyond the bridge (no NAT, ip_forward untouched), and every server binds
# its own namespace address or loopback, never 0.0.0.0. Use it with
# `ebroker --cluster df://10.77.0.2:50050 --warehouse hdfs://10.77.0.1:9000/<dir> ...`.
#
# `up` is idempotent: it keeps what is healthy (network, HDFS, processes) and starts what is
# not (a killed executor is restarted, re-registering under its id); a half-built network is
# torn down and rebuilt (which restarts HDFS with a fresh file system). Failure detection as in
# deploy/local/cluster.sh: heartbeats every 3 s, an executor silent for 10 s is dead, jobs with
# no executor left fail after 10 s. Each process's pid (the binary itself, not `ip netns exec`)
# is in $EBROKER_NETNS_DIR/<scheduler|exec1|exec2>.pid, its log (appended) in <name>.log, the
# executors' work directories in <name>/.
#
# Settings: EBROKER_NETNS_DIR (/tmp/ebroker-netns), EBROKER_NETNS_SUBNET (10.77.0),
# EBROKER_NETNS_BRIDGE (ebr0), EBROKER_NETNS_HDFS (1; 0: no HDFS), EBROKER_NETNS_HDFS_PORT
# (9000), EBROKER_BIN_DIR (the binaries; default: build them with deploy/local/build.sh).
# The HDFS is deploy/local/hdfs.sh's plain variant with EBROKER_HDFS_HOST=<bridge address> and
# EBROKER_HDFS_DIR=$EBROKER_NETNS_DIR/hdfs; it runs beside a plain one on 127.0.0.1:9000.
# Executors inherit this script's environment (e.g. HADOOP_CONF_DIR); plain HDFS needs none.
# Needs root (namespaces, veths, bridge) and iproute2.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${EBROKER_NETNS_DIR:-/tmp/ebroker-netns}"
NET="${EBROKER_NETNS_SUBNET:-10.77.0}"
BRIDGE="${EBROKER_NETNS_BRIDGE:-ebr0}"
WITH_HDFS="${EBROKER_NETNS_HDFS:-1}"
HDFS_PORT="${EBROKER_NETNS_HDFS_PORT:-9000}"
BIN="${EBROKER_BIN_DIR:-}"
PORT=50050
GW="$NET.1"
SCHED_IP="$NET.2"
# name namespace address (the root-namespace end of its veth is veb-<name>, at most 15 bytes)
NODES=("scheduler eb-sched $NET.2" "exec1 eb-exec1 $NET.3" "exec2 eb-exec2 $NET.4")

hdfs() {
  EBROKER_HDFS_DIR="$DIR/hdfs" EBROKER_HDFS_HOST="$GW" EBROKER_HDFS_PLAIN_PORT="$HDFS_PORT" deploy/local/hdfs.sh "$@"
}
short() { case "$1" in scheduler) echo sched ;; *) echo "$1" ;; esac; }
ns_exists() { [ -e "/run/netns/$1" ]; }

# --- the network --------------------------------------------------------------------------
net_ok() {
  ip -br addr show dev "$BRIDGE" 2>/dev/null | grep -q " $GW/24" || return 1
  local name ns ip
  for node in "${NODES[@]}"; do
    read -r name ns ip <<<"$node"
    ns_exists "$ns" || return 1
    ip -n "$ns" -br addr show dev eth0 2>/dev/null | grep -q "UP .*$ip/24" || return 1
    ip -br link show dev "veb-$(short "$name")" 2>/dev/null | grep -q " UP " || return 1
  done
}

net_down() {
  local name ns ip pid
  for node in "${NODES[@]}"; do
    read -r name ns ip <<<"$node"
    if ns_exists "$ns"; then
      # whatever still runs in our namespace (only this script starts processes there)
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
    ip link del "veb-$(short "$name")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

net_up() {
  net_down
  ip link add "$BRIDGE" type bridge
  ip addr add "$GW/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local name ns ip veth
  for node in "${NODES[@]}"; do
    read -r name ns ip <<<"$node"
    veth="veb-$(short "$name")"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "${veth}-p"
    ip link set "${veth}-p" netns "$ns"
    ip -n "$ns" link set "${veth}-p" name eth0
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GW"
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
  done
  echo "network: bridge $BRIDGE $GW/24; $(for n in "${NODES[@]}"; do read -r _ ns ip <<<"$n"; printf '%s %s  ' "$ns" "$ip"; done)"
}

# --- the processes ------------------------------------------------------------------------
# The pid in <name>.pid if that process is alive and is one of our binaries (not a reused pid).
live_pid() {
  local f="$DIR/$1.pid" pid exe
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  case "$exe" in */ebroker-scheduler | */ebroker-executor) echo "$pid" ;; *) return 1 ;; esac
}

start_one() { # name namespace command...
  local name=$1 ns=$2; shift 2
  local pid
  mkdir -p "$DIR/$name"
  if pid="$(live_pid "$name")"; then
    echo "$name already running in $ns (pid $pid)"; return
  fi
  echo "== $(date -u +%FT%TZ) started in $ns: $*" >>"$DIR/$name.log"
  # setsid (not a group leader here: no fork) and `ip netns exec` both exec: $! is the binary.
  (cd "$DIR/$name" && exec setsid ip netns exec "$ns" "$@" </dev/null >>"$DIR/$name.log" 2>&1) &
  pid=$!
  echo "$pid" >"$DIR/$name.pid"
  local want; want="$(readlink -f "$1")"
  for _ in $(seq 50); do [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$want" ] && break; sleep 0.1; done
  if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$want" ]; then
    echo "$name: pid $pid is not $want; log $DIR/$name.log" >&2; tail -5 "$DIR/$name.log" >&2; exit 1
  fi
  echo "started $name in $ns (pid $pid, log $DIR/$name.log)"
}

stop_one() {
  local name=$1 pid
  if pid="$(live_pid "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    echo "stopped $name"
  fi
  rm -f "$DIR/$name.pid"
}

api() { curl -sf --max-time 5 "http://$SCHED_IP:$PORT/api/$1" 2>/dev/null; }
executors_registered() { api executors | grep -o '"id"' | wc -l; }

write_env() {
  {
    echo "# written by deploy/local/netns.sh up; source it"
    echo "export EBROKER_TEST_NETNS=df://$SCHED_IP:$PORT"
    echo "export EBROKER_NETNS_DIR=$DIR"
    [ "$WITH_HDFS" = 0 ] || echo "export EBROKER_TEST_HDFS_NETNS=hdfs://$GW:$HDFS_PORT"
  } >"$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
}

case "${1:-}" in
  up)
    [ "$(id -u)" = 0 ] || { echo "netns.sh needs root (ip netns, veth, bridge)" >&2; exit 1; }
    if [ -z "$BIN" ]; then
      source deploy/local/build.sh
      BIN="$BIN_DIR"
    fi
    mkdir -p "$DIR"
    if ! net_ok; then
      # a half setup: nothing of it can be trusted (servers bound to vanished addresses)
      for name in exec1 exec2 scheduler; do stop_one "$name"; done
      [ "$WITH_HDFS" = 0 ] || hdfs stop plain >/dev/null 2>&1 || true
      net_up
    fi
    [ "$WITH_HDFS" = 0 ] || hdfs start plain
    start_one scheduler eb-sched "$BIN/ebroker-scheduler" --bind-host "$SCHED_IP" --bind-port "$PORT" \
      --external-host "$SCHED_IP" \
      --executor-timeout-seconds 10 --expire-dead-executor-interval-seconds 2 --no-executors-grace-period-seconds 10
    for _ in $(seq 100); do api version >/dev/null && break; sleep 0.1; done
    for node in "${NODES[@]:1}"; do
      read -r name ns ip <<<"$node"
      start_one "$name" "$ns" "$BIN/ebroker-executor" --bind-host "$ip" --external-host "$ip" \
        --scheduler-host "$SCHED_IP" --scheduler-port "$PORT" -p 50051 --bind-grpc-port 50052 --bind-health-port 50053 \
        -c 2 --id "$name" --work-dir "$DIR/$name" --executor-heartbeat-interval-seconds 3
    done
    for _ in $(seq 200); do [ "$(executors_registered)" -ge 2 ] && break; sleep 0.1; done
    n="$(executors_registered)"
    if [ "$n" -lt 2 ]; then
      echo "only $n executors registered with the scheduler at $SCHED_IP:$PORT; logs in $DIR" >&2
      tail -5 "$DIR"/*.log >&2; exit 1
    fi
    write_env
    echo "cluster ready across network namespaces: df://$SCHED_IP:$PORT with $n executors"
    [ "$WITH_HDFS" = 0 ] || echo "warehouse HDFS reachable from every host: hdfs://$GW:$HDFS_PORT"
    echo "environment: . $DIR/env"
    ;;
  down)
    for name in exec1 exec2 scheduler; do stop_one "$name"; done
    [ "$WITH_HDFS" = 0 ] || hdfs stop plain || true
    net_down
    rm -f "$DIR/env"
    echo "removed namespaces eb-sched eb-exec1 eb-exec2 and bridge $BRIDGE (logs kept in $DIR)"
    ;;
  status)
    if net_ok; then echo "network: up (bridge $BRIDGE $GW/24)"; else echo "network: down or incomplete"; fi
    for node in "${NODES[@]}"; do
      read -r name ns ip <<<"$node"
      if pid="$(live_pid "$name")"; then
        echo "$name: running (pid $pid, namespace $(ip netns identify "$pid" 2>/dev/null || echo '?'), $ip)"
      else
        echo "$name: stopped"
      fi
    done
    echo "executors registered: $(executors_registered)"
    [ "$WITH_HDFS" = 0 ] || hdfs status plain || true
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
