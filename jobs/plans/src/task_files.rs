//! The files a task reads and writes are URLs (the warehouse's, or an input's); a task opens
//! them through the object stores of the runtime it runs in — the executor's, or the local
//! engine's — so the same task runs anywhere. Every kind of work opens its files here.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::AsyncArrowWriter;
use ebroker_core::error::{Error, Result};
use ebroker_core::warehouse::parquet::{parquet_error, properties, zstd, Writer, STAGING_ROW_GROUP_ROWS};
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use url::Url;

/// The store and path of `url` in the task's runtime.
pub fn task_store(ctx: &TaskContext, url: &str) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    let parsed = Url::parse(url).map_err(|e| Error::Config(format!("bad task file URL {url}: {e}")))?;
    let store = ctx
        .runtime_env()
        .object_store_registry
        .get_store(&parsed)
        .map_err(Error::engine(format!("opening the store of {url}")))?;
    let path = StorePath::from_url_path(parsed.path()).map_err(|e| Error::Config(format!("bad path in {url}: {e}")))?;
    Ok((store, path))
}

/// A writer of `schema` rows into the Parquet file at the URL `output`, as the session writes
/// a file readers keep (zstd, 128k-row row groups).
pub fn open_writer(ctx: &TaskContext, output: &str, schema: SchemaRef) -> Result<Writer> {
    let (store, path) = task_store(ctx, output)?;
    AsyncArrowWriter::try_new(
        BufWriter::new(store, path),
        schema,
        Some(properties(zstd(), STAGING_ROW_GROUP_ROWS)),
    )
    .map_err(parquet_error(output))
}
