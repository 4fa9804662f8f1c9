//! `ebroker publish clickhouse` and `ebroker report` (docs/SPEC.md §8): the day's marketing_clients,
//! targeted_offers and marketing_analytics_daily marts go to ClickHouse over HTTP (RowBinary,
//! lz4, batches of `clickhouse.batch_rows`), and the standard reports run there.
//!
//! Idempotent and crash-safe per date, on ClickHouse 18.16 and current releases alike: each
//! table's month partition is rebuilt in a staging table (the month's other days copied
//! inside the server, then the day's rows inserted) and swapped in with one
//! `ALTER TABLE ... REPLACE PARTITION`, which is atomic. A crash before the swap leaves the
//! table as it was (the rerun drops the stale staging table first); after it, the day is
//! there exactly once. Deleting the day first (`ALTER ... DELETE`) was rejected: mutations
//! are asynchronous, and a crash between delete and insert would leave readers a hole.
//! Each table is retried with backoff as a unit; tables are published one after another.
//!
//! Days are UTC days whatever the server's time zone: the rows hold D 00:00 UTC, the tables'
//! DateTime columns are `DateTime('UTC')` (so `PARTITION BY toYYYYMM(..)` is the UTC month),
//! and the copy of the month's other days takes DateTime dates in UTC (`toDate(c, 'UTC')`).
//! A table created before that (a zone-less `DateTime` day column) on a server not in UTC
//! would put D on the day before and the 1st of a month in the previous month's partition:
//! publishing into it fails with a message saying so instead.

mod columns;

use std::time::Instant;

use clickhouse::Client;
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use serde::Serialize;

use crate::config::ClickHouseConfig;
use crate::error::{Error, Result};
use crate::retry::{retry, Backoff};
use crate::schema::marts::{Mart, MARKETING_ANALYTICS_DAILY, MARKETING_CLIENTS, TARGETED_OFFERS};
use crate::sql::SqlLibrary;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;
use clickhouse::insert_formatted::BufInsertFormatted;
use columns::{encode, parse_columns, ChType};

/// The tables `publish` creates, by their DDL file under `sql/clickhouse/`.
const TABLE_FILES: [&str; 5] = [
    "clickhouse/marketing_clients.sql",
    "clickhouse/targeted_offers.sql",
    "clickhouse/marketing_analytics_daily.sql",
    "clickhouse/marketing_campaign_results.sql",
    "clickhouse/campaign_performance.sql",
];

/// The reports `ebroker report` runs in ClickHouse: (title, SQL file).
pub const REPORTS: [(&str, &str); 4] = [
    (
        "Offers by type and combined segment",
        "clickhouse/report_offers_by_type.sql",
    ),
    (
        "Top 10 clients by expected revenue",
        "clickhouse/report_top_clients.sql",
    ),
    (
        "Offers by priority level and offer priority",
        "clickhouse/report_offers_by_priority.sql",
    ),
    ("Segment distribution", "clickhouse/report_segment_distribution.sql"),
];

/// A published mart, its table of the same name (`sql/clickhouse/<name>.sql`), and the
/// DateTime/Date column holding the day.
#[derive(Debug, Clone, Copy)]
struct Published {
    mart: &'static Mart,
    day_column: &'static str,
}

const PUBLISHED: [Published; 3] = [
    Published {
        mart: &MARKETING_CLIENTS,
        day_column: "last_updated",
    },
    Published {
        mart: &TARGETED_OFFERS,
        day_column: "created_at",
    },
    Published {
        mart: &MARKETING_ANALYTICS_DAILY,
        day_column: "analysis_date",
    },
];

/// RowBinary is sent to the server in chunks of about this many bytes.
const SEND_BYTES: usize = 256 << 10;

/// The DDL file of the table `name`.
fn table_file(name: &str) -> String {
    format!("clickhouse/{name}.sql")
}

/// Rows published per table.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub processing_date: ProcessingDate,
    pub tables: Vec<(String, u64)>,
    pub seconds: f64,
}

impl PublishReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    pub fn render(&self) -> String {
        let rows = self
            .tables
            .iter()
            .map(|(table, rows)| vec![table.clone(), rows.to_string()]);
        let mut out = crate::text::aligned(&["table", "rows"], rows.collect());
        let secs = self.seconds.max(1e-9);
        out.push_str(&format!(
            "published {} rows in {secs:.2} s ({:.0} rows/s)\n",
            self.rows(),
            self.rows() as f64 / secs
        ));
        out
    }
}

fn ch_error(config: &ClickHouseConfig, doing: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> Error {
    let (url, doing) = (crate::secrets::redact_urls(&config.url), doing.into());
    move |source| Error::ClickHouse {
        url,
        doing,
        source: Box::new(source),
    }
}

/// The HTTP client of the configured server (validation off: ClickHouse 18.16 has no
/// RowBinaryWithNamesAndTypes).
pub fn client(config: &ClickHouseConfig) -> Result<Client> {
    if !config.enabled() {
        return Err(Error::Config(
            "clickhouse.url is empty; set it (e.g. --set clickhouse.url=http://127.0.0.1:8123) to use ClickHouse"
                .into(),
        ));
    }
    Ok(Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_compression(clickhouse::Compression::Lz4)
        .with_validation(false))
}

/// Runs one statement.
async fn execute(client: &Client, config: &ClickHouseConfig, statement: &str, doing: &str) -> Result<()> {
    client.query(statement).execute().await.map_err(ch_error(config, doing))
}

/// Creates the database and the tables of `sql/clickhouse/` when missing.
pub async fn create_tables(client: &Client, config: &ClickHouseConfig, sql: &SqlLibrary) -> Result<()> {
    execute(
        client,
        config,
        &format!("CREATE DATABASE IF NOT EXISTS {}", config.database),
        "creating the database",
    )
    .await?;
    for file in TABLE_FILES {
        let ddl = sql.render(file, &[("database", &config.database)])?;
        execute(client, config, &ddl, &format!("creating the table of {file}")).await?;
    }
    Ok(())
}

/// Creates the tables when missing and checks that their day columns keep UTC days.
async fn prepare_tables(client: &Client, config: &ClickHouseConfig, sql: &SqlLibrary) -> Result<()> {
    create_tables(client, config, sql).await?;
    check_day_zones(client, config).await
}

/// Fails when a published table's day column is a DateTime whose dates are not UTC dates: a
/// zone-less `DateTime` (a table created before the DDL said `DateTime('UTC')`) on a server
/// whose time zone is not UTC, or a `DateTime` with another zone. `CREATE TABLE IF NOT EXISTS`
/// does not change such a table, and its month partitions cannot be altered in place.
async fn check_day_zones(client: &Client, config: &ClickHouseConfig) -> Result<()> {
    let db = &config.database;
    for published in PUBLISHED {
        let (table, column) = (published.mart.name, published.day_column);
        let query = format!(
            "SELECT type, timezone() FROM system.columns WHERE database = '{db}' AND table = '{table}' AND name = '{column}'"
        );
        let doing = format!("reading the type of {db}.{table}.{column}");
        let tsv = query_text(client, config, &query, "TSV", &doing).await?;
        let Some((ty, server_zone)) = tsv.lines().next().and_then(|l| l.split_once('\t')) else {
            continue;
        };
        let ty = unescape(ty);
        let zone = if ty == "DateTime" {
            server_zone.to_string()
        } else if let Some(zone) = ty.strip_prefix("DateTime('").and_then(|z| z.strip_suffix("')")) {
            zone.to_string()
        } else {
            continue; // a Date has no zone
        };
        if !is_utc(&zone) {
            return Err(Error::Config(format!(
                "ClickHouse column {db}.{table}.{column} is {ty} and the server's time zone is {server_zone}: \
                 its dates and month partitions are in {zone}, not UTC, so a day published there would \
                 land on the day before; the table predates DateTime('UTC') (sql/{}): recreate it from \
                 that file (e.g. create it under another name, INSERT ... SELECT the rows, rename both)",
                table_file(table)
            )));
        }
    }
    Ok(())
}

/// Whether the time zone `zone` is UTC by one of its names (a server configured with `UTC`
/// reports `Etc/UTC`).
fn is_utc(zone: &str) -> bool {
    let zone = zone.strip_prefix("Etc/").unwrap_or(zone);
    matches!(
        zone,
        "UTC" | "UCT" | "Universal" | "Zulu" | "GMT" | "GMT0" | "Greenwich"
    )
}

/// Publishes the day's three marts (see the module documentation).
pub async fn publish(
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<PublishReport> {
    let started = Instant::now();
    let client = client(config)?;
    with_retries(config, "creating tables", || prepare_tables(&client, config, sql)).await?;
    // INSERT takes an unqualified table name: the database goes on the client.
    let client = client.with_database(&config.database);
    let mut tables = Vec::new();
    for published in PUBLISHED {
        let name = published.mart.name;
        let rows = with_retries(config, &format!("publishing {name} for {date}"), || {
            replace_day(&client, config, warehouse, sql, published, date)
        })
        .await?;
        tracing::info!(table = name, rows, "published to ClickHouse");
        tables.push((name.to_string(), rows));
    }
    Ok(PublishReport {
        processing_date: date,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Retries `attempt` with exponential backoff while ClickHouse itself fails; bad data and
/// configuration fail at once. The last error names the server and what was being done.
async fn with_retries<T, F, Fut>(config: &ClickHouseConfig, what: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let policy = Backoff {
        max_attempts: config.retries,
        first_wait_ms: config.retry_backoff_ms,
    };
    let (outcome, tries) = retry(policy, what, |e| matches!(e, Error::ClickHouse { .. }), attempt).await;
    outcome.map_err(|error| match error {
        Error::ClickHouse { url, doing, source } => Error::ClickHouse {
            url,
            doing: format!("{doing} (gave up after {tries} attempts at {what})"),
            source,
        },
        other => other,
    })
}

/// Rebuilds the day's month partition of one table in a staging table and swaps it in.
async fn replace_day(
    client: &Client,
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    published: Published,
    date: ProcessingDate,
) -> Result<u64> {
    let db = &config.database;
    let table = format!("{db}.{}", published.mart.name);
    let stage_name = format!("{}__ebroker_stage", published.mart.name);
    let stage = format!("{db}.{stage_name}");
    let month = date.as_str()[..7].replace('-', "");
    let column = published.day_column;
    let other_days = other_days_of_month(column, day_column_is_date(sql, published)?, &month, date);
    execute(
        client,
        config,
        &format!("DROP TABLE IF EXISTS {stage}"),
        &format!("dropping {stage}"),
    )
    .await?;
    execute(
        client,
        config,
        &format!("CREATE TABLE {stage} AS {table}"),
        &format!("creating {stage}"),
    )
    .await?;
    execute(
        client,
        config,
        &format!("INSERT INTO {stage} SELECT * FROM {table} WHERE {other_days}"),
        &format!("copying the other days of {month} of {table}"),
    )
    .await?;
    let before = count_rows(client, config, &stage).await?;
    let rows = insert_mart(client, config, warehouse, sql, published, &stage_name, date).await?;
    let added = count_rows(client, config, &stage).await?.saturating_sub(before);
    if added != rows {
        return Err(Error::Reconcile {
            table: published.mart.name.to_string(),
            message: format!(
                "sent {rows} rows of {date} to ClickHouse but it holds {added} new rows in {stage}; the day was not swapped in"
            ),
        });
    }
    execute(
        client,
        config,
        &format!("ALTER TABLE {table} REPLACE PARTITION {month} FROM {stage}"),
        &format!("swapping {month} into {table}"),
    )
    .await?;
    execute(
        client,
        config,
        &format!("DROP TABLE IF EXISTS {stage}"),
        &format!("dropping {stage}"),
    )
    .await?;
    Ok(rows)
}

/// The rows of `table`, as ClickHouse counts them.
async fn count_rows(client: &Client, config: &ClickHouseConfig, table: &str) -> Result<u64> {
    let doing = format!("counting the rows of {table}");
    let tsv = query_text(client, config, &format!("SELECT count() FROM {table}"), "TSV", &doing).await?;
    tsv.trim().parse().map_err(|_| Error::Stage {
        stage: "publish clickhouse".into(),
        message: format!("{doing}: ClickHouse answered {tsv:?}"),
    })
}

/// The answer to `query` in `format` (TSV, TSVWithNames), as text.
async fn query_text(
    client: &Client,
    config: &ClickHouseConfig,
    query: &str,
    format: &str,
    doing: &str,
) -> Result<String> {
    let bytes = client
        .query(query)
        .fetch_bytes(format)
        .map_err(ch_error(config, doing))?
        .collect()
        .await
        .map_err(ch_error(config, doing))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether the day column of `published` is a `Date` (else a DateTime) in its DDL file.
fn day_column_is_date(sql: &SqlLibrary, published: Published) -> Result<bool> {
    let file = table_file(published.mart.name);
    let columns = parse_columns(&sql.get(&file)?).map_err(|m| Error::Config(format!("sql/{file}: {m}")))?;
    let column = columns
        .iter()
        .find(|c| c.name == published.day_column)
        .ok_or_else(|| Error::Config(format!("sql/{file} has no column {}", published.day_column)))?;
    Ok(column.ty == ChType::Date)
}

/// The `WHERE` of the rows of `month` (YYYYMM) other than `date` in the day column `column`.
/// A DateTime's month and date are taken in UTC, as the rows were written, whatever the
/// column's or the server's zone; a Date has no zone (ClickHouse 18.16 refuses one for it).
fn other_days_of_month(column: &str, is_date: bool, month: &str, date: ProcessingDate) -> String {
    let zone = if is_date { "" } else { ", 'UTC'" };
    format!("toYYYYMM({column}{zone}) = {month} AND toDate({column}{zone}) != toDate('{date}')")
}

/// Inserts the day's mart rows into `target` (whose columns are those of the table's DDL
/// file) as RowBinary, in INSERTs of at most `batch_rows` rows.
async fn insert_mart(
    client: &Client,
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    published: Published,
    target: &str,
    date: ProcessingDate,
) -> Result<u64> {
    let mart = published.mart.name;
    let file = table_file(mart);
    let columns = parse_columns(&sql.get(&file)?).map_err(|m| Error::Config(format!("sql/{file}: {m}")))?;
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let statement = format!("INSERT INTO {target} ({}) FORMAT RowBinary", names.join(", "));
    let day = crate::formats::fields::days_since_epoch(date.date());
    let bad = |message: String| Error::Input {
        path: warehouse
            .url(&Warehouse::partition(Zone::Marts, mart, date))
            .to_string(),
        message,
    };
    let mut batches = crate::tables::partitions::read_partition(warehouse, Zone::Marts, mart, date, 8192).await?;
    let (mut sent, mut in_insert, mut insert) = (0u64, 0usize, None);
    let mut rows = Vec::new();
    while let Some(batch) = batches.try_next().await? {
        if in_insert + batch.num_rows() > config.batch_rows && in_insert > 0 {
            end_insert(config, insert.take(), target).await?;
            in_insert = 0;
        }
        rows.clear();
        encode(&columns, &batch, published.day_column, day, &mut rows).map_err(bad)?;
        let open = insert.get_or_insert_with(|| client.insert_formatted_with(statement.clone()).buffered());
        open.write_buffered(&rows);
        if open.buf_len() >= SEND_BYTES {
            open.flush()
                .await
                .map_err(ch_error(config, format!("inserting into {target}")))?;
        }
        in_insert += batch.num_rows();
        sent += batch.num_rows() as u64;
    }
    end_insert(config, insert, target).await?;
    Ok(sent)
}

async fn end_insert(config: &ClickHouseConfig, insert: Option<BufInsertFormatted>, target: &str) -> Result<()> {
    match insert {
        Some(mut insert) => insert
            .end()
            .await
            .map_err(ch_error(config, format!("finishing an INSERT into {target}"))),
        None => Ok(()),
    }
}

/// Runs the standard reports and the segment distribution in ClickHouse for `date`.
pub async fn report(
    config: &ClickHouseConfig,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<Vec<(String, Vec<RecordBatch>)>> {
    let client = client(config)?;
    let mut sections = Vec::new();
    for (title, file) in REPORTS {
        let query = sql.render(
            file,
            &[("database", &config.database), ("processing_date", date.as_str())],
        )?;
        let tsv = query_text(&client, config, &query, "TSVWithNames", &format!("running {file}")).await?;
        sections.push((title.to_string(), vec![tsv_to_batch(&tsv)?]));
    }
    Ok(sections)
}

/// A TSVWithNames result as a batch of text columns.
fn tsv_to_batch(tsv: &str) -> Result<datafusion::arrow::record_batch::RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let mut lines = tsv.lines();
    let header: Vec<String> = lines.next().unwrap_or_default().split('\t').map(unescape).collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split('\t').map(unescape).collect()).collect();
    let schema = std::sync::Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| {
            std::sync::Arc::new(StringArray::from(
                rows.iter().map(|r| r.get(i).cloned()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    datafusion::arrow::record_batch::RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::engine("reading a ClickHouse report")(e.into()))
}

/// Undoes TSV escaping (`\t`, `\n`, `\\`).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
