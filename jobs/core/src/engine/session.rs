//! The session every engine runs with — in-process, on the Ballista client, the scheduler and
//! every executor alike: DataFusion options (partitions, batch size, Parquet compression,
//! spill settings) and the runtime (memory pool, spill directory, object stores).

use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;

use super::memory::QueryMemoryPool;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::warehouse::parquet::STAGING_ROW_GROUP_ROWS;
use crate::warehouse::StoreRegistry;

/// Compression of every Parquet file ebroker publishes.
pub const PARQUET_COMPRESSION: &str = "zstd(3)";

/// The DataFusion session options ebroker runs with, in-process.
pub fn session_config(config: &Config) -> SessionConfig {
    apply_session_options(SessionConfig::new(), config)
}

/// Applies ebroker's options to `session` (in-process, or Ballista's on a cluster).
pub fn apply_session_options(session: SessionConfig, config: &Config) -> SessionConfig {
    let mut session = session
        .with_target_partitions(config.target_partitions())
        .with_batch_size(config.engine.batch_size)
        .with_information_schema(true);
    let options = session.options_mut();
    options.execution.parquet.compression = Some(PARQUET_COMPRESSION.to_string());
    // Row groups of 128k rows (DuckDB writes 122,880), not DataFusion's 1M: a writer holds its
    // open row group's encoded pages, and a bucketed write keeps one open per bucket file —
    // memory the pool counts but cannot spill, taken from the room the sorts' merges need.
    options.execution.parquet.max_row_group_size = STAGING_ROW_GROUP_ROWS;
    // No dictionaries: most columns of the cleaned tables and marts are ids, names, amounts
    // and dates with few repeats, for which the writer builds a dictionary, then abandons it
    // for plain pages at the page limit; zstd compresses the repeats of the few low-cardinality
    // columns as well. 500k clients: the DAG 7.67 -> 7.41 s (clean 4.6 -> 4.2 s), the cleaned
    // tables 86 -> 78 MB, the marts 59 -> 58 MB.
    options.execution.parquet.dictionary_enabled = Some(false);
    // Memory a sort keeps back for merging its spill files.
    options.execution.sort_spill_reservation_bytes = 32 << 20;
    // Spill files are written once and read once: lz4 cuts their size about six-fold (5M
    // clients: 18.5 GB -> 2.8 GB of segmentation spill) at no cost in time on this machine.
    options.execution.spill_compression = datafusion::common::config::SpillCompression::Lz4Frame;
    session
}

/// The runtime: memory pool with the configured limit, spill directory, object stores.
pub fn runtime_env(config: &Config, registry: Arc<StoreRegistry>) -> Result<Arc<RuntimeEnv>> {
    // A fair pool: several spilling operators (window sorts, the output sort) share the
    // budget instead of the first one taking it all and starving the merge.
    let pool = Arc::new(QueryMemoryPool::new(config.memory_limit_bytes()?));
    runtime_env_with_pool(config, registry, pool)
}

/// The runtime over an existing memory pool (a cluster node's one pool: `remote::node_runtime`).
pub fn runtime_env_with_pool(
    config: &Config,
    registry: Arc<StoreRegistry>,
    pool: Arc<dyn MemoryPool>,
) -> Result<Arc<RuntimeEnv>> {
    let mut disk = DiskManagerBuilder::default();
    if let Some(dir) = config.spill_dir() {
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        disk = disk.with_mode(DiskManagerMode::Directories(vec![dir]));
    }
    RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .with_disk_manager_builder(disk)
        .with_object_store_registry(registry)
        // Jobs replace whole directories between queries: a cached listing would point at
        // files a commit has just removed.
        .with_object_list_cache_limit(0)
        .build_arc()
        .map_err(Error::engine("building the runtime environment"))
}
