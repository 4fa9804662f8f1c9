#!/usr/bin/env bash
# A real HDFS on 127.0.0.1 for tests: Hadoop 3.4.1's MiniDFSCluster (NameNodes and DataNodes in
# one JVM) and, for the secure variant, a MiniKdc, run by deploy/local/hdfs/ (a pom and a Main
# adapted from the hdfs-native crate's test harness). Two variants, which can run at once:
#
#   plain      one NameNode (RPC 127.0.0.1:9000, HTTP :9001), 3 DataNodes, no security:
#              hdfs://127.0.0.1:9000
#   secure-ha  Kerberos (MiniKdc, realm EXAMPLE.COM, KDC on an ephemeral UDP port) and HA: name
#              service minidfs-ns of nn0 (RPC :9010, HTTP :9011, standby) and nn1 (RPC :9012,
#              HTTP :9013, active), 3 DataNodes, SASL on RPC and data transfer:
#              hdfs://minidfs-ns
#
#   deploy/local/hdfs.sh start [plain|secure-ha]    # default plain; builds on first use, waits
#                                                   # until the NameNodes and DataNodes answer
#   deploy/local/hdfs.sh status [plain|secure-ha|all]
#   deploy/local/hdfs.sh stop [plain|secure-ha|all]   # default all; SIGTERM, SIGKILL after 20 s
#   deploy/local/hdfs.sh dfs plain|secure-ha|all -ls /  # the Java FsShell with that conf dir
#   deploy/local/hdfs.sh build                      # (re)build deploy/local/hdfs/target
#
# Every start formats a fresh cluster (and a fresh KDC and keytab) under
# $EBROKER_HDFS_DIR/<variant>/ (default /tmp/ebroker-hdfs): conf/ (core-site.xml, hdfs-site.xml
# for a client), env, minidfs.log, pid, data/, minidfs-full.xml and, for secure-ha, hdfs.keytab,
# krb5.conf, kdc/. Use it with
#
#   . /tmp/ebroker-hdfs/plain/env        # EBROKER_TEST_HDFS, HADOOP_CONF_DIR
#   . /tmp/ebroker-hdfs/secure-ha/env    # EBROKER_TEST_HDFS_SECURE, HADOOP_CONF_DIR, KRB5_CONFIG,
#                                        # EBROKER_TEST_HDFS_KEYTAB, EBROKER_TEST_HDFS_PRINCIPAL
#   export KRB5CCNAME=FILE:$(mktemp -u) && kinit -kt "$EBROKER_TEST_HDFS_KEYTAB" "$EBROKER_TEST_HDFS_PRINCIPAL"
#
# or, with both running, /tmp/ebroker-hdfs/env and the combined conf dir /tmp/ebroker-hdfs/conf:
# secure-ha's conf plus ipc.client.fallback-to-simple-auth-allowed, which serves both clusters
# (the plain one is addressed by host:port, answers SIMPLE and hands out no block tokens).
#
# Settings: EBROKER_HDFS_PLAIN_PORT (9000), EBROKER_HDFS_SECURE_PORT (9010; NameNode i uses
# base+2i for RPC and base+2i+1 for HTTP), EBROKER_HDFS_DATANODES (3),
# EBROKER_HDFS_PROTECTION (authentication | integrity | privacy: hadoop.rpc.protection and
# dfs.data.transfer.protection of secure-ha), EBROKER_HDFS_FEATURES (more features of
# deploy/local/hdfs/src/main/java/main/Main.java for secure-ha, e.g. "token" or "observer"),
# EBROKER_HDFS_JAVA_OPTS (-Xmx512m ...), EBROKER_HDFS_TIMEOUT (180 s),
# EBROKER_HDFS_HOST (127.0.0.1): another local address for the plain cluster — its NameNode
# (RPC and HTTP) and DataNodes bind and advertise that address instead of 127.0.0.1, e.g. the
# bridge 10.77.0.1 that the network namespaces of deploy/local/netns.sh reach (secure-ha
# stays on 127.0.0.1). Use its own EBROKER_HDFS_DIR to run it beside a plain one on 127.0.0.1.
# Needs Java 17 and Maven (Maven Central on first use); installs krb5-user (kinit) if missing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)/hdfs"
ROOT="${EBROKER_HDFS_DIR:-/tmp/ebroker-hdfs}"
TARGET="$HERE/target"
CLASSPATH_FILE="$TARGET/classpath.txt"
DATANODES="${EBROKER_HDFS_DATANODES:-3}"
TIMEOUT="${EBROKER_HDFS_TIMEOUT:-180}"
PROTECTION="${EBROKER_HDFS_PROTECTION:-authentication}"
HOST="${EBROKER_HDFS_HOST:-127.0.0.1}"
JAVA_OPTS="${EBROKER_HDFS_JAVA_OPTS:--Xms64m -Xmx512m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:MaxMetaspaceSize=256m}"
# Hadoop 3.4 reaches into JDK internals (Kerberos config, direct buffers) on Java 17.
JAVA_MODULE_OPTS=(
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports=java.base/sun.net.dns=ALL-UNNAMED --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED
)

port_base() {
  case "$1" in
    plain) echo "${EBROKER_HDFS_PLAIN_PORT:-9000}" ;;
    secure-ha) echo "${EBROKER_HDFS_SECURE_PORT:-9010}" ;;
  esac
}
namenodes() { # number of NameNodes of a variant
  case "$1" in
    plain) echo 1 ;;
    secure-ha) case " ${EBROKER_HDFS_FEATURES:-} " in *" observer "*) echo 3 ;; *) echo 2 ;; esac ;;
  esac
}
features() {
  case "$1" in
    plain) echo "" ;;
    secure-ha)
      local f="security ha"
      [ "$PROTECTION" = authentication ] || f="$f $PROTECTION"
      echo "$f ${EBROKER_HDFS_FEATURES:-}" ;;
  esac
}
check_variant() {
  case "$1" in plain|secure-ha) ;; *) echo "unknown variant '$1' (plain or secure-ha)" >&2; exit 2 ;; esac
  if [ "$1" = secure-ha ] && [ "$HOST" != 127.0.0.1 ]; then
    echo "EBROKER_HDFS_HOST=$HOST is for the plain variant only (secure-ha runs on 127.0.0.1)" >&2; exit 2
  fi
}
# --host for main.Main, only when not the default (the command line stays as it was).
host_args() { [ "$HOST" = 127.0.0.1 ] || echo "--host $HOST"; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
running() { local f="$ROOT/$1/pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

build() {
  command -v mvn >/dev/null || { echo "mvn is needed to build $HERE" >&2; exit 1; }
  echo "building $HERE (Maven; the first build downloads Hadoop 3.4.1 and the Maven plugins, ~220 MB, into ~/.m2)"
  mkdir -p "$TARGET"
  if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" compile dependency:build-classpath \
    -Dmdep.outputFile="$CLASSPATH_FILE" >"$TARGET/build.log" 2>&1; then
    rm -f "$CLASSPATH_FILE"; cat "$TARGET/build.log" >&2; echo "the build of $HERE failed" >&2; exit 1
  fi
  touch "$CLASSPATH_FILE" # the stamp: Maven leaves an unchanged classpath file alone
}
ensure_built() {
  local cls="$TARGET/classes/main/Main.class"
  if [ ! -f "$cls" ] || [ ! -s "$CLASSPATH_FILE" ] \
    || [ -n "$(find "$HERE/pom.xml" "$HERE/src" -newer "$CLASSPATH_FILE" -print -quit)" ]; then
    build
  fi
}
java_cp() { echo "$TARGET/classes:$(cat "$CLASSPATH_FILE")"; }

ensure_kinit() {
  command -v kinit >/dev/null && command -v kdestroy >/dev/null && command -v klist >/dev/null && return
  echo "installing krb5-user (kinit, klist, kdestroy)"
  mkdir -p "$ROOT"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q krb5-user >"$ROOT/apt.log" 2>&1; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q krb5-user; } >>"$ROOT/apt.log" 2>&1 \
      || { tail -20 "$ROOT/apt.log" >&2; echo "could not install krb5-user (log $ROOT/apt.log)" >&2; exit 1; }
  fi
}

# "<state> <live datanodes>" of the NameNode with this HTTP port: active or standby from its
# /isActive servlet (200 or 405; an observer also answers 405); the DataNode count from JMX,
# which is JVM-wide (all NameNodes of a MiniDFSCluster share one MBean server, so the JMX HA
# state cannot tell them apart).
nn_state() {
  local code state jmx live
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$1/isActive" 2>/dev/null)" || true
  case "$code" in 200) state=active ;; 405) state=standby ;; *) return 1 ;; esac
  jmx="$(curl -sf --max-time 5 "http://$HOST:$1/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState*" 2>/dev/null)" || return 1
  live="$(grep -o '"NumLiveDataNodes" *: *[0-9]*' <<<"$jmx" | grep -o '[0-9]*$' | sort -n | tail -1)"
  echo "$state ${live:-?}"
}

fail_start() { # message
  local dir="$ROOT/$VARIANT"
  echo "hdfs $VARIANT: $1; log: $dir/minidfs.log" >&2
  tail -40 "$dir/minidfs.log" >&2 || true
  [ -n "${EBROKER_HDFS_KEEP_FAILED:-}" ] || stop_one "$VARIANT" >/dev/null 2>&1 || true
  exit 1
}

start_one() {
  VARIANT="$1"
  local dir="$ROOT/$VARIANT" base nns
  base="$(port_base "$VARIANT")"; nns="$(namenodes "$VARIANT")"
  if running "$VARIANT"; then
    echo "hdfs $VARIANT already running (pid $(cat "$dir/pid")); env: $dir/env"; return
  fi
  ensure_built
  [ "$VARIANT" = secure-ha ] && ensure_kinit
  for ((i = 0; i < 2 * nns; i++)); do
    if port_open $((base + i)); then
      echo "hdfs $VARIANT: port $HOST:$((base + i)) is in use (NameNode ports are $base..$((base + 2 * nns - 1)))" >&2
      exit 1
    fi
  done
  mkdir -p "$dir"
  rm -rf "$dir/data" "$dir/kdc" "$dir/conf" "$dir/env" "$dir/hdfs.keytab" "$dir/krb5.conf" "$dir/delegation_token"
  [ -f "$dir/minidfs.log" ] && mv -f "$dir/minidfs.log" "$dir/minidfs.log.1"
  local cp; cp="$(java_cp)"
  # shellcheck disable=SC2086,SC2046
  (cd "$dir" && exec setsid java $JAVA_OPTS "${JAVA_MODULE_OPTS[@]}" -Dhadoop.log.dir="$dir" \
    -cp "$cp" main.Main --dir "$dir" --port-base "$base" --datanodes "$DATANODES" --service \
    $(host_args) $(features "$VARIANT") </dev/null >"$dir/minidfs.log" 2>&1) &
  echo $! >"$dir/pid"
  local t0=$SECONDS
  until grep -q '^Ready!$' "$dir/minidfs.log" 2>/dev/null; do
    running "$VARIANT" || fail_start "the JVM exited before it was ready"
    ((SECONDS - t0 < TIMEOUT)) || fail_start "not ready after ${TIMEOUT}s"
    sleep 0.5
  done
  [ -s "$dir/env" ] || fail_start "no env file was written"
  # The check: every NameNode answers RPC and JMX, one is active and sees all DataNodes.
  local active=0 st
  for ((i = 0; i < nns; i++)); do
    port_open $((base + 2 * i)) || fail_start "NameNode $i does not answer on $HOST:$((base + 2 * i))"
    st="$(nn_state $((base + 2 * i + 1)))" || fail_start "NameNode $i: no JMX on $HOST:$((base + 2 * i + 1))"
    if [ "${st% *}" = active ]; then
      active=$((active + 1))
      [ "${st#* }" = "$DATANODES" ] || fail_start "the active NameNode sees ${st#* } live DataNodes, not $DATANODES"
    fi
  done
  [ "$active" = 1 ] || fail_start "$active active NameNodes"
  if [ "$VARIANT" = secure-ha ]; then
    # The KDC hands out a ticket for the keytab's principal (a throwaway cache).
    local cc; cc="$(mktemp -u /tmp/ebroker-hdfs-check.XXXXXX)"
    (
      # shellcheck disable=SC1091
      . "$dir/env"
      KRB5CCNAME="FILE:$cc" kinit -kt "$EBROKER_TEST_HDFS_KEYTAB" "$EBROKER_TEST_HDFS_PRINCIPAL" \
        && KRB5CCNAME="FILE:$cc" kdestroy >/dev/null 2>&1
    ) || fail_start "kinit against the MiniKdc failed"
  fi
  write_combined
  echo "hdfs $VARIANT ready in $((SECONDS - t0))s (pid $(cat "$dir/pid"), log $dir/minidfs.log): . $dir/env"
  sed -n 's/^export /  /p' "$dir/env"
}

# $ROOT/conf + $ROOT/env for a client of both variants, when both run.
write_combined() {
  running plain && running secure-ha && [ -s "$ROOT/plain/env" ] && [ -s "$ROOT/secure-ha/env" ] || return 0
  rm -rf "$ROOT/conf.tmp"; mkdir -p "$ROOT/conf.tmp"
  cp "$ROOT/secure-ha/conf/hdfs-site.xml" "$ROOT/conf.tmp/"
  sed 's#</configuration>#  <property><name>ipc.client.fallback-to-simple-auth-allowed</name><value>true</value></property>\n</configuration>#' \
    "$ROOT/secure-ha/conf/core-site.xml" >"$ROOT/conf.tmp/core-site.xml"
  rm -rf "$ROOT/conf"; mv "$ROOT/conf.tmp" "$ROOT/conf"
  {
    echo "# written by deploy/local/hdfs.sh: both variants, one conf dir; source it"
    grep '^export EBROKER_TEST_HDFS=' "$ROOT/plain/env"
    grep -v '^#\|^export HADOOP_CONF_DIR=' "$ROOT/secure-ha/env"
    echo "export HADOOP_CONF_DIR=$ROOT/conf"
  } >"$ROOT/env.tmp"
  mv -f "$ROOT/env.tmp" "$ROOT/env"
  echo "both variants run: combined client env $ROOT/env (conf dir $ROOT/conf)"
}

stop_one() {
  local dir="$ROOT/$1" f="$ROOT/$1/pid"
  [ -f "$f" ] || { echo "hdfs $1 not running"; return 0; }
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "hdfs $1 (pid $pid) ignored SIGTERM for 20 s: SIGKILL" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f" "$ROOT/env"; rm -rf "$ROOT/conf"
  echo "stopped hdfs $1 (data and log kept in $dir)"
}

status_one() {
  local v="$1" dir="$ROOT/$1" base nns
  base="$(port_base "$v")"; nns="$(namenodes "$v")"
  if ! running "$v"; then echo "hdfs $v not running"; return 1; fi
  local rss; rss="$(awk '/^VmRSS/ {print int($2 / 1024) " MiB"}' "/proc/$(cat "$dir/pid")/status" 2>/dev/null || echo "?")"
  echo "hdfs $v running (pid $(cat "$dir/pid"), RSS $rss): $(grep -o 'EBROKER_TEST_HDFS[A-Z_]*=[^ ]*://[^ ]*' "$dir/env" | cut -d= -f2 | head -1), env $dir/env"
  for ((i = 0; i < nns; i++)); do
    echo "  nn$i rpc $HOST:$((base + 2 * i)) http :$((base + 2 * i + 1)): $(nn_state $((base + 2 * i + 1)) | awk '{print $1 ", " $2 " live DataNodes"}' || echo "no answer")"
  done
}

variants() { # plain|secure-ha|all -> list
  case "${1:-all}" in
    all) if [ "$HOST" = 127.0.0.1 ]; then echo "plain secure-ha"; else echo plain; fi ;;
    *) check_variant "$1"; echo "$1" ;;
  esac
}

cmd="${1:-}"; shift || true
case "$cmd" in
  start)
    v="${1:-plain}"; check_variant "$v"; mkdir -p "$ROOT"; start_one "$v" ;;
  stop)
    for v in $(variants "${1:-all}"); do stop_one "$v"; done ;;
  status)
    rc=0; for v in $(variants "${1:-all}"); do status_one "$v" || rc=1; done; exit $rc ;;
  build)
    build; echo "built: $TARGET/classes, classpath in $CLASSPATH_FILE" ;;
  dfs)
    # The Hadoop FsShell (hdfs dfs) as a client of a variant (or "all": the combined conf);
    # for secure-ha it uses the Kerberos ticket cache of $KRB5CCNAME (kinit first).
    v="${1:-}"; shift || true
    case "$v" in all) d="$ROOT" ;; plain|secure-ha) d="$ROOT/$v" ;; *) echo "usage: $0 dfs plain|secure-ha|all <FsShell args>" >&2; exit 2 ;; esac
    [ -s "$d/env" ] || { echo "no $d/env: start the variant first" >&2; exit 1; }
    ensure_built
    # shellcheck disable=SC1091
    . "$d/env"
    # shellcheck disable=SC2086
    exec java -Xmx256m -XX:TieredStopAtLevel=1 "${JAVA_MODULE_OPTS[@]}" ${HADOOP_OPTS:-} \
      -Dlog4j.configuration=log4j-client.properties -cp "$HADOOP_CONF_DIR:$(java_cp)" org.apache.hadoop.fs.FsShell "$@" ;;
  *) echo "usage: $0 start [plain|secure-ha] | stop [plain|secure-ha|all] | status [plain|secure-ha|all] | dfs <variant> <args> | build" >&2; exit 2 ;;
esac
