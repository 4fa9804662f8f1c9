//! The one engine handle (docs/DESIGN.md): the DataFusion `SessionContext` every job runs in —
//! in-process, or a client of a Ballista cluster — with the configured memory budget, spill
//! directory, the project's object stores and functions, and the calls jobs make on it:
//! register a directory of Parquet as a table, plan SQL, collect, write Parquet.

pub mod functions;
pub mod memory;
pub mod remote;
pub mod session;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionContext};
use url::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::warehouse::StoreRegistry;
use session::{runtime_env, session_config};

/// The handle jobs receive: they ask it for the context and never build one.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    registry: Arc<StoreRegistry>,
    /// Upper bound on one query when it runs on a cluster.
    timeout: Option<std::time::Duration>,
    /// The scheduler's gRPC address (`http://host:port`) when the engine is a cluster client.
    scheduler: Option<String>,
}

impl Engine {
    /// An in-process engine: no cluster, no services.
    pub fn in_process(config: &Config) -> Result<Engine> {
        Self::in_process_with(config, Arc::new(StoreRegistry::new()))
    }

    /// An in-process engine resolving URLs through `registry` (shared with the warehouse).
    fn in_process_with(config: &Config, registry: Arc<StoreRegistry>) -> Result<Engine> {
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
            scheduler: None,
        })
    }

    /// The engine the configuration asks for: the Ballista cluster at `cluster.url`, or
    /// in-process when it is empty.
    pub async fn connect(config: &Config) -> Result<Engine> {
        Self::connect_with(config, Arc::new(StoreRegistry::new())).await
    }

    /// [`Self::connect`], resolving URLs through `registry` (shared with the warehouse).
    pub async fn connect_with(config: &Config, registry: Arc<StoreRegistry>) -> Result<Engine> {
        if config.cluster.url.is_empty() {
            return Self::in_process_with(config, registry);
        }
        let ctx = remote::remote_context(config, Arc::clone(&registry)).await?;
        let timeout = (config.cluster.query_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(config.cluster.query_timeout_secs));
        Ok(Engine {
            ctx,
            registry,
            timeout,
            scheduler: Some(remote::scheduler_address(&config.cluster.url)?),
        })
    }

    /// The scheduler's gRPC address (`http://host:port`) when jobs run on a cluster.
    pub fn scheduler_url(&self) -> Option<&str> {
        self.scheduler.as_deref()
    }

    /// Runs `work` within the cluster query timeout, if there is one.
    pub async fn bounded<T>(&self, what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
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

    /// Plans `sql` with session options of its own (`datafusion.*` keys) over the engine's,
    /// for a query written for a plan the defaults would not choose (the segmentation's joins
    /// are written build side first and planned without join reordering).
    pub async fn sql_with_options(&self, sql: &str, options: &[(&str, &str)], what: &str) -> Result<DataFrame> {
        let mut state = self.ctx.state();
        for (key, value) in options {
            state
                .config_mut()
                .options_mut()
                .set(key, value)
                .map_err(Error::engine(format!("setting {key} = {value} for {what}")))?;
        }
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(Error::engine(format!("planning {what}")))?;
        Ok(DataFrame::new(state, plan))
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
        self.write_parquet_dir_with(df, url, (DataFrameWriteOptions::new(), None), what)
            .await
    }

    /// [`Self::write_parquet_dir`] with write options (e.g. a partitioned write) and, where
    /// given, Parquet options other than the session's (e.g. a scratch file's).
    pub async fn write_parquet_dir_with(
        &self,
        df: DataFrame,
        url: &Url,
        (options, parquet): (DataFrameWriteOptions, Option<TableParquetOptions>),
        what: &str,
    ) -> Result<u64> {
        if let Ok(dir) = url.to_file_path() {
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        let write = async {
            df.write_parquet(url.as_str(), options, parquet)
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
    first_row_u64(batches, 0)
}

/// The integer in `column` of the first row of a query result (0 when there is none).
pub fn first_row_u64(batches: &[RecordBatch], column: usize) -> u64 {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    batches
        .iter()
        .find(|b| b.num_rows() > 0 && b.num_columns() > column)
        .and_then(|b| {
            let col = cast(b.column(column), &DataType::UInt64).ok()?;
            let col = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()?
                .clone();
            (!col.is_null(0)).then(|| col.value(0))
        })
        .unwrap_or(0)
}
