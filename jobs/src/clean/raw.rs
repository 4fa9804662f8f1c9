//! Cleaning's reader of the raw zone: streams one table's dumped Kafka messages from
//! `raw/<table>/processing_date=D/` through the record parser (each value a JSON object; the
//! offset is the arrival order for deduplication) into the same staged typed and quarantine
//! rows as the CSV reader.

use datafusion::arrow::array::{Array, BinaryArray, Int32Array, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use indicatif::ProgressBar;

use super::parser::{ParseCounts, RecordParser};
use super::{parquet_error, staging_writer, zstd, PARSED, PARSE_BATCH_ROWS, STAGE};
use crate::error::{Error, Result};
use crate::schema::{quarantine_schema, Table};
use crate::storage::{Warehouse, Zone};

/// Parses every raw message of `table` on `date` into staged parsed and quarantine rows.
pub async fn stage_raw(
    warehouse: &Warehouse,
    table: &'static Table,
    date: &str,
    bar: &ProgressBar,
) -> Result<ParseCounts> {
    let parsed_path = format!("{}part-0.parquet", Warehouse::staging(STAGE, date, PARSED, table.name));
    let quarantine_path = format!(
        "{}part-0.parquet",
        Warehouse::staging(STAGE, date, Zone::Quarantine.dir(), table.name)
    );
    let mut parsed = staging_writer(
        warehouse,
        &parsed_path,
        table.parsed_schema(),
        datafusion::parquet::basic::Compression::LZ4_RAW,
    )?;
    let mut quarantine = staging_writer(warehouse, &quarantine_path, quarantine_schema(), zstd())?;
    let mut parser = RecordParser::new(table);

    let source = Warehouse::partition(Zone::Raw, table.name, date);
    let mut batches = crate::marts::read_partition(warehouse, Zone::Raw, table.name, date).await?;
    while let Some(batch) = batches.try_next().await? {
        push_batch(&mut parser, &batch, &source)?;
        bar.inc(batch.num_rows() as u64);
        if parser.buffered() >= PARSE_BATCH_ROWS {
            let (typed, rejected) = parser.finish_batches();
            write(&mut parsed, typed, &parsed_path).await?;
            write(&mut quarantine, rejected, &quarantine_path).await?;
        }
    }
    let (typed, rejected) = parser.finish_batches();
    write(&mut parsed, typed, &parsed_path).await?;
    write(&mut quarantine, rejected, &quarantine_path).await?;
    parsed.close().await.map_err(parquet_error(&parsed_path))?;
    quarantine.close().await.map_err(parquet_error(&quarantine_path))?;
    Ok(parser.counts().clone())
}

async fn write(
    writer: &mut datafusion::parquet::arrow::async_writer::AsyncArrowWriter<object_store::buffered::BufWriter>,
    batch: Option<RecordBatch>,
    path: &str,
) -> Result<()> {
    match batch {
        Some(b) => writer.write(&b).await.map_err(parquet_error(path)),
        None => Ok(()),
    }
}

/// Feeds one batch of raw rows to the parser; the quarantine source is `topic[partition]`.
fn push_batch(parser: &mut RecordParser, batch: &RecordBatch, file: &str) -> Result<()> {
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
