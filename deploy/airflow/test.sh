#!/usr/bin/env bash
# Tests the Airflow 3 DAG deploy/airflow/ebroker_daily.py against the running local services:
# installs apache-airflow 3.3.2 and psycopg (PyPI) into a venv of its own when they are missing,
# then runs deploy/airflow/test_ebroker_daily.py there (dag.test() of a day, its rerun, a
# bad-input and a service failure; see that file). deploy/local/test.sh calls it with the
# services up; alone:
#
#   EBROKER_TEST_KAFKA=127.0.0.1:9092 EBROKER_TEST_POSTGRES=127.0.0.1:55432 \
#   EBROKER_TEST_CLICKHOUSE=http://127.0.0.1:18123 EBROKER_BIN_DIR=$PWD/target/release \
#   deploy/airflow/test.sh
#
# Environment: EBROKER_AIRFLOW_VENV (default ~/.cache/ebroker/airflow-venv) and the four above,
# which the test requires (an unset one or a service that does not answer fails it).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${EBROKER_AIRFLOW_VENV:-$HOME/.cache/ebroker/airflow-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# (asks the package metadata: importing airflow here would create ~/airflow)
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; m.version("psycopg"); sys.exit(m.version("apache-airflow") != "3.3.2")' 2>/dev/null; then
  echo "installing apache-airflow 3.3.2 and psycopg into $VENV"
  "$VENV/bin/pip" install -q "apache-airflow==3.3.2" "psycopg[binary]==3.3.9"
fi
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ beside the DAG
exec "$VENV/bin/python" test_ebroker_daily.py
