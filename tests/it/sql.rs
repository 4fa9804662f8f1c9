//! SQL for analysts over a generated warehouse: `ebroker sql -e` in every output format with
//! results checked against the clean report, syntax errors with their position, and the Flight
//! SQL endpoint of `ebroker serve` queried by the Rust arrow-flight client and by the stock
//! Python ADBC driver (`EBROKER_TEST_PYTHON`, with adbc-driver-flightsql and pyarrow).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use chrono::NaiveDate;
use ebroker_integration::{ebroker_binary, service, TestWarehouse};
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

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server(wh: &TestWarehouse, port: u16, token: &str) -> Server {
    let child = Command::new(ebroker_binary())
        .args([
            "--warehouse",
            &wh.config.warehouse.root,
            "serve",
            "--port",
            &port.to_string(),
            "--token",
            token,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ebroker serve did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_serves_the_catalog_to_the_rust_and_python_clients() {
    let (wh, report) = generated().await;
    let clients = report.table("clients").unwrap().written;
    let port = free_port();
    let _server = start_server(&wh, port, "s3cret").await;

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
