#!/usr/bin/env bash
# Apache Kafka 4.4.0 on 127.0.0.1 for tests and demos: one KRaft node that is both broker and
# controller (no ZooKeeper, no Docker), run straight from the Maven Central jars. On first use
# `mvn dependency:copy-dependencies` on deploy/local/kafka/pom.xml copies the jars (kafka_2.13,
# kafka-tools, log4j2 for slf4j; ~55 MB) into ~/.cache/ebroker/kafka-4.4.0/libs; the stamp
# file .installed, written last, marks a complete copy. Needs java (17+) and mvn (installed
# with apt when missing).
# $EBROKER_KAFKA_DIR holds server.properties, the log4j2 configs, data/ (log.dirs and the
# KRaft metadata log), broker.log and broker.pid.
#
#   deploy/local/kafka.sh start     # installs if needed, wipes data/, formats, starts, waits
#                                   # until the broker answers a Metadata request (<= 60 s)
#   deploy/local/kafka.sh restart   # stop + start on the SAME data (topics, offsets survive)
#   deploy/local/kafka.sh status
#   deploy/local/kafka.sh stop      # SIGTERM, then SIGKILL after 20 s
#   deploy/local/kafka.sh topic-create NAME PARTITIONS           # replication factor 1
#   deploy/local/kafka.sh delete-records TOPIC PARTITION OFFSET  # drop records below OFFSET,
#                                   # as retention would (Kafka's DeleteRecords)
#   deploy/local/kafka.sh tool CLASS ARGS...  # any Kafka tool on the same classpath, e.g.
#       tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:9092 --topic t
#
# Environment: EBROKER_KAFKA_DIR (default /tmp/ebroker-kafka), EBROKER_KAFKA_PORT (9092, the
# client listener), EBROKER_KAFKA_CONTROLLER_PORT (9093), EBROKER_KAFKA_HOME (default
# ~/.cache/ebroker/kafka-4.4.0), JAVA (default java).
# Use it with `EBROKER_KAFKA__BROKERS=127.0.0.1:9092 ebroker produce ...`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION=4.4.0
DIR="${EBROKER_KAFKA_DIR:-/tmp/ebroker-kafka}"
PORT="${EBROKER_KAFKA_PORT:-9092}"
CPORT="${EBROKER_KAFKA_CONTROLLER_PORT:-9093}"
KHOME="${EBROKER_KAFKA_HOME:-$HOME/.cache/ebroker/kafka-$VERSION}"
LIBS="$KHOME/libs"
JAVA="${JAVA:-java}"
BOOTSTRAP="127.0.0.1:$PORT"
PIDFILE="$DIR/broker.pid"
LOG="$DIR/broker.log"

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
  [ -f "$KHOME/.installed" ] && return
  if ! command -v mvn >/dev/null || ! command -v "$JAVA" >/dev/null; then
    echo "installing Maven and Java 17 (Debian packages maven, openjdk-17-jdk-headless)"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null
  fi
  echo "installing Apache Kafka $VERSION jars from Maven Central into $LIBS"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  # (Debian's mvn prints stray colour codes even with -q -B: keep its output for failures only.)
  mvn -B -q -f "$HERE/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" \
    >"$KHOME/mvn.log" 2>&1 || { cat "$KHOME/mvn.log" >&2; die "mvn dependency:copy-dependencies failed"; }
  [ -f "$LIBS/kafka_2.13-$VERSION.jar" ] && [ -f "$LIBS/kafka-tools-$VERSION.jar" ] \
    || die "the copy in $LIBS lacks kafka_2.13/kafka-tools $VERSION"
  echo "$VERSION" >"$KHOME/.installed"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_configs() {
  mkdir -p "$DIR"
  cat >"$DIR/server.properties" <<EOF
# written by deploy/local/kafka.sh; rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  # The broker logs INFO to stdout (redirected to broker.log); the tools log WARN to stderr.
  cat >"$DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  # Admin client settings for topic-create/delete-records: an unknown topic or partition fails
  # after 10 s instead of the default 60 s.
  cat >"$DIR/admin.properties" <<'EOF'
default.api.timeout.ms=10000
request.timeout.ms=5000
EOF
  cat >"$DIR/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

# A short-lived JVM for an admin/console tool: small heap, C1 only, serial GC (starts faster).
tool() {
  [ -f "$DIR/admin.properties" ] || write_configs
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/tools-log4j2.properties" -cp "$LIBS/*" "$@"
}

need_broker() {
  install
  port_open "$PORT" || die "no broker answers on $BOOTSTRAP (run: deploy/local/kafka.sh start)"
}

# A Kafka Metadata v4 request (all topics) sent from bash, no JVM: true when the response
# lists exactly this broker, node 1 at 127.0.0.1:$PORT (so it is registered and unfenced).
# Request: size 22, api_key 3, api_version 4, correlation_id 1, client_id "ebroker",
# topics null, allow_auto_topic_creation false. Response prefix: size, correlation_id 1,
# throttle_time_ms 0, 1 broker, node_id 1, host "127.0.0.1", port.
metadata_ok() {
  local hex want
  hex="$( { exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
      printf '\x00\x00\x00\x16\x00\x03\x00\x04\x00\x00\x00\x01\x00\x07ebroker\xff\xff\xff\xff\x00' >&3
      timeout 5 head -c 35 <&3; } 2>/dev/null | od -An -tx1 -v | tr -d ' \n')" || return 1
  want="$(printf '00000001''00000000''00000001''00000001''0009''3132372e302e302e31''%08x' "$PORT")"
  [ "${hex:8}" = "$want" ]
}

# Start failed: say why (the log's errors, then its tail), stop what is left of the broker so
# that the next start begins afresh, exit 1.
fail_start() {
  echo "kafka.sh: $*; log: $LOG" >&2
  { grep -A1 -E "^\[[^]]*\] (ERROR|FATAL) " "$LOG" | grep -v '^--$' | tail -6
    echo "... (last lines:)"; tail -15 "$LOG"; } >&2 || true
  stop_broker >&2
  exit 1
}

# start_broker wipe|keep
start_broker() {
  install
  if running; then echo "broker already running (pid $(cat "$PIDFILE"))"; return 0; fi
  for p in "$PORT" "$CPORT"; do
    port_open "$p" && die "127.0.0.1:$p is already in use by another process"
  done
  write_configs
  if [ "$1" = wipe ]; then rm -rf "$DIR/data"; fi
  mkdir -p "$DIR/data"
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.prev"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    # Cluster id: 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints).
    local cid
    cid="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    tool kafka.tools.StorageTool format --standalone --cluster-id "$cid" \
      --config "$DIR/server.properties" >"$DIR/format.log" 2>&1 \
      || { cat "$DIR/format.log" >&2; die "formatting $DIR/data failed"; }
  fi
  (exec setsid "$JAVA" -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" </dev/null >"$LOG" 2>&1) &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + 60))
  # 1) the client port opens and the broker logs "Kafka Server started" (startup complete) ...
  until port_open "$PORT" && grep -q "Kafka Server started" "$LOG"; do
    running || fail_start "the broker exited during startup"
    [ "$SECONDS" -lt "$deadline" ] || fail_start "the broker did not start on $BOOTSTRAP within 60 s"
    sleep 0.1
  done
  # 2) ... and answers a Metadata request listing itself (registered, unfenced) at 127.0.0.1:$PORT.
  until metadata_ok; do
    running || fail_start "the broker exited during startup"
    [ "$SECONDS" -lt "$deadline" ] \
      || fail_start "the broker on $BOOTSTRAP did not list itself in a Metadata response within 60 s"
    sleep 0.2
  done
  echo "kafka ready: $BOOTSTRAP (Apache Kafka $VERSION KRaft, pid $(cat "$PIDFILE"), log $LOG)"
}

stop_broker() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "the broker did not stop within 20 s; SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"; echo "stopped broker"
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

case "${1:-}" in
  start) start_broker wipe ;;
  restart) stop_broker; start_broker keep ;;
  stop) stop_broker ;;
  status)
    if running; then
      echo "broker running (pid $(cat "$PIDFILE")) on $BOOTSTRAP"
    else
      echo "broker not running"; exit 1
    fi
    ;;
  topic-create)
    [ $# -eq 3 ] && [ -n "$2" ] && is_uint "$3" && [ "$3" -gt 0 ] \
      || die "usage: $0 topic-create NAME PARTITIONS"
    need_broker
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$DIR/admin.properties" --create \
      --topic "$2" --partitions "$3" --replication-factor 1 \
      || die "creating topic $2 with $3 partitions failed"
    ;;
  delete-records)
    [ $# -eq 4 ] && [ -n "$2" ] && is_uint "$3" && is_uint "$4" \
      || die "usage: $0 delete-records TOPIC PARTITION OFFSET"
    need_broker
    json="$(mktemp "${TMPDIR:-/tmp}/ebroker-delete-records.XXXXXX.json")"
    trap 'rm -f "$json"' EXIT
    topic_json="$(printf '%s' "$2" | sed 's/\\/\\\\/g; s/"/\\"/g')"
    printf '{"version":1,"partitions":[{"topic":"%s","partition":%s,"offset":%s}]}\n' \
      "$topic_json" "$3" "$4" >"$json"
    # The tool prints "partition: T-P<TAB>low_watermark: N" or "... error: E" and exits 0 on both.
    out="$(tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$DIR/admin.properties" --offset-json-file "$json" 2>&1)" \
      || { echo "$out" >&2; die "delete-records on $2-$3 failed"; }
    grep -q "low_watermark:" <<<"$out" || { echo "$out" >&2
      die "delete-records on $2-$3 below offset $4 failed (TimeoutException: no such topic or partition; OFFSET_OUT_OF_RANGE: offset past the end)"; }
    grep -o "partition: .*low_watermark: [0-9]*" <<<"$out"
    ;;
  tool) shift; [ $# -ge 1 ] || die "usage: $0 tool CLASS ARGS..."; install; tool "$@" ;;
  *) echo "usage: $0 start|stop|status|restart|topic-create NAME PARTITIONS|delete-records TOPIC PARTITION OFFSET|tool CLASS ARGS..." >&2; exit 2 ;;
esac
