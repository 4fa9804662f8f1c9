//! Joining files as tasks. A large day is deduplicated in passes (docs/DESIGN.md,
//! "Deduplication in passes"), and each pass writes its rows of every client bucket into a
//! scratch file of its own; a concat task copies a bucket's scratch files, in pass order, into
//! the bucket's one file — on an executor or in-process, like the parse. Rows keep the order
//! of the inputs, so a rerun writes the same file.

use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use ebroker_core::error::{Error, Result};
use ebroker_core::schema::TABLES;
use ebroker_core::warehouse::parquet::parquet_error;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::task_files::{open_writer, task_store};

/// One concat task: the Parquet files `inputs` (URLs, read in this order) into the file
/// `output`. With no input, `output` is an empty file of `table`'s cleaned schema, so
/// readers of a bucket always find its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatTask {
    pub table: String,
    pub inputs: Vec<String>,
    pub output: String,
}

/// What a concat task wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatResult {
    pub output: String,
    pub rows: u64,
}

/// Copies the task's inputs into its output (zstd, the cleaned zone's compression).
pub async fn concat(task: &ConcatTask, ctx: &TaskContext) -> Result<ConcatResult> {
    let mut writer = None;
    let mut rows = 0u64;
    for input in &task.inputs {
        let (store, path) = task_store(ctx, input)?;
        #[allow(deprecated)] // still the reader DataFusion 55 uses itself
        let reader = datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(store, path);
        let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .and_then(|b| b.build())
            .map_err(parquet_error(input))?;
        if writer.is_none() {
            writer = Some(open_writer(ctx, &task.output, batches.schema().clone())?);
        }
        let out = writer.as_mut().expect("the writer is open");
        while let Some(batch) = batches.try_next().await.map_err(parquet_error(input))? {
            rows += batch.num_rows() as u64;
            out.write(&batch).await.map_err(parquet_error(&task.output))?;
        }
    }
    let writer = match writer {
        Some(writer) => writer,
        None => {
            let table = TABLES
                .iter()
                .find(|t| t.name == task.table)
                .ok_or_else(|| Error::Config(format!("no table {} to concatenate", task.table)))?;
            open_writer(ctx, &task.output, table.cleaned_schema())?
        }
    };
    writer.close().await.map_err(parquet_error(&task.output))?;
    Ok(ConcatResult {
        output: task.output.clone(),
        rows,
    })
}
