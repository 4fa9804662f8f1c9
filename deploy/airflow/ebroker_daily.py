"""ebroker's daily client-segmentation run, for Airflow 3.

The seed's single daily DAG (generator -> Kafka -> Spark -> Greenplum -> ClickHouse), with each
stage an `ebroker` command for the run's logical date (`--date {{ ds }}`; a run triggered by
hand needs one too):

    generate_and_produce -> ingest -> clean -> segment -> offers -> analytics
        -> publish_greenplum (publish, verify) -> publish_clickhouse -> report

Why it is built this way:

- **One task per stage command, not one `ebroker run`.** Every stage command publishes its day in
  one atomic commit that replaces the day, so a task that is retried or cleared simply redoes
  its day; Airflow keeps the run state, the retries and the logs per stage. (`ebroker run
  --resume` is the stand-alone equivalent and is not needed here.)
- **A straight line.** Every stage and both publishes take the date's lease (one writer per
  date, docs/DESIGN.md): two tasks of one date side by side would fail on it.
- **Kafka days in order.** `ingest` reads each partition up to the high-water mark it sees, so
  a day must be ingested before the next day's messages arrive: `produce` waits for the
  previous day's produce and ingest (`wait_for_downstream`), `ingest` for the previous ingest
  (`depends_on_past`).
- **Rerunning a date is idempotent.** `ingest` of a finished day is a no-op, so messages sent
  again would be left for the next day's ingest: `not_yet_ingested` skips `produce` when the
  raw zone already holds the date (`ingest` still runs and rolls any interrupted commit
  forward). Every other command replaces its day (ClickHouse by a partition swap, Greenplum
  in one transaction). The sources are generated inside `ebroker produce` (seeded by
  `generate.seed` and the date, so always the same records): no file passes between workers.
- **Exit codes decide retries** (jobs/core/src/error.rs): 2 (usage or configuration), 3 (bad
  input) and 4 (reconciliation) raise AirflowFailException, failing the task at once; any
  other failure (1: a service down, the date's lease held, I/O; killed by a signal) is retried
  with exponential backoff. The first wait (60 s) outlasts `run.lease_seconds` (60), so a
  lease left by an attempt killed on another worker has expired by the retry.
- **Configuration through the environment, secrets never in argv** (`ps` shows argv): the
  command gets the worker's environment plus `EBROKER_<SECTION>__<KEY>` variables made from
  Airflow connections and variables; anything else (e.g. `EBROKER_GENERATE__CLIENTS`,
  `EBROKER_ENGINE__MEMORY_LIMIT`) comes from the worker's environment or `ebroker.toml`.
  A task gets only the connections its command uses.

Airflow variables:
  ebroker_warehouse    the warehouse root, a path or URL (required) -> warehouse.root
  ebroker_bin          the ebroker binary (default: $EBROKER_BIN, else `ebroker` on PATH)
  ebroker_cluster_url  a Ballista scheduler, df://host:50050 (optional; empty: in-process)

Airflow connections (every key of a connection's extra JSON is a key of that section of
ebroker's configuration, e.g. {"topic_prefix": "HA_"}; a string is read as ebroker reads
EBROKER_* variables):
  ebroker_kafka       host[:port], or host "h1:9092,h2:9092" -> kafka.brokers
  ebroker_greenplum   host, port, login, password, schema (the database) -> greenplum.*;
                      extra e.g. {"schema": "ebroker", "flavour": "greenplum"}
  ebroker_clickhouse  host, port, login, password -> clickhouse.url (https when the connection
                      type is https), user, password; extra e.g. {"database": "marketing"}
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Connection, TaskGroup, TriggerRule, Variable, XComArg, chain, dag, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

log = logging.getLogger("ebroker")

KAFKA, GREENPLUM, CLICKHOUSE = "ebroker_kafka", "ebroker_greenplum", "ebroker_clickhouse"

# ebroker's exit codes that a retry cannot fix (jobs/core/src/error.rs, `exit_code`).
NOT_RETRYABLE = {2: "usage or configuration", 3: "bad input", 4: "reconciliation"}


def check_exit(code: int, command: str, last_line: str) -> None:
    """Returns for exit code 0; raises AirflowFailException (no retry) for 2, 3 and 4, and
    AirflowException (retried) for anything else, naming the command and its last line."""
    if code == 0:
        return
    if code in NOT_RETRYABLE:
        raise AirflowFailException(
            f"{command} exited {code} ({NOT_RETRYABLE[code]} failure; a retry cannot fix it): {last_line}"
        )
    raise AirflowException(f"{command} exited {code} (retried): {last_line}")


def setting(section: str, key: str) -> str:
    """The environment variable of an ebroker key: EBROKER_<SECTION>__<KEY>."""
    return f"EBROKER_{section.upper()}__{key.upper()}"


def toml(value: object) -> str:
    """A JSON value of a connection's extra as a TOML literal (JSON's strings, numbers,
    booleans and arrays are spelled as TOML's; objects become inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)


def address(conn: Connection) -> str:
    """host:port, or the host alone (for Kafka it may list several brokers)."""
    return f"{conn.host}:{conn.port}" if conn.port else (conn.host or "")


# Each connection's section of ebroker's configuration and the keys its fields give.
CONNECTIONS = {
    KAFKA: ("kafka", lambda c: {"brokers": address(c)}),
    GREENPLUM: (
        "greenplum",
        lambda c: {"host": c.host, "port": c.port, "user": c.login, "password": c.password, "database": c.schema},
    ),
    CLICKHOUSE: (
        "clickhouse",
        lambda c: {
            "url": f"{'https' if c.conn_type == 'https' else 'http'}://{address(c)}",
            "user": c.login,
            "password": c.password,
        },
    ),
}


def connection_env(conn_id: str) -> dict[str, str]:
    """The EBROKER_* variables of one Airflow connection. Its fields are quoted as TOML strings
    (a password such as `true` or `123` stays the string it is); its extra's keys pass through."""
    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        raise AirflowFailException(f"define the Airflow connection {conn_id} (see the DAG's docs)") from None
    section, fields = CONNECTIONS[conn_id]
    env = {
        setting(section, key): str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)
        for key, value in fields(conn).items()
        if value not in (None, "")
    }
    for key, value in conn.extra_dejson.items():
        env[setting(section, key)] = value if isinstance(value, str) else toml(value)
    return env


def ebroker(*args: str, uses: tuple[str, ...] = ()) -> None:
    """Runs `ebroker ARGS` with the warehouse, the optional cluster and the connections `uses`,
    streams its output (stdout and stderr) line by line into the task log and maps its exit
    code (check_exit). If the task is stopped (timeout, SIGTERM) the command is terminated
    first, so it does not keep the date's lease."""
    warehouse = Variable.get("ebroker_warehouse", default="")
    if not warehouse:
        raise AirflowFailException("set the Airflow variable ebroker_warehouse (the warehouse root)")
    env = {**os.environ, "NO_COLOR": "1", setting("warehouse", "root"): json.dumps(warehouse)}
    if cluster := Variable.get("ebroker_cluster_url", default=""):
        env[setting("cluster", "url")] = cluster  # unquoted: --cluster reads this variable too
    for conn_id in uses:
        env.update(connection_env(conn_id))
    command = [Variable.get("ebroker_bin", default=os.environ.get("EBROKER_BIN", "ebroker")), *args]
    shown = shlex.join(command)
    log.info("running %s", shown)
    last_line = ""
    try:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except FileNotFoundError:
        raise AirflowFailException(f"{command[0]} not found: set the Airflow variable ebroker_bin") from None
    with proc:
        try:
            for line in proc.stdout:
                line = line.rstrip()
                log.info("%s", line)
                last_line = line or last_line
            code = proc.wait()
        except BaseException:
            proc.terminate()
            raise
    check_exit(code, shown, last_line)


def sql_count(query: str) -> int:
    """The single number `query` returns, from `ebroker sql`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "count.csv")
        ebroker("sql", "--format", "csv", "--output", str(out), "-e", query)
        return int(out.read_text().split()[1])


@task.short_circuit(ignore_downstream_trigger_rules=False)
def not_yet_ingested(date: str) -> bool:
    """False, which skips `produce`, when the raw zone already holds `date`."""
    raw_exists = sql_count(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = 'clients'"
    )
    ingested = (
        raw_exists > 0
        and sql_count(f"SELECT count(*) FROM raw.clients WHERE processing_date = DATE '{date}'") > 0
    )
    if ingested:
        log.info("%s is already ingested: its sources are not sent to Kafka again", date)
    return not ingested


def stage(task_id: str, *command: str, uses: tuple[str, ...] = (), **task_args) -> XComArg:
    """A task that runs `ebroker COMMAND --date {{ ds }}` with the connections `uses`."""

    @task(task_id=task_id, **task_args)
    def run(date: str) -> None:
        ebroker(*command, "--date", date, uses=uses)

    return run("{{ ds }}")


@dag(
    dag_id="ebroker_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    catchup=False,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=60),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    },
    doc_md=__doc__,
    tags=["ebroker"],
)
def ebroker_daily():
    with TaskGroup("generate_and_produce") as generate_and_produce:
        not_yet_ingested("{{ ds }}") >> stage("produce", "produce", uses=(KAFKA,), wait_for_downstream=True)
    with TaskGroup("ingest") as ingest:
        # none_failed: runs when produce was skipped because the date is already ingested
        stage("ingest", "ingest", uses=(KAFKA,), depends_on_past=True, trigger_rule=TriggerRule.NONE_FAILED)
    with TaskGroup("clean") as clean:
        stage("clean", "clean")
    with TaskGroup("segment") as segment:
        stage("segment", "segment")
    with TaskGroup("offers") as offers:
        stage("offers", "offers")
    with TaskGroup("analytics") as analytics:
        stage("analytics", "analytics")
    with TaskGroup("publish_greenplum") as publish_greenplum:
        # verify: the database's own segmentation against the mart, client by client (exit 4)
        stage("publish", "publish", "greenplum", uses=(GREENPLUM,)) >> stage(
            "verify", "verify", "greenplum", uses=(GREENPLUM,)
        )
    with TaskGroup("publish_clickhouse") as publish_clickhouse:
        stage("publish", "publish", "clickhouse", uses=(CLICKHOUSE,))
    with TaskGroup("report") as report:
        stage("report", "report", uses=(CLICKHOUSE,))
    chain(
        generate_and_produce,
        ingest,
        clean,
        segment,
        offers,
        analytics,
        publish_greenplum,
        publish_clickhouse,
        report,
    )


ebroker_daily()
