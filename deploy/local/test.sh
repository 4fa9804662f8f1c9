#!/usr/bin/env bash
# Sets up everything the tests need on this machine and runs all of them.
#
# Builds (deploy/local/build.sh), checks the format and that rustc and clippy print no
# warning, installs what is missing, starts the services the integration tests use on
# 127.0.0.1 — a Ballista scheduler with two executors (and another one across three network
# namespaces, with its own plain HDFS on the bridge address), Apache Kafka 4.4 in KRaft mode and
# HDFS (Hadoop 3.4 MiniDFSCluster: a plain one, and a Kerberos + HA one with its KDC), all from
# Maven Central; PostgreSQL 15 (Greenplum's stand-in) and ClickHouse 18.16 from apt; Spark 3.5
# (pyspark, from PyPI) for the interop test — exports their addresses, runs the whole test
# suite, and stops the services again.
#
#   deploy/local/test.sh            # everything
#   deploy/local/test.sh -- rules   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/../.."

LOG_DIR="$(mktemp -d /tmp/ebroker-test-build.XXXXXX)"

# The release build the README's run command and the benchmarks use (deploy/local/build.sh):
# one build of the heavy DataFusion/Ballista tree, shared by everything.
echo "== building ($(date -u +%H:%M:%S))"
deploy/local/build.sh 2>&1 | tee "$LOG_DIR/build.log"
export EBROKER_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"

echo "== checking the format (cargo fmt --check)"
cargo fmt --all --check

echo "== building the tests ($(date -u +%H:%M:%S))"
FEATURES=(--features ebroker-integration/services)
cargo test --release "${FEATURES[@]}" --no-run 2>&1 | tee "$LOG_DIR/tests.log"

# The workspace's crates are compiled through clippy (.cargo/config.toml); cargo replays the
# warnings of crates it did not rebuild, so this sees every rustc and clippy warning.
if grep -E '^(warning|error)(\[|:)' "$LOG_DIR/build.log" "$LOG_DIR/tests.log"; then
  echo "rustc or clippy warned (above): fix them; the tree is kept warning-free" >&2
  exit 1
fi

# The deployment files (compose, Kubernetes, systemd, Dockerfile), checked without an engine
# or a cluster (deploy/README.md says what that leaves unchecked).
echo "== checking deploy/ ($(date -u +%H:%M:%S))"
deploy/check.sh

echo "== starting services on 127.0.0.1"
export EBROKER_CLUSTER_DIR="${EBROKER_CLUSTER_DIR:-$(mktemp -d /tmp/ebroker-cluster.XXXXXX)}"
export EBROKER_KAFKA_DIR="${EBROKER_KAFKA_DIR:-$(mktemp -d /tmp/ebroker-kafka.XXXXXX)}"
export EBROKER_PG_DIR="${EBROKER_PG_DIR:-$(mktemp -d /tmp/ebroker-pg.XXXXXX)}"
export EBROKER_CH_DIR="${EBROKER_CH_DIR:-$(mktemp -d /tmp/ebroker-clickhouse.XXXXXX)}"
# A second ClickHouse whose time zone is America/New_York (west of UTC), for the UTC-day test.
EBROKER_CH_NY_DIR="${EBROKER_CH_NY_DIR:-$(mktemp -d /tmp/ebroker-clickhouse-ny.XXXXXX)}"
EBROKER_CH_NY_HTTP_PORT="${EBROKER_CH_NY_HTTP_PORT:-18124}"
clickhouse_ny() {
  EBROKER_CH_DIR="$EBROKER_CH_NY_DIR" EBROKER_CH_HTTP_PORT="$EBROKER_CH_NY_HTTP_PORT" \
    EBROKER_CH_TCP_PORT="${EBROKER_CH_NY_TCP_PORT:-19001}" EBROKER_CH_TIMEZONE=America/New_York \
    deploy/local/clickhouse.sh "$@"
}
export EBROKER_HDFS_DIR="${EBROKER_HDFS_DIR:-$(mktemp -d /tmp/ebroker-hdfs.XXXXXX)}"
stop_services() {
  deploy/local/netns.sh down || true
  deploy/local/hdfs.sh stop all || true
  deploy/local/clickhouse.sh stop || true
  clickhouse_ny stop || true
  deploy/local/cluster.sh stop || true
  deploy/local/kafka.sh stop || true
  deploy/local/postgres.sh stop || true
}
trap stop_services EXIT
# HDFS first: its client configuration (one conf dir for both clusters) and a Kerberos
# ticket cache of the tests' own are in the environment of everything started after it.
deploy/local/hdfs.sh start plain
deploy/local/hdfs.sh start secure-ha
# shellcheck disable=SC1091
. "$EBROKER_HDFS_DIR/env"
export KRB5_CONFIG HADOOP_CONF_DIR EBROKER_TEST_HDFS EBROKER_TEST_HDFS_SECURE
export KRB5CCNAME="FILE:$EBROKER_HDFS_DIR/krb5cc_tests"
kinit -kt "$EBROKER_TEST_HDFS_KEYTAB" "$EBROKER_TEST_HDFS_PRINCIPAL"
deploy/local/cluster.sh stop >/dev/null 2>&1 || true
deploy/local/cluster.sh start
export EBROKER_TEST_CLUSTER="df://127.0.0.1:${EBROKER_SCHEDULER_PORT:-50050}"
# Three test hosts (network namespaces, veth pairs into a bridge): a scheduler and two
# executors, each at its own address, with a plain HDFS on the bridge address (needs root).
export EBROKER_NETNS_DIR="${EBROKER_NETNS_DIR:-$(mktemp -d /tmp/ebroker-netns.XXXXXX)}"
deploy/local/netns.sh down >/dev/null 2>&1 || true
deploy/local/netns.sh up
# shellcheck disable=SC1091
. "$EBROKER_NETNS_DIR/env"
export EBROKER_TEST_NETNS EBROKER_TEST_HDFS_NETNS
deploy/local/kafka.sh start
export EBROKER_TEST_KAFKA="127.0.0.1:${EBROKER_KAFKA_PORT:-9092}"
deploy/local/postgres.sh start
export EBROKER_TEST_POSTGRES="127.0.0.1:${EBROKER_PG_PORT:-55432}"
deploy/local/clickhouse.sh start
export EBROKER_TEST_CLICKHOUSE="http://127.0.0.1:${EBROKER_CH_HTTP_PORT:-18123}"
clickhouse_ny start
export EBROKER_TEST_CLICKHOUSE_NY="http://127.0.0.1:$EBROKER_CH_NY_HTTP_PORT"

# The stock Python Flight SQL client (ADBC) that the Flight SQL test drives, and the
# Prometheus client that parses the run metrics.
VENV="${EBROKER_VENV:-$HOME/.cache/ebroker/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import adbc_driver_flightsql, pyarrow, prometheus_client" 2>/dev/null \
  || "$VENV/bin/pip" install -q "adbc-driver-flightsql==1.13.0" "adbc-driver-manager==1.13.0" pyarrow \
    "prometheus-client==0.26.0"
export EBROKER_TEST_PYTHON="$VENV/bin/python"
# Headless Chromium (Debian's) renders the HTML run report.
command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
export EBROKER_TEST_CHROMIUM="$(command -v chromium)"
# Spark 3.5 (bundles its Hadoop client) for reading the warehouse back, in a venv of its own.
SPARK_VENV="${EBROKER_SPARK_VENV:-$HOME/.cache/ebroker/spark-venv}"
[ -x "$SPARK_VENV/bin/python" ] || python3 -m venv "$SPARK_VENV"
"$SPARK_VENV/bin/python" -c "import pyspark" 2>/dev/null || "$SPARK_VENV/bin/pip" install -q "pyspark==3.5.9"
export EBROKER_TEST_SPARK_PYTHON="$SPARK_VENV/bin/python"

echo "== running tests ($(date -u +%H:%M:%S))"
cargo test --release "${FEATURES[@]}" "$@"

# The daily DAG on real Airflow 3 (apache-airflow from PyPI, dag.test()) against the services
# above. Skipped, like fuzzing, when only some tests were asked for.
if [ "$#" -eq 0 ]; then
  echo "== testing the Airflow DAG ($(date -u +%H:%M:%S))"
  deploy/airflow/test.sh
fi

# The coverage-guided fuzz targets of the record formats, briefly (a longer run:
# deploy/local/fuzz.sh 3600). Skipped when only some tests were asked for.
if [ "$#" -eq 0 ]; then
  echo "== fuzzing ($(date -u +%H:%M:%S))"
  deploy/local/fuzz.sh "${EBROKER_FUZZ_SECONDS:-30}"
fi
echo "== all tests passed ($(date -u +%H:%M:%S))"
