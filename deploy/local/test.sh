#!/usr/bin/env bash
# Sets up everything the tests need on this machine and runs all of them.
#
# Installs what is missing, starts the services the integration tests use on 127.0.0.1 — a
# Ballista scheduler with two executors, a Kafka-protocol broker (noida-db, from PyPI),
# PostgreSQL 15 (Greenplum's stand-in, from apt) and ClickHouse 18.16 (from apt) — exports
# their addresses, runs the whole test suite, and stops the services again.
#
#   deploy/local/test.sh            # everything
#   deploy/local/test.sh -- rules   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/../.."

# One target directory outside the clone, so CI on this machine reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ebroker/target}"
mkdir -p "$CARGO_TARGET_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed; install Rust from https://rustup.rs" >&2
  exit 1
fi

# One profile for tests, benchmarks and the cluster binaries: the release build the
# benchmarks use (bench.sh) is the one the tests run, so a machine builds the heavy
# DataFusion/Ballista tree once, not twice (about 60 min from nothing on 2 cores), and the
# data tests run at full speed.
PROFILE=(--release)
BIN_DIR="$CARGO_TARGET_DIR/release"

echo "== building tests ($(date -u +%H:%M:%S))"
cargo test "${PROFILE[@]}" --workspace --no-run

echo "== building the cluster binaries"
cargo build "${PROFILE[@]}" -p ebroker -p ebroker-scheduler -p ebroker-executor
export EBROKER_BIN_DIR="$BIN_DIR"

echo "== starting services on 127.0.0.1"
export EBROKER_CLUSTER_DIR="${EBROKER_CLUSTER_DIR:-$(mktemp -d /tmp/ebroker-cluster.XXXXXX)}"
export EBROKER_KAFKA_DIR="${EBROKER_KAFKA_DIR:-$(mktemp -d /tmp/ebroker-kafka.XXXXXX)}"
export EBROKER_PG_DIR="${EBROKER_PG_DIR:-$(mktemp -d /tmp/ebroker-pg.XXXXXX)}"
export EBROKER_CH_DIR="${EBROKER_CH_DIR:-$(mktemp -d /tmp/ebroker-clickhouse.XXXXXX)}"
stop_services() {
  deploy/local/clickhouse.sh stop || true
  deploy/local/cluster.sh stop || true
  deploy/local/kafka.sh stop || true
  deploy/local/postgres.sh stop || true
}
trap stop_services EXIT
deploy/local/cluster.sh stop >/dev/null 2>&1 || true
deploy/local/cluster.sh start
export EBROKER_TEST_CLUSTER="df://127.0.0.1:${EBROKER_SCHEDULER_PORT:-50050}"
deploy/local/kafka.sh start
export EBROKER_TEST_KAFKA="127.0.0.1:${EBROKER_KAFKA_PORT:-9092}"
deploy/local/postgres.sh start
export EBROKER_TEST_POSTGRES="127.0.0.1:${EBROKER_PG_PORT:-55432}"
deploy/local/clickhouse.sh start
export EBROKER_TEST_CLICKHOUSE="http://127.0.0.1:${EBROKER_CH_HTTP_PORT:-18123}"

# The stock Python Flight SQL client (ADBC) that the Flight SQL test drives.
VENV="${EBROKER_VENV:-$HOME/.cache/ebroker/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import adbc_driver_flightsql, pyarrow" 2>/dev/null \
  || "$VENV/bin/pip" install -q "adbc-driver-flightsql==1.13.0" "adbc-driver-manager==1.13.0" pyarrow
export EBROKER_TEST_PYTHON="$VENV/bin/python"

echo "== running tests ($(date -u +%H:%M:%S))"
cargo test "${PROFILE[@]}" --workspace "$@"
echo "== all tests passed ($(date -u +%H:%M:%S))"
