//! Cleaning's reader of the raw zone: streams one table's dumped Kafka messages from
//! `raw/<table>/processing_date=D/` through the record parser (each value a JSON object; the
//! offset is the arrival order for deduplication) into the same staged typed and quarantine
//! rows as the CSV reader.

use datafusion::arrow::array::{Array, BinaryArray, Int32Array, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use indicatif::ProgressBar;

use super::StagedParse;
use crate::error::{Error, Result};
use crate::formats::record::{ParseCounts, RecordParser};
use crate::schema::Table;
use crate::tables::partitions::read_partition;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

/// Messages per batch read from the raw zone: 1,024 messages of up to 1 MiB (Kafka's
/// default limit) stay within one Arrow binary array (2 GiB) and a bounded memory.
const RAW_READ_ROWS: usize = 1024;

/// Parses every raw message of `table` on `date` into staged parsed and quarantine rows.
pub async fn stage_raw(
    warehouse: &Warehouse,
    table: &'static Table,
    max_record_bytes: usize,
    date: ProcessingDate,
    bar: &ProgressBar,
) -> Result<ParseCounts> {
    let mut staged = StagedParse::create(warehouse, table, date)?;
    let mut parser = RecordParser::new(table, max_record_bytes);
    let source = Warehouse::partition(Zone::Raw, table.name, date);
    let mut batches = read_partition(warehouse, Zone::Raw, table.name, date, RAW_READ_ROWS).await?;
    while let Some(batch) = batches.try_next().await? {
        push_batch(&mut parser, &batch, &source)?;
        bar.inc(batch.num_rows() as u64);
        if parser.batch_full() {
            staged.write(parser.finish_batches()).await?;
        }
    }
    staged.write(parser.finish_batches()).await?;
    staged.close().await?;
    Ok(parser.counts().clone())
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
