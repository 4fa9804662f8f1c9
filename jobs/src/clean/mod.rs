//! The clean stage (SPEC §4): source CSV files of a processing date -> typed, deduplicated,
//! enriched Parquet under `cleaned/<table>/processing_date=D/`, rejected records with their
//! reason under `quarantine/<table>/processing_date=D/`, and a data-quality report in
//! `_runs/D/clean.json`. Parsing is Rust (strict, per record); deduplication and enrichment
//! are SQL (`sql/datafusion/clean_*.sql`). Tables with a client_id are written in client
//! buckets ([`crate::buckets`]), one file per bucket. Nothing is visible to readers until
//! every table has been written and reconciled: read = written + quarantined + duplicates
//! removed.

pub mod fields;
pub mod parser;
mod raw;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use indicatif::ProgressBar;
use object_store::buffered::BufWriter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::engine::{scalar_u64, Engine};
use crate::error::{Error, Result};
use crate::schema::{quarantine_schema, Table, TABLES};
use crate::sql::SqlLibrary;
use crate::storage::{Warehouse, Zone};
use parser::{ParseCounts, RecordParser};

/// Rows per batch handed from the parser to the Parquet writer.
pub(crate) const PARSE_BATCH_ROWS: usize = 65_536;

/// Rows per row group of staged files: the writer buffers a whole row group, seven at once.
const STAGING_ROW_GROUP_ROWS: usize = 131_072;

/// Name of the stage in run state and staging paths.
pub const STAGE: &str = "clean";

/// Staging part holding the typed rows between parsing and deduplication.
pub(crate) const PARSED: &str = "parsed";

/// The data-quality summary of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableQuality {
    pub table: String,
    pub read: u64,
    pub written: u64,
    pub quarantined: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    pub duplicates_removed: u64,
    /// Optional fields that did not parse and became NULL, by column.
    pub nulled_unparsable: BTreeMap<String, u64>,
    /// Transactions whose currency has no rate (amount_rub NULL); bank_transactions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_rate: Option<u64>,
}

impl TableQuality {
    /// Whether every record read is accounted for.
    pub fn reconciles(&self) -> bool {
        self.read == self.written + self.quarantined + self.duplicates_removed
    }
}

/// The data-quality report of one clean run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanReport {
    pub processing_date: String,
    pub tables: Vec<TableQuality>,
}

impl CleanReport {
    pub fn table(&self, name: &str) -> Option<&TableQuality> {
        self.tables.iter().find(|t| t.table == name)
    }

    pub fn rows_written(&self) -> u64 {
        self.tables.iter().map(|t| t.written).sum()
    }

    pub fn rows_read(&self) -> u64 {
        self.tables.iter().map(|t| t.read).sum()
    }

    /// The report as an aligned text table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<22} {:>10} {:>10} {:>11} {:>10} {:>8} {:>12}\n",
            "table", "read", "written", "quarantined", "duplicates", "nulled", "without rate"
        );
        for t in &self.tables {
            out.push_str(&format!(
                "{:<22} {:>10} {:>10} {:>11} {:>10} {:>8} {:>12}\n",
                t.table,
                t.read,
                t.written,
                t.quarantined,
                t.duplicates_removed,
                t.nulled_unparsable.values().sum::<u64>(),
                t.without_rate.map_or("-".to_string(), |n| n.to_string())
            ));
        }
        out
    }
}

/// The schema of a cleaned table (the parsed columns, plus `amount_rub` for transactions).
pub fn cleaned_schema(table: &Table) -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let parsed = table.parsed_schema();
    let mut fields: Vec<Field> = parsed
        .fields()
        .iter()
        .filter(|f| f.name() != crate::schema::ARRIVAL)
        .map(|f| f.as_ref().clone())
        .collect();
    if table.name == "bank_transactions" {
        fields.push(Field::new("amount_rub", DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}

/// Cleans the seven CSV files in `input` as processing date `date`.
pub async fn clean_csv_dir(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    input: &Path,
    date: &str,
) -> Result<CleanReport> {
    let files = source_files(input)?;
    let staging_root = format!("_staging/{STAGE}/{date}/");
    warehouse.remove_all(&staging_root).await?;

    let total_bytes = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = crate::progress::bar(total_bytes, "parse", "bytes");
    let parses = files
        .into_iter()
        .map(|(table, path)| stage_csv(warehouse, table, path, date, bar.clone()));
    let counts: Vec<ParseCounts> = futures::future::try_join_all(parses).await?;
    bar.finish_and_clear();
    finish(engine, warehouse, sql, counts, date).await
}

/// Cleans the raw zone of `date` (the Kafka messages `ingest` dumped), checking that every
/// message the offset manifest says was consumed is read.
pub async fn clean_raw(engine: &Engine, warehouse: &Warehouse, sql: &SqlLibrary, date: &str) -> Result<CleanReport> {
    use crate::kafka::ingest::{IngestManifest, MANIFEST};
    let manifest_file = Warehouse::run_file(date, MANIFEST);
    let manifest: IngestManifest = warehouse.read_json(&manifest_file).await?.ok_or_else(|| Error::Input {
        path: warehouse.url(&manifest_file).to_string(),
        message: format!(
            "no ingest manifest: the raw zone of {date} is not complete; run `ebroker ingest --date {date}` first"
        ),
    })?;
    let staging_root = format!("_staging/{STAGE}/{date}/");
    warehouse.remove_all(&staging_root).await?;
    let bar = crate::progress::bar(manifest.records(), "parse", "messages");
    let parses = TABLES.iter().map(|&table| {
        let (warehouse, date, bar) = (warehouse.clone(), date.to_string(), bar.clone());
        tokio::spawn(async move { raw::stage_raw(&warehouse, table, &date, &bar).await })
    });
    let mut counts = Vec::new();
    for (table, handle) in TABLES.iter().zip(futures::future::join_all(parses).await) {
        let parsed = handle.map_err(|e| Error::Stage {
            stage: STAGE.into(),
            message: format!("parser of raw {} panicked: {e}", table.name),
        })??;
        let consumed = manifest.topic(table.name).map_or(0, |t| t.records);
        if parsed.read != consumed {
            return Err(Error::Reconcile {
                table: table.name.into(),
                message: format!("the raw zone holds {} records but ingest consumed {consumed}; rerun `ebroker ingest --date {date} --force`", parsed.read),
            });
        }
        counts.push(parsed);
    }
    bar.finish_and_clear();
    finish(engine, warehouse, sql, counts, date).await
}

/// Deduplicates, reconciles and publishes the staged parse of every table, then writes the
/// data-quality report.
async fn finish(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    counts: Vec<ParseCounts>,
    date: &str,
) -> Result<CleanReport> {
    let clients = TABLES
        .iter()
        .zip(&counts)
        .find(|(t, _)| t.name == crate::schema::CLIENTS.name)
        .map_or(0, |(_, c)| c.parsed);
    let buckets = crate::buckets::bucket_count(clients, warehouse.clients_per_bucket());
    let mut tables = Vec::new();
    for (table, counts) in TABLES.iter().copied().zip(counts) {
        let quality = dedup_table(engine, warehouse, sql, table, &counts, date, buckets).await?;
        tracing::info!(
            table = table.name,
            read = quality.read,
            written = quality.written,
            quarantined = quality.quarantined,
            duplicates = quality.duplicates_removed,
            "cleaned"
        );
        if !quality.reconciles() {
            return Err(Error::Reconcile {
                table: table.name.into(),
                message: format!(
                    "read {} != written {} + quarantined {} + duplicates {}",
                    quality.read, quality.written, quality.quarantined, quality.duplicates_removed
                ),
            });
        }
        tables.push(quality);
    }

    for table in TABLES {
        for zone in [Zone::Cleaned, Zone::Quarantine] {
            let staged = Warehouse::staging(STAGE, date, zone.dir(), table.name);
            warehouse
                .commit(&staged, &Warehouse::partition(zone, table.name, date))
                .await?;
        }
    }
    let report = CleanReport {
        processing_date: date.to_string(),
        tables,
    };
    warehouse
        .write_json(&Warehouse::run_file(date, "clean.json"), &report)
        .await?;
    warehouse.remove_all(&format!("_staging/{STAGE}/{date}/")).await?;
    Ok(report)
}

/// Checks that every source file is present; the error lists the missing ones.
pub(crate) fn source_files(input: &Path) -> Result<Vec<(&'static Table, PathBuf)>> {
    let files: Vec<_> = TABLES.iter().map(|t| (*t, input.join(t.file_name()))).collect();
    let missing: Vec<String> = files
        .iter()
        .filter(|(_, p)| !p.is_file())
        .map(|(t, _)| t.file_name())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input {
            path: input.display().to_string(),
            message: format!(
                "missing {}; point --input at a directory with all seven files (create one with `ebroker generate --out DIR`)",
                missing.join(", ")
            ),
        });
    }
    Ok(files)
}

/// Parses one CSV file into staged typed rows and staged quarantine rows.
async fn stage_csv(
    warehouse: &Warehouse,
    table: &'static Table,
    path: PathBuf,
    date: &str,
    bar: ProgressBar,
) -> Result<ParseCounts> {
    let (tx, mut rx) = mpsc::channel::<(Option<RecordBatch>, Option<RecordBatch>)>(4);
    let parse = tokio::task::spawn_blocking(move || parse_csv_file(table, &path, &tx, &bar));

    let parsed_path = format!("{}part-0.parquet", Warehouse::staging(STAGE, date, PARSED, table.name));
    let quarantine_path = format!(
        "{}part-0.parquet",
        Warehouse::staging(STAGE, date, Zone::Quarantine.dir(), table.name)
    );
    let mut parsed = staging_writer(warehouse, &parsed_path, table.parsed_schema(), Compression::LZ4_RAW)?;
    let mut quarantine = staging_writer(warehouse, &quarantine_path, quarantine_schema(), zstd())?;
    while let Some((typed, rejected)) = rx.recv().await {
        if let Some(batch) = typed {
            parsed.write(&batch).await.map_err(parquet_error(&parsed_path))?;
        }
        if let Some(batch) = rejected {
            quarantine
                .write(&batch)
                .await
                .map_err(parquet_error(&quarantine_path))?;
        }
    }
    let counts = parse.await.map_err(|e| Error::Stage {
        stage: STAGE.into(),
        message: format!("parser of {} panicked: {e}", table.name),
    })??;
    parsed.close().await.map_err(parquet_error(&parsed_path))?;
    quarantine.close().await.map_err(parquet_error(&quarantine_path))?;
    Ok(counts)
}

pub(crate) fn zstd() -> Compression {
    Compression::ZSTD(datafusion::parquet::basic::ZstdLevel::try_new(3).expect("zstd level 3 is valid"))
}

pub(crate) fn staging_writer(
    warehouse: &Warehouse,
    relative: &str,
    schema: datafusion::arrow::datatypes::SchemaRef,
    compression: Compression,
) -> Result<AsyncArrowWriter<BufWriter>> {
    let writer = BufWriter::new(Arc::clone(warehouse.store()), warehouse.path(relative));
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(STAGING_ROW_GROUP_ROWS))
        .build();
    AsyncArrowWriter::try_new(writer, schema, Some(props)).map_err(parquet_error(relative))
}

pub(crate) fn parquet_error(path: &str) -> impl FnOnce(datafusion::parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_string(),
        source,
    }
}

/// Reads `path` line by line, checks the header, parses every record.
fn parse_csv_file(
    table: &'static Table,
    path: &Path,
    tx: &mpsc::Sender<(Option<RecordBatch>, Option<RecordBatch>)>,
    bar: &ProgressBar,
) -> Result<ParseCounts> {
    let source = table.file_name();
    let mut parser = RecordParser::new(table);
    let mut lines = CsvRecords::open(table, path, bar)?;
    while let Some((line_number, record)) = lines.next_record()? {
        parser.push_csv_line(record, line_number, &source);
        if parser.buffered() >= PARSE_BATCH_ROWS && tx.blocking_send(parser.finish_batches()).is_err() {
            break;
        }
    }
    let _ = tx.blocking_send(parser.finish_batches());
    Ok(parser.counts().clone())
}

/// The record lines of one source CSV file: the header is checked, blank lines skipped,
/// and every byte read is reported to the progress bar.
pub(crate) struct CsvRecords<'a> {
    table: &'static Table,
    path: &'a Path,
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
    line_number: i64,
    bar: &'a ProgressBar,
}

impl<'a> CsvRecords<'a> {
    pub(crate) fn open(table: &'static Table, path: &'a Path, bar: &'a ProgressBar) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        Ok(CsvRecords {
            table,
            path,
            reader,
            line: Vec::with_capacity(256),
            line_number: 0,
            bar,
        })
    }

    /// The next record line (without its terminator) and its line number.
    pub(crate) fn next_record(&mut self) -> Result<Option<(i64, &[u8])>> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(Error::io(self.path))?;
            if n == 0 {
                return Ok(None);
            }
            self.bar.inc(n as u64);
            self.line_number += 1;
            let record = strip_terminator(&self.line);
            if self.line_number == 1 {
                check_header(self.table, self.path, record)?;
                continue;
            }
            if !record.is_empty() {
                return Ok(Some((self.line_number, strip_terminator(&self.line))));
            }
        }
    }
}

fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn check_header(table: &Table, path: &Path, line: &[u8]) -> Result<()> {
    let found = String::from_utf8_lossy(line);
    let found = found.trim_start_matches('\u{feff}');
    let normalised: Vec<&str> = found.split(',').map(fields::trim).collect();
    if normalised.join(",") != table.header() {
        return Err(Error::Input {
            path: path.display().to_string(),
            message: format!(
                "header is {found:?}; the {} table needs exactly {:?}",
                table.name,
                table.header()
            ),
        });
    }
    Ok(())
}

/// Deduplicates (and for transactions enriches) one staged table into staged cleaned Parquet,
/// in `buckets` client buckets when the table has a client_id.
async fn dedup_table(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    table: &'static Table,
    counts: &ParseCounts,
    date: &str,
    buckets: u32,
) -> Result<TableQuality> {
    let staged_parsed = warehouse.url(&Warehouse::staging(STAGE, date, PARSED, table.name));
    engine
        .register_parquet_dir("parsed", &staged_parsed, Some(table.parsed_schema()))
        .await?;
    let query = if table.name == "bank_transactions" {
        let rates = warehouse.url(&Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), "currency_rates"));
        engine
            .register_parquet_dir("rates", &rates, Some(cleaned_schema(&crate::schema::CURRENCY_RATES)))
            .await?;
        sql.render("datafusion/clean_bank_transactions.sql", &[])?
    } else {
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        sql.render(
            "datafusion/clean_dedup.sql",
            &[
                ("columns", &columns.join(", ")),
                ("id", table.id),
                ("event", table.event),
            ],
        )?
    };
    let what = format!("cleaning {}", table.name);
    let df = engine.sql(&query, &what).await?;
    let staged = Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), table.name);
    let out = warehouse.url(&staged);
    let written = if table.has_client_id() {
        let scratch = Warehouse::staging(STAGE, date, "bucketing", table.name);
        crate::buckets::write_bucketed(engine, warehouse, df, &staged, &scratch, buckets, &what).await?
    } else {
        engine.write_parquet_dir(df, &out, &what).await?
    };
    let without_rate = if table.name == "bank_transactions" {
        engine
            .register_parquet_dir("cleaned_transactions", &out, Some(cleaned_schema(table)))
            .await?;
        let batches = engine
            .collect(
                "SELECT count(*) FROM cleaned_transactions WHERE amount_rub IS NULL",
                "counting transactions without a rate",
            )
            .await?;
        Some(scalar_u64(&batches))
    } else {
        None
    };
    Ok(TableQuality {
        table: table.name.to_string(),
        read: counts.read,
        written,
        quarantined: counts.quarantined_total(),
        quarantined_by_reason: counts.quarantined.clone(),
        duplicates_removed: counts.parsed.saturating_sub(written),
        nulled_unparsable: counts.nulled_unparsable.clone(),
        without_rate,
    })
}
