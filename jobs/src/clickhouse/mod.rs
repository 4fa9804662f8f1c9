//! `ebroker publish clickhouse` and `ebroker report` (SPEC §8): the day's marketing_clients,
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

pub mod rows;

use std::time::{Duration, Instant};

use clickhouse::Client;
use futures::TryStreamExt;
use serde::Serialize;

use crate::analytics::AnalyticsReport;
use crate::config::ClickHouseConfig;
use crate::error::{Error, Result};
use crate::sql::SqlLibrary;
use crate::storage::{Warehouse, Zone};
use rows::Columns;

/// Name of the stage in run state.
pub const STAGE: &str = "publish_clickhouse";

/// The tables `publish` creates, by their DDL file under `sql/clickhouse/`.
pub const TABLE_FILES: [&str; 5] = [
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

/// A published table: its name and the DateTime/Date column holding the day.
#[derive(Debug, Clone, Copy)]
struct Published {
    table: &'static str,
    day_column: &'static str,
}

const PUBLISHED: [Published; 3] = [
    Published {
        table: "marketing_clients",
        day_column: "last_updated",
    },
    Published {
        table: "targeted_offers",
        day_column: "created_at",
    },
    Published {
        table: "marketing_analytics_daily",
        day_column: "analysis_date",
    },
];

/// Rows published per table.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub processing_date: String,
    pub tables: Vec<(String, u64)>,
    pub seconds: f64,
}

impl PublishReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    pub fn render(&self) -> String {
        let mut out = format!("{:<28} {:>12}\n", "table", "rows");
        for (table, rows) in &self.tables {
            out.push_str(&format!("{table:<28} {rows:>12}\n"));
        }
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
    let (url, doing) = (config.url.clone(), doing.into());
    move |source| Error::ClickHouse { url, doing, source }
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

/// Publishes the day's three marts (see the module documentation).
pub async fn publish(
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: &str,
) -> Result<PublishReport> {
    let started = Instant::now();
    let day = crate::clean::fields::parse_date(date)
        .ok_or_else(|| Error::Usage(format!("`{date}` is not a date; write it as YYYY-MM-DD")))?;
    let client = client(config)?;
    with_retries(config, "creating tables", || create_tables(&client, config, sql)).await?;
    // INSERT takes an unqualified table name: the database goes on the client.
    let client = client.with_database(&config.database);
    let mut tables = Vec::new();
    for published in PUBLISHED {
        let rows = with_retries(config, &format!("publishing {} for {date}", published.table), || {
            replace_day(&client, config, warehouse, published, date, day)
        })
        .await?;
        tracing::info!(table = published.table, rows, "published to ClickHouse");
        tables.push((published.table.to_string(), rows));
    }
    Ok(PublishReport {
        processing_date: date.into(),
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Retries `attempt` with exponential backoff while ClickHouse itself fails; bad data and
/// configuration fail at once. The last error names the server and what was being done.
async fn with_retries<T, F, Fut>(config: &ClickHouseConfig, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e @ Error::ClickHouse { .. }) if tries < config.retries.max(1) => {
                let wait = Duration::from_millis(config.retry_backoff_ms.saturating_mul(1 << (tries - 1).min(16)));
                tracing::warn!(error = %e, attempt = tries, ?wait, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(Error::ClickHouse { url, doing, source }) => {
                return Err(Error::ClickHouse {
                    url,
                    doing: format!("{doing} (gave up after {tries} attempts at {what})"),
                    source,
                });
            }
            other => return other,
        }
    }
}

/// Rebuilds the day's month partition of one table in a staging table and swaps it in.
async fn replace_day(
    client: &Client,
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    published: Published,
    date: &str,
    day: i32,
) -> Result<u64> {
    let db = &config.database;
    let table = format!("{db}.{}", published.table);
    let stage_name = format!("{}__ebroker_stage", published.table);
    let stage = format!("{db}.{stage_name}");
    let month = date[..7].replace('-', "");
    let column = published.day_column;
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
        &format!("INSERT INTO {stage} SELECT * FROM {table} WHERE toYYYYMM({column}) = {month} AND toDate({column}) != toDate('{date}')"),
        &format!("copying the other days of {month} of {table}"),
    )
    .await?;
    let rows = insert_mart(client, config, warehouse, published.table, &stage_name, date, day).await?;
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

/// Inserts the day's mart rows into `target` in batches of `batch_rows`.
async fn insert_mart(
    client: &Client,
    config: &ClickHouseConfig,
    warehouse: &Warehouse,
    mart: &str,
    target: &str,
    date: &str,
    day: i32,
) -> Result<u64> {
    let mut batches = crate::marts::read_partition(warehouse, Zone::Marts, mart, date).await?;
    let bad = |message: String| Error::Input {
        path: warehouse
            .url(&Warehouse::partition(Zone::Marts, mart, date))
            .to_string(),
        message,
    };
    let mut sent: u64 = 0;
    let mut in_insert = 0usize;
    let mut writer = RowWriter::None;
    while let Some(batch) = batches.try_next().await? {
        let columns = Columns::new(batch);
        if in_insert + columns.len() > config.batch_rows && in_insert > 0 {
            writer.end(config, target).await?;
            in_insert = 0;
        }
        if matches!(writer, RowWriter::None) {
            writer = RowWriter::open(client, config, mart, target).await?;
        }
        writer.write(config, &columns, day, target).await.map_err(|e| match e {
            WriteError::Data(m) => bad(m),
            WriteError::Server(e) => e,
        })?;
        in_insert += columns.len();
        sent += columns.len() as u64;
    }
    writer.end(config, target).await?;
    Ok(sent)
}

enum WriteError {
    Data(String),
    Server(Error),
}

/// One open INSERT of a mart's row type.
enum RowWriter {
    None,
    Clients(clickhouse::insert::Insert<rows::MarketingClient<'static>>),
    Offers(clickhouse::insert::Insert<rows::TargetedOffer<'static>>),
    Daily(clickhouse::insert::Insert<rows::AnalyticsDaily<'static>>),
}

impl RowWriter {
    async fn open(client: &Client, config: &ClickHouseConfig, mart: &str, target: &str) -> Result<RowWriter> {
        let doing = format!("starting an INSERT into {target}");
        Ok(match mart {
            "marketing_clients" => RowWriter::Clients(client.insert(target).await.map_err(ch_error(config, doing))?),
            "targeted_offers" => RowWriter::Offers(client.insert(target).await.map_err(ch_error(config, doing))?),
            _ => RowWriter::Daily(client.insert(target).await.map_err(ch_error(config, doing))?),
        })
    }

    async fn end(&mut self, config: &ClickHouseConfig, target: &str) -> Result<()> {
        let doing = format!("finishing an INSERT into {target}");
        match std::mem::replace(self, RowWriter::None) {
            RowWriter::None => Ok(()),
            RowWriter::Clients(i) => i.end().await.map_err(ch_error(config, doing)),
            RowWriter::Offers(i) => i.end().await.map_err(ch_error(config, doing)),
            RowWriter::Daily(i) => i.end().await.map_err(ch_error(config, doing)),
        }
    }

    async fn write(
        &mut self,
        config: &ClickHouseConfig,
        c: &Columns,
        day: i32,
        target: &str,
    ) -> std::result::Result<(), WriteError> {
        let server = |e| WriteError::Server(ch_error(config, format!("inserting into {target}"))(e));
        match self {
            RowWriter::None => Ok(()),
            RowWriter::Clients(insert) => {
                let (id, name) = (
                    c.text("client_id").map_err(WriteError::Data)?,
                    c.text("client_name").map_err(WriteError::Data)?,
                );
                let (ps, ts, cs) = (
                    c.text("portfolio_segment").map_err(WriteError::Data)?,
                    c.text("transaction_segment").map_err(WriteError::Data)?,
                    c.text("combined_segment").map_err(WriteError::Data)?,
                );
                let (total, score, level, updated) = (
                    c.float("total_value").map_err(WriteError::Data)?,
                    c.int("activity_score").map_err(WriteError::Data)?,
                    c.int("priority_level").map_err(WriteError::Data)?,
                    c.seconds("last_updated").map_err(WriteError::Data)?,
                );
                for r in 0..c.len() {
                    let row = rows::MarketingClient {
                        client_id: rows::text(&id, "client_id", r).map_err(WriteError::Data)?,
                        client_name: rows::optional_text(&name, r),
                        portfolio_segment: rows::text(&ps, "portfolio_segment", r).map_err(WriteError::Data)?,
                        transaction_segment: rows::text(&ts, "transaction_segment", r).map_err(WriteError::Data)?,
                        combined_segment: rows::text(&cs, "combined_segment", r).map_err(WriteError::Data)?,
                        total_value: rows::cents(&total, "total_value", r).map_err(WriteError::Data)?,
                        activity_score: rows::value(&score, "activity_score", r).map_err(WriteError::Data)?,
                        priority_level: rows::value(&level, "priority_level", r).map_err(WriteError::Data)?,
                        last_updated: rows::value(&updated, "last_updated", r).map_err(WriteError::Data)?,
                    };
                    insert.write(&row).await.map_err(server)?;
                }
                Ok(())
            }
            RowWriter::Offers(insert) => {
                let d = WriteError::Data;
                let (oid, id, name, seg, cs) = (
                    c.uint("offer_id").map_err(d)?,
                    c.text("client_id").map_err(d)?,
                    c.text("client_name").map_err(d)?,
                    c.text("segment").map_err(d)?,
                    c.text("combined_segment").map_err(d)?,
                );
                let (otype, desc) = (
                    c.text("offer_type").map_err(d)?,
                    c.text("offer_description").map_err(d)?,
                );
                let (rev, level, oprio, days, rank) = (
                    c.float("expected_revenue").map_err(d)?,
                    c.int("priority_level").map_err(d)?,
                    c.int("offer_priority").map_err(d)?,
                    c.int("days_valid").map_err(d)?,
                    c.int("nba_rank").map_err(d)?,
                );
                let (total, portfolio, created) = (
                    c.float("total_value").map_err(d)?,
                    c.float("total_portfolio_value").map_err(d)?,
                    c.seconds("created_at").map_err(d)?,
                );
                for r in 0..c.len() {
                    let row = rows::TargetedOffer {
                        offer_id: rows::unsigned(&oid, "offer_id", r).map_err(d)?,
                        client_id: rows::text(&id, "client_id", r).map_err(d)?,
                        client_name: rows::optional_text(&name, r),
                        segment: rows::text(&seg, "segment", r).map_err(d)?,
                        combined_segment: rows::text(&cs, "combined_segment", r).map_err(d)?,
                        offer_type: rows::text(&otype, "offer_type", r).map_err(d)?,
                        offer_description: rows::text(&desc, "offer_description", r).map_err(d)?,
                        expected_revenue: rows::cents(&rev, "expected_revenue", r).map_err(d)?,
                        priority_level: rows::value(&level, "priority_level", r).map_err(d)?,
                        offer_priority: rows::value(&oprio, "offer_priority", r).map_err(d)?,
                        days_valid: rows::value(&days, "days_valid", r).map_err(d)?,
                        nba_rank: rows::value(&rank, "nba_rank", r).map_err(d)?,
                        total_value: rows::cents(&total, "total_value", r).map_err(d)?,
                        total_portfolio_value: rows::cents(&portfolio, "total_portfolio_value", r).map_err(d)?,
                        created_at: rows::value(&created, "created_at", r).map_err(d)?,
                    };
                    insert.write(&row).await.map_err(server)?;
                }
                Ok(())
            }
            RowWriter::Daily(insert) => {
                let d = WriteError::Data;
                let (date, seg) = (c.days("analysis_date").map_err(d)?, c.text("segment").map_err(d)?);
                let (count, total, avg, active, new) = (
                    c.int("clients_count").map_err(d)?,
                    c.float("total_revenue").map_err(d)?,
                    c.float("avg_revenue").map_err(d)?,
                    c.int("active_clients").map_err(d)?,
                    c.int("new_clients").map_err(d)?,
                );
                for r in 0..c.len() {
                    let analysis_date: i64 = rows::value(&date, "analysis_date", r).map_err(d)?;
                    if analysis_date != day as i64 {
                        return Err(d(format!("analysis_date of row {r} is not the processing date")));
                    }
                    let row = rows::AnalyticsDaily {
                        analysis_date: u16::try_from(analysis_date).map_err(|_| {
                            d(format!(
                                "analysis_date {analysis_date} is outside ClickHouse's Date range"
                            ))
                        })?,
                        segment: rows::text(&seg, "segment", r).map_err(d)?,
                        clients_count: rows::value(&count, "clients_count", r).map_err(d)?,
                        total_revenue: rows::cents(&total, "total_revenue", r).map_err(d)?,
                        avg_revenue: rows::cents(&avg, "avg_revenue", r).map_err(d)?,
                        active_clients: rows::value(&active, "active_clients", r).map_err(d)?,
                        new_clients: rows::value(&new, "new_clients", r).map_err(d)?,
                    };
                    insert.write(&row).await.map_err(server)?;
                }
                Ok(())
            }
        }
    }
}

/// Runs the standard reports and the segment distribution in ClickHouse for `date`.
pub async fn report(config: &ClickHouseConfig, sql: &SqlLibrary, date: &str) -> Result<AnalyticsReport> {
    crate::clean::fields::parse_date(date)
        .ok_or_else(|| Error::Usage(format!("`{date}` is not a date; write it as YYYY-MM-DD")))?;
    let client = client(config)?;
    let mut sections = Vec::new();
    for (title, file) in REPORTS {
        let query = sql.render(file, &[("database", &config.database), ("processing_date", date)])?;
        let mut cursor = client
            .query(&query)
            .fetch_bytes("TSVWithNames")
            .map_err(ch_error(config, format!("running {file}")))?;
        let tsv = cursor
            .collect()
            .await
            .map_err(ch_error(config, format!("reading {file}")))?;
        sections.push((title.to_string(), vec![tsv_to_batch(&String::from_utf8_lossy(&tsv))?]));
    }
    Ok(AnalyticsReport {
        daily_rows: 0,
        sections,
    })
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
