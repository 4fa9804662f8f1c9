//! Parsing as tasks (docs/SPEC.md §4), on an executor or in-process: one raw file of a day (one
//! Kafka partition's range, as `ingest` wrote it; each value a JSON object, the offset its
//! arrival order), or one split of a source CSV file ([`crate::splits`]; the line number its
//! arrival order), through the record parser into staged typed and quarantine Parquet.
//! [`StagedParse`] is the staged writers both share: the typed rows split into the day's
//! deduplication passes by a hash of their id, and the quarantine.

use datafusion::arrow::array::{Array, BinaryArray, Int32Array, Int64Array, StringArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use ebroker_core::error::{Error, Result};
use ebroker_core::formats::csv::{CsvRecords, Split};
use ebroker_core::formats::record::{ParseCounts, RecordParser};
use ebroker_core::schema::{quarantine_schema, Table, TABLES};
use ebroker_core::warehouse::buckets::pass_of;
use ebroker_core::warehouse::parquet::{parquet_error, properties, scratch_properties, zstd, STAGING_ROW_GROUP_ROWS};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::splits::{local_path, open_from};
use crate::task_files::task_store;

/// Messages per batch read from a raw file: 1,024 messages of up to 1 MiB (Kafka's default
/// limit) stay within one Arrow binary array (2 GiB) and a bounded memory.
const RAW_READ_ROWS: usize = 1024;

/// One parse task: the raw file `raw` of `table` into the staged files `parsed` (one per
/// deduplication pass: a row goes to the file of [`pass_of`] its id) and `quarantine` (all
/// URLs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawParseTask {
    pub table: String,
    pub raw: String,
    pub parsed: Vec<String>,
    pub quarantine: String,
}

/// One parse task: the `split` of the source CSV file `csv` (a URL every node running tasks
/// can open: `file://` on a shared file system, `hdfs://`, `s3://`) of `table` into the staged
/// files `parsed` (one per deduplication pass, as [`RawParseTask`]'s) and `quarantine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvParseTask {
    pub table: String,
    pub csv: String,
    pub split: Split,
    pub parsed: Vec<String>,
    pub quarantine: String,
}

/// What a parse task read, parsed and quarantined, and where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParseResult {
    pub table: String,
    pub counts: ParseCounts,
    pub pid: u32,
}

/// The source table called `name`.
fn table_named(name: &str) -> Result<&'static Table> {
    TABLES
        .iter()
        .copied()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Config(format!("no table {name} to parse")))
}

/// Parses the task's raw file into its staged files.
pub async fn parse_raw(max_record_bytes: usize, task: &RawParseTask, ctx: &TaskContext) -> Result<ParseResult> {
    let table = table_named(&task.table)?;
    let (store, path) = task_store(ctx, &task.raw)?;
    #[allow(deprecated)] // still the reader DataFusion 55 uses itself
    let reader = datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(store, path);
    let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .and_then(|b| b.with_batch_size(RAW_READ_ROWS).build())
        .map_err(parquet_error(&task.raw))?;
    let mut staged = StagedParse::create(table, &task.parsed, &task.quarantine, ctx)?;
    let mut parser = RecordParser::new(table, max_record_bytes);
    while let Some(batch) = batches.try_next().await.map_err(parquet_error(&task.raw))? {
        push_raw_batch(&mut parser, &batch, &task.raw)?;
        if parser.batch_full() {
            staged.write(parser.finish_batches()).await?;
        }
    }
    staged.write(parser.finish_batches()).await?;
    staged.close().await?;
    tracing::info!(
        table = task.table,
        raw = task.raw,
        read = parser.counts().read,
        "parsed"
    );
    Ok(ParseResult {
        table: task.table.clone(),
        counts: parser.counts().clone(),
        pid: std::process::id(),
    })
}

/// Parses the task's split of a CSV file into its staged files.
pub async fn parse_csv(max_record_bytes: usize, task: &CsvParseTask, ctx: &TaskContext) -> Result<ParseResult> {
    let table = table_named(&task.table)?;
    check_visible(&task.csv)?;
    let reader = open_from(ctx, &task.csv, task.split.read_from()).await?;
    let (tx, mut rx) = mpsc::channel::<(Option<RecordBatch>, Option<RecordBatch>)>(4);
    let (csv, split) = (task.csv.clone(), task.split);
    let parse = tokio::task::spawn_blocking(move || {
        let bar = indicatif::ProgressBar::hidden();
        let lines = CsvRecords::split(table, (csv, reader), split, max_record_bytes, &bar)?;
        parse_csv_lines(table, lines, max_record_bytes, &tx)
    });
    let mut staged = StagedParse::create(table, &task.parsed, &task.quarantine, ctx)?;
    while let Some(batches) = rx.recv().await {
        staged.write(batches).await?;
    }
    let counts = parse.await.map_err(|e| Error::Stage {
        stage: "clean".into(),
        message: format!("the parser of {} panicked: {e}", task.csv),
    })??;
    staged.close().await?;
    tracing::info!(
        table = task.table,
        csv = task.csv,
        start = task.split.start,
        read = counts.read,
        "parsed"
    );
    Ok(ParseResult {
        table: task.table.clone(),
        counts,
        pid: std::process::id(),
    })
}

/// A `file://` input must be on this node: a node that cannot see it names the path and how
/// to make it visible (other schemes fail in their store, naming the URL).
fn check_visible(url: &str) -> Result<()> {
    let Some(path) = local_path(url) else {
        return Ok(());
    };
    if path.is_file() {
        return Ok(());
    }
    Err(Error::Input {
        path: path.display().to_string(),
        message: format!(
            "not found on the node running the parse (pid {}); a file:// --input must be at the same path on every executor (a shared file system): give a local directory as a plain path to have it uploaded to the warehouse, put it on HDFS or S3, or send the sources through Kafka (`ebroker produce`, then `ingest`)",
            std::process::id()
        ),
    })
}

/// Parses every record of `lines`.
fn parse_csv_lines<R: std::io::BufRead>(
    table: &'static Table,
    mut lines: CsvRecords<'_, R>,
    max_record_bytes: usize,
    tx: &mpsc::Sender<(Option<RecordBatch>, Option<RecordBatch>)>,
) -> Result<ParseCounts> {
    let source = table.file_name();
    let mut parser = RecordParser::new(table, max_record_bytes);
    while let Some((line_number, record)) = lines.next_record()? {
        parser.push_csv_line(record, line_number, &source);
        if parser.batch_full() && tx.blocking_send(parser.finish_batches()).is_err() {
            break;
        }
    }
    let _ = tx.blocking_send(parser.finish_batches());
    Ok(parser.counts().clone())
}

/// Feeds one batch of raw rows to the parser; the quarantine source is `topic[partition]`.
fn push_raw_batch(parser: &mut RecordParser, batch: &RecordBatch, file: &str) -> Result<()> {
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| Error::Input {
            path: file.to_string(),
            message: format!("not a raw dump: no `{name}` column"),
        })
    };
    let wrong = |name: &str| Error::Input {
        path: file.to_string(),
        message: format!("not a raw dump: `{name}` has the wrong type"),
    };
    let topics = column("topic")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| wrong("topic"))?;
    let partitions = column("partition")?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| wrong("partition"))?;
    let offsets = column("offset")?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| wrong("offset"))?;
    let values = column("value")?
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| wrong("value"))?;
    let mut source = String::new();
    for row in 0..batch.num_rows() {
        source.clear();
        source.push_str(topics.value(row));
        source.push('[');
        source.push_str(&partitions.value(row).to_string());
        source.push(']');
        let value = (!values.is_null(row)).then(|| values.value(row));
        parser.push_json_message(value, offsets.value(row), &source);
    }
    Ok(())
}

/// A staged file being written, with its name for errors.
type StagedFile = (AsyncArrowWriter<BufWriter>, String);

/// The staged outputs of one parse: the typed rows deduplication reads (LZ4, read once), one
/// file per deduplication pass, and the quarantine rows that are published as they are (zstd).
pub struct StagedParse {
    /// The table's id column, whose hash picks a typed row's pass.
    id: usize,
    parsed: Vec<StagedFile>,
    quarantine: StagedFile,
}

impl StagedParse {
    /// Writers of `table`'s typed rows at the URLs `parsed` (one per pass) and of its rejected
    /// records at the URL `quarantine`, in the stores of the task's runtime.
    pub fn create(table: &Table, parsed: &[String], quarantine: &str, ctx: &TaskContext) -> Result<StagedParse> {
        if parsed.is_empty() {
            return Err(Error::Config(format!(
                "a parse task of {} has no typed output",
                table.name
            )));
        }
        let open = |url: &str, schema: SchemaRef, properties: WriterProperties| -> Result<StagedFile> {
            let (store, path) = task_store(ctx, url)?;
            let writer = AsyncArrowWriter::try_new(BufWriter::new(store, path), schema, Some(properties))
                .map_err(parquet_error(url))?;
            Ok((writer, url.to_string()))
        };
        Ok(StagedParse {
            id: table.column_index(table.id),
            parsed: parsed
                .iter()
                .map(|url| open(url, table.parsed_schema(), scratch_properties()))
                .collect::<Result<_>>()?,
            quarantine: open(
                quarantine,
                quarantine_schema(),
                properties(zstd(), STAGING_ROW_GROUP_ROWS),
            )?,
        })
    }

    /// Appends a batch of typed rows (each to its pass's file) and a batch of quarantine rows,
    /// either possibly absent.
    pub async fn write(&mut self, (typed, rejected): (Option<RecordBatch>, Option<RecordBatch>)) -> Result<()> {
        if let Some(typed) = typed {
            for (pass, rows) in self.split_by_pass(typed)?.into_iter().enumerate() {
                let (writer, path) = &mut self.parsed[pass];
                if let Some(rows) = rows {
                    writer.write(&rows).await.map_err(parquet_error(path))?;
                }
            }
        }
        if let Some(rejected) = rejected {
            let (writer, path) = &mut self.quarantine;
            writer.write(&rejected).await.map_err(parquet_error(path))?;
        }
        Ok(())
    }

    /// The rows of `typed` of each pass (`None` where a pass has none).
    fn split_by_pass(&self, typed: RecordBatch) -> Result<Vec<Option<RecordBatch>>> {
        let passes = self.parsed.len() as u32;
        if passes == 1 {
            return Ok(vec![Some(typed)]);
        }
        let ids = typed
            .column(self.id)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Config("a table's id column is not text".into()))?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); passes as usize];
        for (row, id) in ids.iter().enumerate() {
            let pass = pass_of(id.unwrap_or_default().as_bytes(), passes);
            rows[pass as usize].push(row as u32);
        }
        rows.into_iter()
            .map(|rows| {
                if rows.is_empty() {
                    return Ok(None);
                }
                take_record_batch(&typed, &UInt32Array::from(rows))
                    .map(Some)
                    .map_err(|e| Error::engine("splitting parsed rows by pass")(e.into()))
            })
            .collect()
    }

    pub async fn close(self) -> Result<()> {
        for (writer, path) in self.parsed.into_iter().chain([self.quarantine]) {
            writer.close().await.map_err(parquet_error(&path))?;
        }
        Ok(())
    }
}

/// Adds the counts of one more parse of a table to `total`.
pub fn add_counts(total: &mut ParseCounts, more: &ParseCounts) {
    total.read += more.read;
    total.parsed += more.parsed;
    for (reason, n) in &more.quarantined {
        *total.quarantined.entry(reason.clone()).or_default() += n;
    }
    for (column, n) in &more.nulled_unparsable {
        *total.nulled_unparsable.entry(column.clone()).or_default() += n;
    }
}
