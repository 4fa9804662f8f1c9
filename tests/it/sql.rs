//! SQL for analysts over a generated warehouse: `ebroker sql -e` in every output format with
//! results checked against the clean report, syntax errors with their position, and the Flight
//! SQL endpoint of `ebroker serve` queried by the Rust arrow-flight client and by the stock
//! Python ADBC driver (`EBROKER_TEST_PYTHON`, with adbc-driver-flightsql and pyarrow): its
//! catalog, its refusal of every statement that is not a query, its credentials and its
//! bounds on time and concurrency.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use chrono::NaiveDate;
use ebroker_integration::{ebroker_binary, free_port, service, start_server, TestWarehouse};
use ebroker_integration::{run, RunOptions};
use futures::TryStreamExt;

const DATE: &str = "2024-06-01";

async fn generated() -> (TestWarehouse, ebroker::stages::clean::CleanReport) {
    let wh = TestWarehouse::new();
    let options = RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: None,
        clients: 3_000,
        seed: 41,
        dirty: 0.03,
        resume: false,
    };
    run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options)
        .await
        .unwrap();
    let report = wh
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    (wh, report)
}

fn sql(wh: &TestWarehouse, args: &[&str]) -> std::process::Output {
    Command::new(ebroker_binary())
        .args(["--warehouse", &wh.config.warehouse.root, "sql"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout_ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "ebroker sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_answers_over_every_zone_in_every_format() {
    let (wh, report) = generated().await;
    let clients = report.table("clients").unwrap().written;
    let quarantined = report.table("payments").unwrap().quarantined;

    let table = stdout_ok(sql(
        &wh,
        &[
            "-e",
            "SELECT count(*) AS n FROM cleaned.clients WHERE processing_date = DATE '2024-06-01'",
        ],
    ));
    assert!(table.contains(&format!("| {clients} ")), "{table}");

    let csv = stdout_ok(sql(&wh, &["--format", "csv", "-e", "SELECT count(*) AS n FROM quarantine.payments; SELECT count(DISTINCT client_id) AS c FROM marts.targeted_offers"]));
    assert_eq!(
        csv,
        format!("n\n{quarantined}\nc\n{clients}\n"),
        "two statements, two results"
    );

    let json = stdout_ok(sql(&wh, &["--format", "json", "-e", "SELECT combined_segment, count(*) AS n FROM marts.marketing_clients GROUP BY combined_segment ORDER BY n DESC"]));
    let total: u64 = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, clients, "{json}");

    let parquet = wh.dir.path().join("offers.parquet");
    stdout_ok(sql(
        &wh,
        &[
            "--format",
            "parquet",
            "--output",
            parquet.to_str().unwrap(),
            "-e",
            "SELECT * FROM marts.targeted_offers",
        ],
    ));
    wh.engine
        .register_parquet_dir("exported", &url::Url::from_file_path(&parquet).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        wh.rows("SELECT count(*) FROM exported").await[0][0],
        (clients * 3).to_string()
    );

    let raw_zone = stdout_ok(sql(
        &wh,
        &[
            "--format",
            "csv",
            "-e",
            "SELECT count(*) AS n FROM quarantine.clients WHERE reason <> ''",
        ],
    ));
    assert_eq!(
        raw_zone,
        format!("n\n{}\n", report.table("clients").unwrap().quarantined)
    );

    let bad = sql(&wh, &["-e", "SELEC count(*) FROM cleaned.clients"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SQL error") && err.contains("Line: 1, Column: 1") && !err.contains("backtrace"),
        "{err}"
    );
    let missing = sql(&wh, &["-e", "SELECT * FROM cleaned.no_such_table"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no_such_table"));
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_serves_the_catalog_to_the_rust_and_python_clients() {
    let (wh, report) = generated().await;
    let clients = report.table("clients").unwrap().written;
    let port = free_port();
    let _server = start_server(&wh, port, &["--token", "s3cret"]).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel.clone());
    assert!(
        client.execute("SELECT 1".into(), None).await.is_err(),
        "no token, no answer"
    );
    client.set_token("s3cret".into());

    let tables = client
        .get_tables(arrow_flight::sql::CommandGetTables {
            include_schema: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let batches: Vec<_> = client
        .do_get(tables.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let listed: Vec<Vec<String>> = ebroker_integration::to_strings(&batches);
    for expected in [
        ("cleaned", "clients"),
        ("marts", "targeted_offers"),
        ("quarantine", "payments"),
        ("marts", "client_segmentation"),
    ] {
        assert!(
            listed.iter().any(|r| r[1] == expected.0 && r[2] == expected.1),
            "{expected:?} not in {listed:?}"
        );
    }

    let info = client
        .execute(
            "SELECT count(DISTINCT client_id) AS c FROM marts.targeted_offers".into(),
            None,
        )
        .await
        .unwrap();
    let batches: Vec<_> = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        ebroker_integration::to_strings(&batches),
        vec![vec![clients.to_string()]]
    );

    let mut prepared = client
        .prepare("SELECT count(*) AS n FROM cleaned.clients".into(), None)
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let batches: Vec<_> = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        ebroker_integration::to_strings(&batches),
        vec![vec![clients.to_string()]]
    );
    prepared.close().await.unwrap();

    // The stock Python client from PyPI: list the tables, run a query, read the result.
    let script = format!(
        r#"
import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions
conn = flightsql.connect("grpc://127.0.0.1:{port}", db_kwargs={{DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer s3cret"}})
objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
names = sorted(s["db_schema_name"] + "." + t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
print(" ".join(names))
cur = conn.cursor()
cur.execute("SELECT count(*) AS n FROM marts.marketing_clients")
print(cur.fetch_arrow_table().column("n")[0].as_py())
"#
    );
    let out = Command::new(service("EBROKER_TEST_PYTHON"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python ADBC client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let names = lines.next().unwrap();
    assert!(
        names.contains("marts.targeted_offers") && names.contains("cleaned.clients"),
        "{names}"
    );
    assert_eq!(lines.next().unwrap().trim(), clients.to_string());
}

/// What the stock Python client tries, as one JSON object: the rows of a query or the error
/// it got, per attempt, then the catalog as DBeaver lists it (catalogs, schemas, tables,
/// columns, table types). Arguments: the server's URI, the file a COPY would write.
const PYTHON_ATTEMPTS: &str = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions

uri, copy_target = sys.argv[1], sys.argv[2]

def bearer(token):
    return lambda: flightsql.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + token})

def basic(password):
    return lambda: flightsql.connect(uri, db_kwargs={"username": "analyst", "password": password})

def run(connect, sql):
    try:
        with connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table().to_pylist()
    except Exception as e:
        return " ".join(str(e).split())

count = "SELECT count(*) AS n FROM cleaned.clients"
result = {"before": run(bearer("s3cret"), count)}
attacks = {
    "create": "CREATE EXTERNAL TABLE leak (line VARCHAR) STORED AS CSV LOCATION '/etc/hostname'",
    "copy": "COPY (SELECT * FROM cleaned.clients) TO '" + copy_target + "' STORED AS CSV",
    "insert": "INSERT INTO cleaned.clients SELECT * FROM cleaned.clients",
    "set": "SET datafusion.execution.batch_size = 1",
    "drop": "DROP TABLE cleaned.clients",
}
for name, sql in attacks.items():
    result[name] = run(bearer("s3cret"), sql)
result["after"] = run(bearer("s3cret"), count)
result["wrong_token"] = run(bearer("wrong"), "SELECT 1 AS one")
result["basic"] = run(basic("s3cret"), "SELECT 1 AS one")
result["wrong_password"] = run(basic("wrong"), "SELECT 1 AS one")
with bearer("s3cret")() as conn:
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    schemas = [s for c in objects for s in c["catalog_db_schemas"] or []]
    tables = [(s["db_schema_name"], t) for s in schemas for t in s["db_schema_tables"] or []]
    result["catalogs"] = [c["catalog_name"] for c in objects]
    result["schemas"] = sorted(s["db_schema_name"] for s in schemas)
    result["tables"] = sorted(schema + "." + t["table_name"] for schema, t in tables)
    result["client_columns"] = sorted(
        col["column_name"]
        for schema, t in tables
        if (schema, t["table_name"]) == ("cleaned", "clients")
        for col in t["table_columns"] or []
    )
    result["table_types"] = conn.adbc_get_table_types()
print(json.dumps(result))
"#;

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_is_read_only_and_checks_credentials_for_the_python_client() {
    let (wh, report) = generated().await;
    let clients = report.table("clients").unwrap().written;
    let token_file = wh.dir.path().join("serve.token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let copy_target = wh.dir.path().join("stolen.csv");
    let port = free_port();
    let _server = start_server(&wh, port, &["--token-file", token_file.to_str().unwrap()]).await;

    let out = Command::new(service("EBROKER_TEST_PYTHON"))
        .args([
            "-c",
            PYTHON_ATTEMPTS,
            &format!("grpc://127.0.0.1:{port}"),
            copy_target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python ADBC client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for attack in ["create", "copy", "insert", "set", "drop"] {
        let said = result[attack].as_str().unwrap_or_default();
        assert!(
            said.contains("read-only") && said.contains("only SELECT, SHOW and EXPLAIN queries are allowed"),
            "{attack} was not refused as read-only: {}",
            result[attack]
        );
    }
    assert!(!copy_target.exists(), "COPY wrote {}", copy_target.display());
    let count = serde_json::json!([{ "n": clients }]);
    assert_eq!((&result["before"], &result["after"]), (&count, &count), "{result}");

    let refused = |key: &str, expected: &str| {
        let said = result[key].as_str().unwrap_or_default();
        assert!(said.contains(expected), "{key}: {}", result[key]);
    };
    refused("wrong_token", "Bearer <token>");
    refused("wrong_password", "wrong credentials");
    assert_eq!(
        result["basic"],
        serde_json::json!([{ "one": 1 }]),
        "the Basic handshake"
    );

    assert!(!result["catalogs"].as_array().unwrap().is_empty(), "{result}");
    let listed = |key: &str, name: &str| result[key].as_array().unwrap().iter().any(|v| v == name);
    for schema in ["raw", "quarantine", "cleaned", "marts"] {
        assert!(listed("schemas", schema), "{schema} not in {}", result["schemas"]);
    }
    for table in ["cleaned.clients", "marts.targeted_offers", "quarantine.payments"] {
        assert!(listed("tables", table), "{table} not in {}", result["tables"]);
    }
    assert!(listed("client_columns", "client_id"), "{}", result["client_columns"]);
    assert_eq!(result["table_types"], serde_json::json!(["TABLE"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_bounds_the_time_and_number_of_queries() {
    let wh = TestWarehouse::new();
    let port = free_port();
    let settings = [
        "--set",
        "serve.query_timeout_secs=5",
        "--set",
        "serve.max_concurrent_queries=1",
    ];
    let _server = start_server(&wh, port, &settings).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    let slow = client
        .execute(
            "SELECT max(value % 7) AS m FROM generate_series(1, 100000000000)".into(),
            None,
        )
        .await
        .unwrap();
    let quick = client.execute("SELECT 1 AS one".into(), None).await.unwrap();
    let quick_ticket = quick.endpoint[0].ticket.clone().unwrap();

    let started = Instant::now();
    let running = client.do_get(slow.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    let Err(second) = client.do_get(quick_ticket.clone()).await else {
        panic!("a second query ran beside the first")
    };
    assert!(second.to_string().contains("serve.max_concurrent_queries"), "{second}");
    let Err(stopped) = running.try_collect::<Vec<_>>().await else {
        panic!("the slow query finished within its 5 s")
    };
    assert!(stopped.to_string().contains("serve.query_timeout_secs"), "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped after {:?}",
        started.elapsed()
    );

    let batches: Vec<_> = client.do_get(quick_ticket).await.unwrap().try_collect().await.unwrap();
    assert_eq!(
        ebroker_integration::to_strings(&batches),
        vec![vec!["1".to_string()]],
        "the slot is free again"
    );
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let wh = TestWarehouse::new();
    let mut config = wh.config.clone();
    config.serve.host = "0.0.0.0".into();
    let Err(err) = ebroker::cli::flight::ServeSettings::from_config(&config.serve) else {
        panic!("0.0.0.0 without a token was accepted")
    };
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("0.0.0.0") && text.contains("serve.token") && text.contains("--token-file"),
        "{text}"
    );

    let mut child = Command::new(ebroker_binary())
        .args(["--warehouse", &wh.config.warehouse.root, "serve", "--host", "0.0.0.0"])
        .args(["--port", &free_port().to_string()])
        .env_remove("EBROKER_SERVE__TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ebroker serve --host 0.0.0.0 without a token is still running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("0.0.0.0") && stderr.contains("--token-file"),
        "{stderr}"
    );
}
