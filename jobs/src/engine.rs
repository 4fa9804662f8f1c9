//! The one engine handle (DESIGN.md, idea 1): builds the DataFusion `SessionContext` every job
//! runs in — in-process, with the configured memory budget, spill directory and the project's
//! object stores and functions — and the helpers jobs use to read and write warehouse tables.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use url::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::functions;
use crate::memory::QueryMemoryPool;
use crate::storage::StoreRegistry;

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
    // Memory a sort keeps back for merging its spill files.
    options.execution.sort_spill_reservation_bytes = 32 << 20;
    // Spill files are written once and read once: lz4 cuts their size about six-fold (5M
    // clients: 18.5 GB -> 2.8 GB of segmentation spill) at no cost in time on this machine.
    options.execution.spill_compression = datafusion::common::config::SpillCompression::Lz4Frame;
    session
}

/// The runtime: memory pool with the configured limit, spill directory, object stores.
pub fn runtime_env(config: &Config, registry: Arc<StoreRegistry>) -> Result<Arc<RuntimeEnv>> {
    let mut disk = DiskManagerBuilder::default();
    if let Some(dir) = config.spill_dir() {
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        disk = disk.with_mode(DiskManagerMode::Directories(vec![dir]));
    }
    RuntimeEnvBuilder::new()
        // A fair pool: several spilling operators (window sorts, the output sort) share the
        // budget instead of the first one taking it all and starving the merge.
        .with_memory_pool(Arc::new(QueryMemoryPool::new(config.memory_limit_bytes()?)))
        .with_disk_manager_builder(disk)
        .with_object_store_registry(registry)
        // Jobs replace whole directories between queries: a cached listing would point at
        // files a commit has just removed.
        .with_object_list_cache_limit(0)
        .build_arc()
        .map_err(Error::engine("building the runtime environment"))
}

/// The handle jobs receive: they ask it for the context and never build one.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    registry: Arc<StoreRegistry>,
    /// Upper bound on one query when it runs on a cluster.
    timeout: Option<std::time::Duration>,
}

impl Engine {
    /// An in-process engine: no cluster, no services.
    pub fn in_process(config: &Config) -> Result<Engine> {
        let registry = Arc::new(StoreRegistry::new());
        let state = SessionStateBuilder::new()
            .with_config(session_config(config))
            .with_runtime_env(runtime_env(config, Arc::clone(&registry))?)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx);
        Ok(Engine {
            ctx,
            registry,
            timeout: None,
        })
    }

    /// The engine the configuration asks for: the Ballista cluster at `cluster.url`, or
    /// in-process when it is empty.
    pub async fn connect(config: &Config) -> Result<Engine> {
        if config.cluster.url.is_empty() {
            return Self::in_process(config);
        }
        let registry = Arc::new(StoreRegistry::new());
        let ctx = crate::cluster::remote_context(config, Arc::clone(&registry)).await?;
        let timeout = (config.cluster.query_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(config.cluster.query_timeout_secs));
        Ok(Engine { ctx, registry, timeout })
    }

    /// Runs `work` within the cluster query timeout, if there is one.
    async fn bounded<T>(&self, what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match self.timeout {
            None => work.await,
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                Err(Error::Stage {
                    stage: what.to_string(),
                    message: format!(
                        "the cluster did not finish within {} s (are executors alive? see `ebroker jobs list`); raise cluster.query_timeout_secs if the job is just slow",
                        limit.as_secs()
                    ),
                })
            }),
        }
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn registry(&self) -> &Arc<StoreRegistry> {
        &self.registry
    }

    /// Registers the Parquet files under the directory `url` as table `name`. With a schema
    /// the table reads even when the directory is empty or absent.
    pub async fn register_parquet_dir(&self, name: &str, url: &Url, schema: Option<SchemaRef>) -> Result<()> {
        let context = format!("registering {url} as table {name}");
        let table_url = ListingTableUrl::parse(url.as_str()).map_err(Error::engine(context.clone()))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(table_url).with_listing_options(options);
        let config = match schema {
            Some(schema) => config.with_schema(schema),
            None => config
                .infer_schema(&self.ctx.state())
                .await
                .map_err(Error::engine(context.clone()))?,
        };
        let table = ListingTable::try_new(config).map_err(Error::engine(context.clone()))?;
        self.ctx
            .deregister_table(name)
            .map_err(Error::engine(context.clone()))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(Error::engine(context))?;
        Ok(())
    }

    /// Plans `sql`.
    pub async fn sql(&self, sql: &str, what: &str) -> Result<DataFrame> {
        self.ctx
            .sql(sql)
            .await
            .map_err(Error::engine(format!("planning {what}")))
    }

    /// Runs `sql` and collects the (small) result.
    pub async fn collect(&self, sql: &str, what: &str) -> Result<Vec<RecordBatch>> {
        let df = self.sql(sql, what).await?;
        self.bounded(what, async {
            df.collect().await.map_err(Error::engine(format!("running {what}")))
        })
        .await
    }

    /// Writes `df` as Parquet files into the directory `url`; returns the rows written.
    pub async fn write_parquet_dir(&self, df: DataFrame, url: &Url, what: &str) -> Result<u64> {
        self.write_parquet_dir_with(df, url, DataFrameWriteOptions::new(), what)
            .await
    }

    /// [`Self::write_parquet_dir`] with write options (e.g. a partitioned write).
    pub async fn write_parquet_dir_with(
        &self,
        df: DataFrame,
        url: &Url,
        options: DataFrameWriteOptions,
        what: &str,
    ) -> Result<u64> {
        if let Ok(dir) = url.to_file_path() {
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        let write = async {
            df.write_parquet(url.as_str(), options, None)
                .await
                .map_err(Error::engine(format!("writing {what} to {url}")))
        };
        let batches = self.bounded(what, write).await?;
        Ok(count_of(&batches))
    }
}

/// The single `count` value of a DML result.
fn count_of(batches: &[RecordBatch]) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::UInt64Type;
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
        .sum()
}

/// A single integer from the first row and column of a query result.
pub fn scalar_u64(batches: &[RecordBatch]) -> u64 {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            let col = cast(b.column(0), &DataType::UInt64).ok()?;
            let col = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()?
                .clone();
            (!col.is_null(0)).then(|| col.value(0))
        })
        .unwrap_or(0)
}
