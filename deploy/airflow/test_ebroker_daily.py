"""The Airflow DAG deploy/airflow/ebroker_daily.py against the real local services.

Run by deploy/airflow/test.sh in its venv (apache-airflow 3.3.2, psycopg), with the services'
addresses in EBROKER_TEST_KAFKA (host:port), EBROKER_TEST_POSTGRES (host:port, user postgres,
trust auth), EBROKER_TEST_CLICKHOUSE (http URL) and the binary in EBROKER_BIN_DIR. A service
that does not answer fails the test at once; nothing is skipped.

In an Airflow home of its own (sqlite), with the connections and variables given as
AIRFLOW_CONN_* / AIRFLOW_VAR_* and names unique to this run (topic prefix, consumer group,
PostgreSQL schema, ClickHouse database, warehouse), it checks:
  1. the DAG loads without import errors, with the task groups in order;
  2. the exit-code mapping: 2, 3, 4 fail without retry, anything else is retried;
  3. dag.test() of a date: every task succeeds at its first try, and ClickHouse and
     PostgreSQL hold exactly the warehouse's rows of that date;
  4. dag.test() of the same date again: every task succeeds (produce skipped: the date is
     already ingested), the counts are unchanged (one copy), and nothing was sent to Kafka
     again (a later date's ingest finds no record);
  5. a bad-input failure is not retried: a run of a date that was never ingested fails in
     clean (exit 3) at try 1 of 4, and nothing after it runs;
  6. a service failure is retried: with ClickHouse's port closed, publish_clickhouse fails
     (exit 1) four times (retry delay shortened to 1 s), and the published day is intact.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
DATE = date(2024, 6, 1)
CLIENTS = 2000
DAG_ID = "ebroker_daily"


def env(name: str) -> str:
    value = os.environ.get(name, "")
    assert value, f"{name} is not set: run deploy/airflow/test.sh with the services up (deploy/local/test.sh)"
    return value


KAFKA = env("EBROKER_TEST_KAFKA")
PG_HOST, PG_PORT = env("EBROKER_TEST_POSTGRES").rsplit(":", 1)
CLICKHOUSE = env("EBROKER_TEST_CLICKHOUSE").rstrip("/")
BINARY = Path(env("EBROKER_BIN_DIR"), "ebroker")
assert BINARY.is_file(), f"{BINARY} is missing: build it (deploy/local/build.sh)"

NAME = f"airflow_{uuid.uuid4().hex[:8]}"  # topic prefix, group, schema, database: this run's own
WORK = Path(tempfile.gettempdir(), f"ebroker-{NAME}")  # made once the services answered
WAREHOUSE = WORK / "warehouse"


def check_services() -> None:
    """Fails loudly when a service does not answer."""
    host, port = KAFKA.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise SystemExit(f"Kafka at {KAFKA} is unreachable: {e}")
    try:
        psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", connect_timeout=5).close()
    except psycopg.Error as e:
        raise SystemExit(f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable: {e}")
    try:
        clickhouse("SELECT 1")
    except OSError as e:
        raise SystemExit(f"ClickHouse at {CLICKHOUSE} is unreachable: {e}")


def clickhouse(query: str) -> str:
    with urllib.request.urlopen(CLICKHOUSE + "/", data=query.encode(), timeout=30) as response:
        return response.read().decode().strip()


def postgres(query: str) -> int | None:
    """The first value `query` returns (None for a statement), committed."""
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres") as conn:
        cursor = conn.execute(query)
        return cursor.fetchone()[0] if cursor.description else None


def ebroker(*args: str) -> str:
    """Runs the binary on this run's warehouse and topics (as the DAG configures it); stdout."""
    settings = {
        "EBROKER_WAREHOUSE__ROOT": str(WAREHOUSE),
        "EBROKER_KAFKA__BROKERS": KAFKA,
        "EBROKER_KAFKA__TOPIC_PREFIX": f"{NAME}_",
        "EBROKER_KAFKA__GROUP_ID": f"{NAME}_group",
    }
    done = subprocess.run(
        [str(BINARY), *args], env={**os.environ, **settings, "NO_COLOR": "1"}, capture_output=True, text=True
    )
    assert done.returncode == 0, f"ebroker {args} exited {done.returncode}: {done.stderr}"
    return done.stdout


def warehouse_count(query: str) -> int:
    return int(ebroker("sql", "--format", "csv", "-e", query).split()[1])


def counts(day: date) -> dict[str, tuple[int, int]]:
    """(warehouse, target) rows of `day`, per mart and target."""
    d = day.isoformat()

    def mart(table: str) -> int:
        return warehouse_count(f"SELECT count(*) FROM marts.{table} WHERE processing_date = DATE '{d}'")

    return {
        "clickhouse targeted_offers": (
            mart("targeted_offers"),
            int(clickhouse(f"SELECT count() FROM {NAME}.targeted_offers WHERE toDate(created_at) = '{d}'")),
        ),
        "clickhouse marketing_clients": (
            mart("marketing_clients"),
            int(clickhouse(f"SELECT count() FROM {NAME}.marketing_clients WHERE toDate(last_updated) = '{d}'")),
        ),
        "clickhouse marketing_analytics_daily": (
            mart("marketing_analytics_daily"),
            int(clickhouse(f"SELECT count() FROM {NAME}.marketing_analytics_daily WHERE analysis_date = '{d}'")),
        ),
        "postgres client_segmentation": (
            mart("client_segmentation"),
            postgres(f"SELECT count(*) FROM {NAME}.client_segmentation WHERE processing_date = DATE '{d}'"),
        ),
    }


def configure_airflow() -> None:
    """An Airflow home of its own and the DAG's connections and variables, before airflow loads."""
    home = WORK / "airflow"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "ebroker_daily.py").symlink_to(HERE / "ebroker_daily.py")
    pg_port, (ch_host, ch_port) = int(PG_PORT), urllib.parse.urlsplit(CLICKHOUSE).netloc.rsplit(":", 1)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW_VAR_EBROKER_WAREHOUSE": str(WAREHOUSE),
            "AIRFLOW_VAR_EBROKER_BIN": str(BINARY),
            "AIRFLOW_CONN_EBROKER_KAFKA": json.dumps(
                {"conn_type": "kafka", "host": KAFKA, "extra": {"topic_prefix": f"{NAME}_", "group_id": f"{NAME}_group"}}
            ),
            "AIRFLOW_CONN_EBROKER_GREENPLUM": json.dumps(
                {
                    "conn_type": "postgres",
                    "host": PG_HOST,
                    "port": pg_port,
                    "login": "postgres",
                    "schema": "postgres",
                    "extra": {"schema": NAME, "flavour": "postgres", "sslmode": "disable"},
                }
            ),
            "AIRFLOW_CONN_EBROKER_CLICKHOUSE": json.dumps(
                {
                    "conn_type": "http",
                    "host": ch_host,
                    "port": int(ch_port),
                    "login": "default",
                    "extra": {"database": NAME, "retries": 2, "retry_backoff_ms": 200},
                }
            ),
            # worker-side ebroker configuration: a small day
            "EBROKER_GENERATE__CLIENTS": str(CLIENTS),
        }
    )
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)


def plain(state) -> str:
    """A DagRun or TaskInstance state as its plain value ("success", ...)."""
    return str(getattr(state, "value", state))


def states(dag_run) -> dict[str, tuple[str, int]]:
    """task id -> (state, try number) of every task instance of `dag_run`."""
    return {ti.task_id: (plain(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def logical(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def main() -> None:
    check_services()
    started = time.monotonic()
    configure_airflow()
    print(f"airflow home ready in {time.monotonic() - started:.1f} s ({WORK}, names {NAME})", flush=True)

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    # 1. the DAG loads, its groups in order
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[DAG_ID]
    groups = [
        "generate_and_produce",
        "ingest",
        "clean",
        "segment",
        "offers",
        "analytics",
        "publish_greenplum",
        "publish_clickhouse",
        "report",
    ]
    assert list(dag.task_group.children) == groups, list(dag.task_group.children)
    tasks = sorted(dag.task_ids)
    print(f"DAG {DAG_ID}: {len(tasks)} tasks: {tasks}", flush=True)

    # 2. the exit-code mapping
    sys.path.insert(0, str(HERE))
    from ebroker_daily import check_exit

    check_exit(0, "ebroker x", "")
    for code in (2, 3, 4):
        try:
            check_exit(code, "ebroker x", "error: input ...")
            raise AssertionError(f"exit {code} passed")
        except AirflowFailException as e:
            assert f"exited {code}" in str(e) and "error: input ..." in str(e), e
    for code in (1, 101, -9):
        try:
            check_exit(code, "ebroker x", "")
            raise AssertionError(f"exit {code} passed")
        except AirflowFailException:
            raise AssertionError(f"exit {code} must be retried")
        except AirflowException:
            pass

    # 3. a run of DATE
    t = time.monotonic()
    first = dag.test(logical_date=logical(DATE))
    first_seconds = time.monotonic() - t
    got = states(first)
    assert plain(first.state) == "success", got
    assert got and all(state == "success" and tries == 1 for state, tries in got.values()), got
    after_first = counts(DATE)
    for what, (warehouse, target) in after_first.items():
        assert warehouse > 0 and warehouse == target, f"{what}: warehouse {warehouse}, target {target}"
    print(f"first run: {first_seconds:.1f} s, {after_first}", flush=True)

    # 4. the same date again: one copy, nothing sent to Kafka again
    t = time.monotonic()
    second = dag.test(logical_date=logical(DATE))
    second_seconds = time.monotonic() - t
    got = states(second)
    assert plain(second.state) == "success", got
    assert got.pop("generate_and_produce.produce")[0] == "skipped", states(second)
    assert all(state == "success" and tries == 1 for state, tries in got.values()), got
    after_second = counts(DATE)
    assert after_second == after_first, f"rerun changed the counts: {after_first} -> {after_second}"
    later = (DATE + timedelta(days=2)).isoformat()  # DATE + 1 stays un-ingested for step 5
    ebroker("ingest", "--date", later)
    resent = warehouse_count(f"SELECT count(*) FROM raw.clients WHERE processing_date = DATE '{later}'")
    assert resent == 0, f"the rerun sent {resent} clients to Kafka again"
    print(f"second run: {second_seconds:.1f} s, same counts; {later}'s ingest found {resent} records", flush=True)

    # 5. bad input is not retried: a date never ingested (produce and ingest marked done)
    bad = DATE + timedelta(days=1)
    t = time.monotonic()
    failed = dag.test(logical_date=logical(bad), mark_success_pattern=r"generate_and_produce\..*|ingest\..*")
    got = states(failed)
    assert plain(failed.state) == "failed", got
    assert got["clean.clean"] == ("failed", 1), got
    clean_ti = next(ti for ti in failed.get_task_instances() if ti.task_id == "clean.clean")
    assert clean_ti.max_tries == 3, f"retries are configured ({clean_ti.max_tries}), yet none was made"
    after_clean = [task for task in tasks if task.split(".")[0] not in ("generate_and_produce", "ingest", "clean")]
    assert all(got[task][0] == "upstream_failed" for task in after_clean), got
    print(f"bad input: clean failed at try 1 of 4 in {time.monotonic() - t:.1f} s, {len(after_clean)} tasks not run")

    # 6. a service failure is retried: only publish_clickhouse runs, against a closed port
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    down = json.loads(os.environ["AIRFLOW_CONN_EBROKER_CLICKHOUSE"]) | {"host": "127.0.0.1", "port": closed_port}
    os.environ["AIRFLOW_CONN_EBROKER_CLICKHOUSE"] = json.dumps(down)
    dag.task_dict["publish_clickhouse.publish"].retry_delay = timedelta(seconds=1)
    t = time.monotonic()
    unreachable = dag.test(logical_date=logical(DATE), mark_success_pattern=r"(?!publish_clickhouse\.).*")
    got = states(unreachable)
    assert got["publish_clickhouse.publish"] == ("failed", 4), got
    assert counts(DATE) == after_first, "a failed publish changed the published day"
    print(f"ClickHouse down: publish_clickhouse failed after 4 tries in {time.monotonic() - t:.1f} s; the day is intact")

    clickhouse(f"DROP DATABASE IF EXISTS {NAME}")
    postgres(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")
    shutil.rmtree(WORK)
    print(f"airflow DAG test passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
