//! Reading and writing warehouse tables by processing date: registering a day's cleaned
//! tables and marts under their plain names, and writing a query's result as a day's
//! partition through staging and one commit (DESIGN.md, idea 4).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use object_store::buffered::BufWriter;

use crate::clean::cleaned_schema;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::TABLES;
use crate::storage::{Warehouse, Zone};

/// Registers the seven cleaned tables of `date` (`clients`, `bank_transactions`, ...).
pub async fn register_cleaned(engine: &Engine, warehouse: &Warehouse, date: &str) -> Result<()> {
    for table in TABLES {
        let url = warehouse.url(&Warehouse::partition(Zone::Cleaned, table.name, date));
        engine.register_parquet_dir(table.name, &url, Some(cleaned_schema(table))).await?;
    }
    Ok(())
}

/// Registers the mart `name` of `date` as table `name`.
pub async fn register_mart(engine: &Engine, warehouse: &Warehouse, name: &str, date: &str) -> Result<()> {
    let url = warehouse.url(&Warehouse::partition(Zone::Marts, name, date));
    engine.register_parquet_dir(name, &url, None).await
}

/// Runs `sql` and publishes its result as `zone/table/processing_date=date/`, replacing the
/// day's previous output in one step. Returns the rows written.
pub async fn write_partition(engine: &Engine, warehouse: &Warehouse, stage: &str, zone: Zone, table: &str, date: &str, sql: &str) -> Result<u64> {
    let staged = Warehouse::staging(stage, date, zone.dir(), table);
    warehouse.remove_all(&staged).await?;
    let what = format!("{table} for {date}");
    let df = engine.sql(sql, &what).await?;
    let rows = engine.write_parquet_dir(df, &warehouse.url(&staged), &what).await?;
    warehouse.commit(&staged, &Warehouse::partition(zone, table, date)).await?;
    tracing::info!(table, date, rows, "published");
    Ok(rows)
}

/// Publishes `batch` (built in the client, e.g. the day's offer templates) as the partition
/// `zone/table/processing_date=date/`, through staging and one commit, so that cluster
/// nodes read it like any other table.
pub async fn write_batch(warehouse: &Warehouse, stage: &str, zone: Zone, table: &str, date: &str, batch: &RecordBatch) -> Result<()> {
    let staged = Warehouse::staging(stage, date, zone.dir(), table);
    warehouse.remove_all(&staged).await?;
    let file = format!("{staged}part-0.parquet");
    let parquet_error = |source| Error::Parquet { path: file.clone(), source };
    let sink = BufWriter::new(Arc::clone(warehouse.store()), warehouse.path(&file));
    let mut writer = AsyncArrowWriter::try_new(sink, batch.schema(), None).map_err(parquet_error)?;
    writer.write(batch).await.map_err(parquet_error)?;
    writer.close().await.map_err(parquet_error)?;
    warehouse.commit(&staged, &Warehouse::partition(zone, table, date)).await
}
