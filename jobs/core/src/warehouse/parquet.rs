//! The one way ebroker writes a Parquet file into the warehouse: a buffered object-store
//! upload behind DataFusion's async Arrow writer, with the writer properties each zone uses
//! (zstd level 3 for what stays, LZ4 for scratch, bounded row groups where many writers are
//! open at once). The clean, ingest, bucket and mart writers all come from here.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use object_store::buffered::BufWriter;

use super::Warehouse;
use crate::error::{Error, Result};

/// Rows per row group of the files a stage writes and reads back (staging and buckets).
pub const STAGING_ROW_GROUP_ROWS: usize = 131_072;

/// A Parquet writer streaming into the warehouse.
pub type Writer = AsyncArrowWriter<BufWriter>;

/// zstd at level 3: the compression of every file readers keep.
pub fn zstd() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(3).expect("zstd level 3 is in 1..=22"))
}

/// Writer properties with `compression` and at most `row_group_rows` rows per row group, and
/// no dictionaries, as the session writes the files readers keep
/// ([`apply_session_options`](crate::engine::session::apply_session_options)).
pub fn properties(compression: Compression, row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_dictionary_enabled(false)
        .build()
}

/// Properties of a scratch file written once and read once by the next step of the same stage
/// (the parse's typed rows): LZ4, no dictionaries (mostly unique ids: the dictionary is built,
/// then abandoned) and no statistics (nothing prunes on them).
pub fn scratch_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(STAGING_ROW_GROUP_ROWS))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

/// Opens a writer of `schema` rows at `relative` (a file path below the warehouse root).
pub fn writer(
    warehouse: &Warehouse,
    relative: &str,
    schema: SchemaRef,
    properties: WriterProperties,
) -> Result<Writer> {
    let sink = BufWriter::new(Arc::clone(warehouse.store()), warehouse.path(relative));
    AsyncArrowWriter::try_new(sink, schema, Some(properties)).map_err(parquet_error(relative))
}

/// Wraps a Parquet error with the file it happened in.
pub fn parquet_error(path: &str) -> impl FnOnce(ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_string(),
        source,
    }
}
