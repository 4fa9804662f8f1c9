//! Joining files as tasks. A large day is deduplicated in passes (docs/DESIGN.md,
//! "Deduplication in passes"), and each pass writes its rows of every client bucket into a
//! file of its own, encoded as the cleaned zone keeps it; a concat task copies a bucket's
//! files, in pass order, into the bucket's one file — on an executor or in-process, like the
//! parse — column chunk by column chunk, without decoding them. Rows keep the order of the
//! inputs, so a rerun writes the same file.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::{ParquetError, Result as ParquetResult};
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::reader::ChunkReader;
use datafusion::parquet::file::writer::SerializedFileWriter;
use ebroker_core::error::{Error, Result};
use ebroker_core::schema::TABLES;
use ebroker_core::warehouse::parquet::parquet_error;
use object_store::buffered::BufWriter;
use object_store::GetOptions;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

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

/// Copies the task's inputs into its output, row group by row group: each column chunk is
/// copied as it is encoded (the passes write the cleaned zone's zstd files), never decoded,
/// and what is copied of each input is uploaded before the next input is read.
pub async fn concat(task: &ConcatTask, ctx: &TaskContext) -> Result<ConcatResult> {
    if task.inputs.is_empty() {
        return write_empty(task, ctx).await;
    }
    let (store, path) = task_store(ctx, &task.output)?;
    let mut upload = BufWriter::new(store, path);
    let mut writer: Option<SerializedFileWriter<Vec<u8>>> = None;
    let mut rows = 0u64;
    for input in &task.inputs {
        let (store, path) = task_store(ctx, input)?;
        let bytes = store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(Error::storage(input.as_str()))?
            .bytes()
            .await
            .map_err(Error::storage(input.as_str()))?;
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&bytes)
            .map_err(parquet_error(input))?;
        let out = match &mut writer {
            Some(out) => out,
            None => writer.insert(open_copy(&metadata).map_err(parquet_error(&task.output))?),
        };
        rows += copy_row_groups(out, &bytes, &metadata).map_err(parquet_error(input))?;
        upload_buffered(out, &mut upload, &task.output).await?;
    }
    let mut out = writer.expect("a task with inputs opened its writer");
    out.finish().map_err(parquet_error(&task.output))?;
    upload_buffered(&mut out, &mut upload, &task.output).await?;
    upload.shutdown().await.map_err(Error::io(&task.output))?;
    Ok(ConcatResult {
        output: task.output.clone(),
        rows,
    })
}

/// A writer of the schema and key-value metadata (the Arrow schema) of the first input.
fn open_copy(first: &ParquetMetaData) -> ParquetResult<SerializedFileWriter<Vec<u8>>> {
    let file = first.file_metadata();
    let properties = WriterProperties::builder()
        .set_key_value_metadata(file.key_value_metadata().cloned())
        .build();
    SerializedFileWriter::new(Vec::new(), file.schema_descr().root_schema_ptr(), Arc::new(properties))
}

/// Appends every row group of the Parquet file `bytes` to `out` as it is encoded; returns the
/// rows copied.
fn copy_row_groups<R: ChunkReader>(
    out: &mut SerializedFileWriter<Vec<u8>>,
    bytes: &R,
    metadata: &ParquetMetaData,
) -> ParquetResult<u64> {
    if out.schema_descr().root_schema() != metadata.file_metadata().schema_descr().root_schema() {
        return Err(ParquetError::General(
            "a pass's file of this bucket has another schema than the first pass's".into(),
        ));
    }
    let mut rows = 0u64;
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let column_indexes = metadata.column_index().and_then(|c| c.get(index));
        let offset_indexes = metadata.offset_index().and_then(|o| o.get(index));
        let mut group_out = out.next_row_group()?;
        for (column, chunk) in group.columns().iter().enumerate() {
            let copied = ColumnCloseResult {
                bytes_written: chunk.compressed_size() as u64,
                rows_written: group.num_rows() as u64,
                metadata: chunk.clone(),
                bloom_filter: None,
                column_index: column_indexes.and_then(|c| c.get(column)).cloned(),
                offset_index: offset_indexes.and_then(|o| o.get(column)).cloned(),
            };
            group_out.append_column(bytes, copied)?;
        }
        group_out.close()?;
        rows += group.num_rows() as u64;
    }
    Ok(rows)
}

/// Uploads what `out` has encoded so far, so no more than one input's row groups are held.
async fn upload_buffered(out: &mut SerializedFileWriter<Vec<u8>>, upload: &mut BufWriter, output: &str) -> Result<()> {
    let encoded = std::mem::take(out.inner_mut());
    upload.write_all(&encoded).await.map_err(Error::io(output))
}

/// An empty file of the task's table's cleaned schema, so readers of a bucket always find its
/// file.
async fn write_empty(task: &ConcatTask, ctx: &TaskContext) -> Result<ConcatResult> {
    let table = TABLES
        .iter()
        .find(|t| t.name == task.table)
        .ok_or_else(|| Error::Config(format!("no table {} to concatenate", task.table)))?;
    let writer = open_writer(ctx, &task.output, table.cleaned_schema())?;
    writer.close().await.map_err(parquet_error(&task.output))?;
    Ok(ConcatResult {
        output: task.output.clone(),
        rows: 0,
    })
}
