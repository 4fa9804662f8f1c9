//! Reading and writing warehouse tables by processing date: registering a day's cleaned
//! tables and marts under their plain names, and writing a query's result as a day's
//! partition through staging and one commit (docs/DESIGN.md, idea 4).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use datafusion::prelude::DataFrame;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use crate::date::ProcessingDate;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::TABLES;
use crate::warehouse::commit::Commit;
use crate::warehouse::{parquet, Warehouse, Zone};

/// Registers the seven cleaned tables of `date` (`clients`, `bank_transactions`, ...).
pub async fn register_cleaned(engine: &Engine, warehouse: &Warehouse, date: ProcessingDate) -> Result<()> {
    for table in TABLES {
        let url = warehouse.url(&Warehouse::partition(Zone::Cleaned, table.name, date));
        engine
            .register_parquet_dir(table.name, &url, Some(table.cleaned_schema()))
            .await?;
    }
    Ok(())
}

/// Registers the mart `name` of `date` as table `name`.
pub async fn register_mart(engine: &Engine, warehouse: &Warehouse, name: &str, date: ProcessingDate) -> Result<()> {
    let url = warehouse.url(&Warehouse::partition(Zone::Marts, name, date));
    engine.register_parquet_dir(name, &url, None).await
}

/// Runs `sql` and publishes its result as `zone/table/processing_date=date/`, replacing the
/// day's previous output in one step. Returns the rows written.
pub async fn write_partition(
    engine: &Engine,
    warehouse: &Warehouse,
    stage: &str,
    zone: Zone,
    table: &str,
    date: ProcessingDate,
    sql: &str,
) -> Result<u64> {
    let mut output = PartitionWriter::begin(warehouse, stage, zone, table, date).await?;
    output.write_query(engine, sql).await?;
    output.commit().await
}

/// One day of a table written by one or more queries into staging, then published in one
/// commit: nothing is visible until [`PartitionWriter::commit`] (or the [`Commit`] it was
/// added to is published), and a writer dropped before leaves the previous day as it was.
pub struct PartitionWriter<'a> {
    warehouse: &'a Warehouse,
    stage: String,
    date: ProcessingDate,
    staged: String,
    target: String,
    what: String,
    rows: u64,
    writes: usize,
}

impl<'a> PartitionWriter<'a> {
    /// Clears the stage's leftover staging for `zone/table` of `date`.
    pub async fn begin(
        warehouse: &'a Warehouse,
        stage: &str,
        zone: Zone,
        table: &str,
        date: ProcessingDate,
    ) -> Result<PartitionWriter<'a>> {
        let staged = Warehouse::staging(stage, date, zone.dir(), table);
        warehouse.remove_all(&staged).await?;
        let target = Warehouse::partition(zone, table, date);
        Ok(PartitionWriter {
            warehouse,
            stage: stage.to_string(),
            date,
            staged,
            target,
            what: format!("{table} for {date}"),
            rows: 0,
            writes: 0,
        })
    }

    /// Runs `sql` and adds its result to the staged day.
    pub async fn write_query(&mut self, engine: &Engine, sql: &str) -> Result<u64> {
        let df = engine.sql(sql, &self.what).await?;
        self.write(engine, df).await
    }

    /// Runs the planned `df` and adds its result to the staged day.
    pub async fn write(&mut self, engine: &Engine, df: DataFrame) -> Result<u64> {
        let rows = engine
            .write_parquet_dir(df, &self.warehouse.url(&self.staged), &self.what)
            .await?;
        self.rows += rows;
        Ok(rows)
    }

    /// Adds to the staged day what `write` writes into the directory it is given, in files
    /// whose names start with the prefix it is given (one of its own per write of the day);
    /// `write` returns the rows it wrote.
    pub async fn write_with<F, W>(&mut self, write: F) -> Result<u64>
    where
        F: FnOnce(url::Url, String) -> W,
        W: std::future::Future<Output = Result<u64>>,
    {
        let prefix = format!("part{}", self.writes);
        self.writes += 1;
        let rows = write(self.staged_url(), prefix).await?;
        self.rows += rows;
        Ok(rows)
    }

    /// The staged day's URL, for queries that read it before it is published.
    pub fn staged_url(&self) -> url::Url {
        self.warehouse.url(&self.staged)
    }

    /// Adds the staged day to `commit`, to be published with the stage's other outputs;
    /// returns the rows written.
    pub fn add_to(self, commit: &mut Commit) -> u64 {
        commit.directory(&self.staged, &self.target);
        self.rows
    }

    /// Publishes the staged day alone; returns the rows written.
    pub async fn commit(self) -> Result<u64> {
        let mut commit = Commit::new(&self.stage, self.date);
        let (warehouse, what) = (self.warehouse, self.what.clone());
        let rows = self.add_to(&mut commit);
        warehouse.publish(commit).await?;
        tracing::info!(%what, rows, "published");
        Ok(rows)
    }
}

/// Streams the record batches of one day of a table (`zone/table/processing_date=date/`),
/// file by file, `batch_rows` rows at a time, for loaders that push a day to another system
/// and for cleaning's reader of the raw zone. Fails when the day has no files, naming the
/// stage that writes them.
pub async fn read_partition(
    warehouse: &Warehouse,
    zone: Zone,
    table: &str,
    date: ProcessingDate,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let partition = Warehouse::partition(zone, table, date);
    let files: Vec<_> = warehouse
        .list_files(&partition)
        .await?
        .into_iter()
        .filter(|p| p.as_ref().ends_with(".parquet"))
        .collect();
    if files.is_empty() {
        return Err(Error::Input {
            path: warehouse.url(&partition).to_string(),
            message: format!(
                "{table} has no data for {date}; run the stage that writes it first (`ebroker run --date {date}`)"
            ),
        });
    }
    let store = Arc::clone(warehouse.store());
    let batches = futures::stream::iter(files)
        .then(move |file| {
            let store = Arc::clone(&store);
            async move {
                let path = file.to_string();
                #[allow(deprecated)] // still the reader DataFusion 55 uses itself
                let reader = datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(store, file);
                let stream = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .and_then(|b| b.with_batch_size(batch_rows).build())
                    .map_err(|source| Error::Parquet {
                        path: path.clone(),
                        source,
                    })?;
                Ok::<_, Error>(stream.map_err(move |source| Error::Parquet {
                    path: path.clone(),
                    source,
                }))
            }
        })
        .try_flatten();
    Ok(batches.boxed())
}

/// The rows of the Parquet files under `dir`, read from their footers (no query), so that
/// what a stage wrote is counted independently of the plan that wrote it.
pub async fn footer_rows(warehouse: &Warehouse, dir: &str) -> Result<u64> {
    let mut rows = 0;
    for file in warehouse.list_files(dir).await? {
        if !file.as_ref().ends_with(".parquet") {
            continue;
        }
        let path = file.to_string();
        #[allow(deprecated)] // still the reader DataFusion 55 uses itself
        let reader =
            datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(Arc::clone(warehouse.store()), file);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|source| Error::Parquet { path, source })?;
        rows += u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    }
    Ok(rows)
}

/// Stages `batch` (built in the client, e.g. the day's offer templates) as the day of
/// `zone/table` and adds it to `commit`; returns the staged directory's URL, so cluster
/// nodes can read it like any other table before it is published.
pub async fn stage_batch(
    warehouse: &Warehouse,
    commit: &mut Commit,
    stage: &str,
    (zone, table): (Zone, &str),
    date: ProcessingDate,
    batch: &RecordBatch,
) -> Result<url::Url> {
    let staged = Warehouse::staging(stage, date, zone.dir(), table);
    warehouse.remove_all(&staged).await?;
    let file = format!("{staged}part-0.parquet");
    let mut writer = parquet::writer(warehouse, &file, batch.schema(), Default::default())?;
    writer.write(batch).await.map_err(parquet::parquet_error(&file))?;
    writer.close().await.map_err(parquet::parquet_error(&file))?;
    commit.directory(&staged, &Warehouse::partition(zone, table, date));
    Ok(warehouse.url(&staged))
}
