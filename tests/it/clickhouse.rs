//! ClickHouse 18.16 from Debian (`EBROKER_TEST_CLICKHOUSE`, started by
//! deploy/local/clickhouse.sh), in one test because it stops the shared server part-way:
//! published counts and sums equal the marts; a second publish leaves one copy; the reports
//! run in ClickHouse equal DataFusion's over the marts; a server killed during a publish
//! gives a clear error and, once restarted, the rerun leaves one copy. A second server whose
//! time zone is America/New_York (`EBROKER_TEST_CLICKHOUSE_NY`) checks that a day is a UTC
//! day there too.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use ebroker::runner::Status;
use ebroker_integration::day;
use ebroker_integration::{clickhouse_settings, repo_root, service, unique_name, TestWarehouse};
use ebroker_integration::{run, RunOptions};

const DATE: &str = "2024-06-01";

/// One number per query, as text, over ClickHouse's HTTP interface.
async fn ch_scalar(query: &str) -> String {
    ch_text(&service("EBROKER_TEST_CLICKHOUSE"), query).await
}

/// The TSV result of `query` on the server at `url`, trimmed.
async fn ch_text(url: &str, query: &str) -> String {
    let client = clickhouse::Client::default().with_url(url).with_validation(false);
    let bytes = client.query(query).fetch_bytes("TSV").unwrap().collect().await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap().trim().to_string()
}

/// Runs one statement on the server at `url`.
async fn ch_execute(url: &str, statement: &str) {
    let client = clickhouse::Client::default().with_url(url).with_validation(false);
    client
        .query(statement)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// (rows, sum of the money column) of one day of a ClickHouse table.
async fn ch_totals(db: &str, table: &str, money: &str, day_column: &str) -> (u64, f64) {
    let text = ch_scalar(&format!(
        "SELECT count(), toFloat64(sum({money})) FROM {db}.{table} WHERE toDate({day_column}) = toDate('{DATE}')"
    ))
    .await;
    let (n, sum) = text.split_once('\t').unwrap();
    (n.parse().unwrap(), sum.parse().unwrap())
}

/// The same over the mart in the warehouse.
async fn mart_totals(wh: &TestWarehouse, table: &str, money: &str) -> (u64, f64) {
    ebroker::tables::partitions::register_mart(&wh.engine, &wh.warehouse, table, day(DATE))
        .await
        .unwrap();
    let r = wh
        .rows(&format!(
            "SELECT count(*), CAST(sum(round({money}, 2)) AS DOUBLE) FROM {table}"
        ))
        .await;
    (r[0][0].parse().unwrap(), r[0][1].parse().unwrap())
}

async fn assert_one_copy(wh: &TestWarehouse, db: &str) {
    for (table, money, day) in [
        ("marketing_clients", "total_value", "last_updated"),
        ("targeted_offers", "expected_revenue", "created_at"),
        ("marketing_analytics_daily", "total_revenue", "analysis_date"),
    ] {
        let (ch_rows, ch_sum) = ch_totals(db, table, money, day).await;
        let (mart_rows, mart_sum) = mart_totals(wh, table, money).await;
        assert_eq!(ch_rows, mart_rows, "{table}: rows in ClickHouse = rows in the mart");
        assert!(
            (ch_sum - mart_sum).abs() < 0.005 * (1.0 + mart_rows as f64 / 1000.0),
            "{table}: sum({money}) {ch_sum} vs {mart_sum}"
        );
    }
}

fn kill_server() {
    let pid_file = std::path::Path::new(&service("EBROKER_CH_DIR")).join("server.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_server() {
    let status = std::process::Command::new(repo_root().join("deploy/local/clickhouse.sh"))
        .arg("start")
        .status()
        .unwrap();
    assert!(status.success(), "clickhouse.sh start failed");
}

/// Numbers compare as numbers (ClickHouse prints Decimals with their scale).
fn same_cells(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() < 0.006,
        _ => a == b,
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_exact_idempotent_survives_a_killed_server_and_reports_match() {
    let db = unique_name("mk");
    let wh = TestWarehouse::with_settings(clickhouse_settings(&db));
    let options = RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: None,
        clients: 20_000,
        seed: 31,
        dirty: 0.03,
        resume: false,
    };
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options)
        .await
        .unwrap();
    assert!(
        state.stages.iter().all(|s| s.status != Status::Failed),
        "{}",
        state.render()
    );
    assert_one_copy(&wh, &db).await;

    // Twice: still one copy.
    ebroker::sinks::clickhouse::publish(&wh.config.clickhouse, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    assert_one_copy(&wh, &db).await;

    // The reports in ClickHouse equal DataFusion's over the marts.
    let ours = ebroker::stages::analytics::analytics(&wh.engine, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    let theirs = ebroker::sinks::clickhouse::report(&wh.config.clickhouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    for (title, ch_batches) in &theirs {
        let Some((_, df_batches)) = ours.sections.iter().find(|(t, _)| t == title) else {
            continue;
        };
        let (df, ch) = (
            ebroker_integration::to_strings(df_batches),
            ebroker_integration::to_strings(ch_batches),
        );
        assert_eq!(df.len(), ch.len(), "{title}: row count");
        for (d, c) in df.iter().zip(&ch) {
            assert!(
                d.len() == c.len() && d.iter().zip(c).all(|(x, y)| same_cells(x, y)),
                "{title}: DataFusion {d:?} vs ClickHouse {c:?}"
            );
        }
    }
    assert!(theirs
        .iter()
        .any(|(t, b)| t == "Segment distribution" && b[0].num_rows() >= 6));

    // Kill the server while a publish runs: a clear error; restart; the rerun leaves one copy.
    let stage_seen =
        format!("SELECT count() FROM system.tables WHERE database = '{db}' AND name LIKE '%__ebroker_stage'");
    let mut publish = None;
    for _ in 0..5 {
        let (config, warehouse, sql) = (wh.config.clickhouse.clone(), wh.warehouse.clone(), wh.sql.clone());
        let running =
            tokio::spawn(
                async move { ebroker::sinks::clickhouse::publish(&config, &warehouse, &sql, day(DATE)).await },
            );
        while !running.is_finished() && ch_scalar(&stage_seen).await == "0" {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if running.is_finished() {
            running.await.unwrap().unwrap(); // too quick to catch: publish again
            continue;
        }
        kill_server();
        publish = Some(running);
        break;
    }
    let publish = publish.expect("five publishes finished before the server could be killed");
    let err = publish.await.unwrap().expect_err("a publish whose server died fails");
    let text = format!("{err:#}");
    assert!(
        text.contains(&service("EBROKER_TEST_CLICKHOUSE")) && text.contains("gave up after 2 attempts"),
        "{text}"
    );
    start_server();
    ebroker::sinks::clickhouse::publish(&wh.config.clickhouse, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    assert_one_copy(&wh, &db).await;
}

/// The settings of `clickhouse_settings`, for the server at `url`.
fn clickhouse_settings_at(url: &str, database: &str) -> Vec<(String, String)> {
    vec![
        ("clickhouse.url".into(), format!("{url:?}")),
        ("clickhouse.database".into(), format!("{database:?}")),
        ("clickhouse.retries".into(), "2".into()),
        ("clickhouse.retry_backoff_ms".into(), "200".into()),
        ("clickhouse.batch_rows".into(), "10000".into()),
    ]
}

/// D 00:00 UTC of DATE (2024-06-01), as a Unix time.
const DATE_MIDNIGHT_UTC: &str = "1717200000";

/// On a server whose time zone is America/New_York (`EBROKER_TEST_CLICKHOUSE_NY`), D 00:00 UTC
/// is 20:00 of the day before: with zone-less DateTime columns the 1st of June fell into May's
/// partition and the publish lost or doubled it. DATE, the 1st of a month, published three
/// times (once by the run, twice more) is in each table once (also after OPTIMIZE FINAL, which
/// would collapse or sum copies), in partition 202406 only, and its DateTimes read back as D
/// 00:00 UTC; the reports find the day. A table left from before DateTime('UTC') (a zone-less
/// day column) is refused there with a message saying what to do.
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_west_of_utc_keeps_the_first_of_a_month_once_in_its_utc_month() {
    let url = service("EBROKER_TEST_CLICKHOUSE_NY");
    assert_eq!(
        ch_text(&url, "SELECT timezone()").await,
        "America/New_York",
        "{url} is the server in New York time that deploy/local/test.sh starts"
    );
    let db = unique_name("mk_ny");
    let wh = TestWarehouse::with_settings(clickhouse_settings_at(&url, &db));
    let options = RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: None,
        clients: 2_000,
        seed: 47,
        dirty: 0.03,
        resume: false,
    };
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options)
        .await
        .unwrap();
    assert!(
        state.stages.iter().all(|s| s.status != Status::Failed),
        "{}",
        state.render()
    );
    for _ in 0..2 {
        ebroker::sinks::clickhouse::publish(&wh.config.clickhouse, &wh.warehouse, &wh.sql, day(DATE))
            .await
            .unwrap();
    }

    let mut mart_rows = std::collections::BTreeMap::new();
    for (table, money, day_column, is_datetime) in [
        ("marketing_clients", "total_value", "last_updated", true),
        ("targeted_offers", "expected_revenue", "created_at", true),
        ("marketing_analytics_daily", "total_revenue", "analysis_date", false),
    ] {
        let (rows, sum) = mart_totals(&wh, table, money).await;
        assert!(rows > 0, "{table}: the mart has rows");
        mart_rows.insert(table, rows);
        for when in ["as published", "after OPTIMIZE FINAL"] {
            if when == "after OPTIMIZE FINAL" {
                ch_execute(&url, &format!("OPTIMIZE TABLE {db}.{table} FINAL")).await;
            }
            // The whole table: its database is this test's, and only DATE was published.
            let text = ch_text(
                &url,
                &format!("SELECT count(), toFloat64(sum({money})) FROM {db}.{table}"),
            )
            .await;
            let (ch_rows, ch_sum) = text.split_once('\t').unwrap();
            let (ch_rows, ch_sum): (u64, f64) = (ch_rows.parse().unwrap(), ch_sum.parse().unwrap());
            assert_eq!(ch_rows, rows, "{table} {when}: DATE is there once (rows = the mart's)");
            assert!(
                (ch_sum - sum).abs() < 0.005 * (1.0 + rows as f64 / 1000.0),
                "{table} {when}: sum({money}) {ch_sum} vs the mart's {sum}"
            );
        }
        let partitions = ch_text(
            &url,
            &format!(
                "SELECT DISTINCT partition FROM system.parts \
                 WHERE database = '{db}' AND table = '{table}' AND active ORDER BY partition"
            ),
        )
        .await;
        assert_eq!(
            partitions, "202406",
            "{table}: the partitions of DATE are its month's only"
        );
        let values = if is_datetime {
            format!(
                "SELECT DISTINCT concat(toString({day_column}, 'UTC'), '|', toString({day_column}), '|', \
                 toString(toUInt32({day_column})), '|', toString(toDate({day_column}))) FROM {db}.{table}"
            )
        } else {
            format!("SELECT DISTINCT toString({day_column}) FROM {db}.{table}")
        };
        let expected = if is_datetime {
            // in UTC, in the column's own zone, as a Unix time, as a date
            format!("{DATE} 00:00:00|{DATE} 00:00:00|{DATE_MIDNIGHT_UTC}|{DATE}")
        } else {
            DATE.to_string()
        };
        assert_eq!(
            ch_text(&url, &values).await,
            expected,
            "{table}.{day_column}: D 00:00 UTC on a server in New York time"
        );
    }

    // The reports take DATE's rows by their UTC date.
    let reports = ebroker::sinks::clickhouse::report(&wh.config.clickhouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    let column_sum = |title: &str, column: usize| -> u64 {
        let (_, batches) = reports
            .iter()
            .find(|(t, _)| t == title)
            .unwrap_or_else(|| panic!("no report {title}"));
        ebroker_integration::to_strings(batches)
            .iter()
            .map(|row| row[column].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        column_sum("Segment distribution", 1),
        mart_rows["marketing_clients"],
        "the segment distribution counts DATE's clients"
    );
    assert_eq!(
        column_sum("Offers by type and combined segment", 2),
        mart_rows["targeted_offers"],
        "the offers report counts DATE's offers"
    );

    // A marketing_clients left from the zone-less DDL: refused, not published into.
    let old = unique_name("mk_ny_old");
    ch_execute(&url, &format!("CREATE DATABASE {old}")).await;
    let ddl = wh
        .sql
        .render("clickhouse/marketing_clients.sql", &[("database", &old)])
        .unwrap()
        .replace("DateTime('UTC')", "DateTime");
    ch_execute(&url, &ddl).await;
    let mut config = wh.config.clickhouse.clone();
    config.database = old.clone();
    let err = ebroker::sinks::clickhouse::publish(&config, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .expect_err("a zone-less DateTime day column on a server in New York time is refused");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("{old}.marketing_clients.last_updated"))
            && text.contains("America/New_York")
            && text.contains("DateTime('UTC')"),
        "{text}"
    );
    assert_eq!(
        ch_text(&url, &format!("SELECT count() FROM {old}.marketing_clients")).await,
        "0"
    );
}
