//! The stages of the daily pipeline (docs/SPEC.md §3), each one type behind the [`Stage`]
//! trait, and [`registry`]: the one list both the DAG runner (`ebroker run`) and the command
//! line (`ebroker <stage>`) read. A stage gets a [`StageContext`] — configuration, warehouse,
//! SQL, the processing date and an engine made on first use — and returns a [`StageReport`].
//!
//! Adding a stage: one new file here implementing [`Stage`], and its line in [`registry`].
//! The CLI subcommand and the run-state entry follow from the stage's name and flags.

pub mod analytics;
pub mod clean;
pub mod generate;
pub mod ingest;
pub mod offers;
pub mod produce;
pub mod publish;
pub mod segment;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::SqlLibrary;
use crate::warehouse::lease::Lease;
use crate::warehouse::{StoreRegistry, Warehouse};
use crate::ProcessingDate;

/// Every stage, in the order the DAG runs them.
pub fn registry() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(generate::Generate),
        Box::new(produce::Produce),
        Box::new(ingest::Ingest),
        Box::new(clean::Clean),
        Box::new(segment::Segment),
        Box::new(offers::Offers),
        Box::new(analytics::Analytics),
        Box::new(publish::PublishGreenplum),
        Box::new(publish::PublishClickhouse),
    ]
}

/// The stage called `name` in run state (`clean`, `publish_greenplum`, ...).
pub fn by_name(name: &str) -> Option<Box<dyn Stage>> {
    registry().into_iter().find(|s| s.name() == name)
}

/// The flags a stage's subcommand takes besides the global ones (the CLI builds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `--date YYYY-MM-DD`: the processing date (default today).
    Date,
    /// `--input DIR`: the directory of the seven source CSV files.
    Input,
    /// `--out DIR`: where the generator writes the CSV files (required).
    Out,
    /// `--clients N --seed N --dirty F`: the generator's settings (config `generate.*`).
    Generator,
    /// `--force`: redo work that is already complete for the date.
    Force,
    /// `--format table|csv|json`: how result tables are printed.
    Format,
}

/// One step of the pipeline.
#[async_trait::async_trait]
pub trait Stage: Send + Sync {
    /// The name in run state, logs and staging paths (`snake_case`).
    fn name(&self) -> &'static str;

    /// The subcommand that runs it alone, as words (`["clean"]`, `["publish", "greenplum"]`).
    fn command(&self) -> &'static [&'static str];

    /// One line for `--help`; more lines follow in `ebroker <command> --help`.
    fn about(&self) -> &'static str;

    /// The subcommand's own flags.
    fn flags(&self) -> &'static [Flag] {
        &[Flag::Date]
    }

    /// Whether `ebroker run` includes it, for this context (e.g. Kafka configured).
    fn enabled(&self, ctx: &StageContext) -> bool;

    /// Whether it writes the date's warehouse (or its publish targets), and so runs under the
    /// date's lease after its leftover commits are rolled forward.
    fn writes_date(&self) -> bool {
        true
    }

    /// Does the work for `ctx.date`.
    async fn run(&self, ctx: &StageContext) -> Result<StageReport>;
}

/// What a stage works with. The engine is made on first use, so stages that need no query
/// engine (publishing, Kafka) never connect to a cluster.
pub struct StageContext {
    pub config: Config,
    pub warehouse: Warehouse,
    pub sql: SqlLibrary,
    pub date: ProcessingDate,
    /// The directory of the seven source CSV files: written by generate, read by produce and
    /// clean.
    pub input: Option<PathBuf>,
    /// `input` is made by this run's generate stage (no sources were given).
    pub input_generated: bool,
    /// The sources went through Kafka in this run: clean reads the raw zone, not `input`.
    pub via_kafka: bool,
    /// Redo work that is already complete for the date (`ingest --force`).
    pub force: bool,
    registry: Arc<StoreRegistry>,
    engine: OnceCell<Engine>,
}

impl StageContext {
    /// A context for `date` over the configured warehouse.
    pub fn new(config: Config, date: ProcessingDate) -> Result<StageContext> {
        Self::new_with(config, Arc::new(StoreRegistry::new()), date)
    }

    fn new_with(config: Config, registry: Arc<StoreRegistry>, date: ProcessingDate) -> Result<StageContext> {
        let warehouse = Warehouse::open(&config.warehouse, registry.as_ref())?;
        let sql = SqlLibrary::new(config.sql.override_dir());
        Ok(StageContext {
            config,
            warehouse,
            sql,
            date,
            input: None,
            input_generated: false,
            via_kafka: false,
            force: false,
            registry,
            engine: OnceCell::new(),
        })
    }

    /// A context whose engine is `engine` (tests and tools that built one already).
    pub fn with_engine(config: Config, engine: Engine, date: ProcessingDate) -> Result<StageContext> {
        let registry = Arc::clone(engine.registry());
        let ctx = StageContext::new_with(config, registry, date)?;
        ctx.engine
            .set(engine)
            .map_err(|_| Error::Usage("the engine was set twice".into()))?;
        Ok(ctx)
    }

    /// Makes this process the date's one writer: takes the date's lease (failing at once,
    /// naming the holder, when another process has it), then rolls forward what an
    /// interrupted commit left journaled. Release the lease when the work is done.
    pub async fn take_date(&self, command: &str) -> Result<Lease> {
        let lease = self
            .warehouse
            .acquire_lease(self.date, command, self.config.run.lease_seconds)
            .await?;
        match self.warehouse.recover(self.date).await {
            Ok(stages) => {
                for stage in stages {
                    eprintln!(
                        "ebroker: finished the interrupted commit of stage {stage} for {}",
                        self.date
                    );
                }
                Ok(lease)
            }
            Err(e) => {
                lease.release().await?;
                Err(e)
            }
        }
    }

    /// The query engine: in-process, or the Ballista cluster at `cluster.url`.
    pub async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| Engine::connect_with(&self.config, Arc::clone(&self.registry)))
            .await
    }
}

/// What a stage did.
#[derive(Debug, Default)]
pub struct StageReport {
    /// The count recorded in run state: rows written (clean: records read).
    pub rows: u64,
    /// What the subcommand prints: counts per table, rates, where the output went.
    pub summary: String,
    /// Result tables the command line prints in the format asked for (analytics' reports).
    pub tables: Vec<(String, Vec<RecordBatch>)>,
}
