//! The segment stage (docs/SPEC.md §5): per-client aggregates and the three segment axes, from the
//! cleaned tables of a processing date, by `sql/datafusion/segment.sql`, into
//! `marts/client_segmentation/processing_date=D/`. The query runs once per client bucket of
//! the cleaned tables ([`crate::tables::buckets`]): every client's rows are in one bucket, so each
//! pass aggregates a fraction of the day in memory, and the day is published in one commit.

use ebroker_plans::run::write_partitions;

use super::{Stage, StageContext, StageReport};
use crate::engine::Engine;
use crate::error::Result;
use crate::schema::marts::CLIENT_SEGMENTATION;
use crate::schema::TABLES;
use crate::sql::SqlLibrary;
use crate::tables::buckets::CleanedBuckets;
use crate::tables::partitions::PartitionWriter;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

const STAGE: &str = "segment";

/// segment.sql writes each join with a table's per-client aggregates (a few narrow columns)
/// on the build side and the clients streaming through; with join reordering, DataFusion
/// turns them around from its row estimates and hashes the clients' wide rows in every join
/// (500k clients: 2.1 s against 1.2 s for the query, and the sorts spilled).
const PLAN_OPTIONS: &[(&str, &str)] = &[("datafusion.optimizer.join_reordering", "false")];

pub struct Segment;

#[async_trait::async_trait]
impl Stage for Segment {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn command(&self) -> &'static [&'static str] {
        &["segment"]
    }

    fn about(&self) -> &'static str {
        "Compute client_segmentation from the cleaned tables of a date (SPEC §5)"
    }

    fn enabled(&self, _: &StageContext) -> bool {
        true
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let clients = segment(ctx.engine().await?, &ctx.warehouse, &ctx.sql, ctx.date).await?;
        let summary = format!("{} {}: {clients} clients\n", CLIENT_SEGMENTATION.name, ctx.date);
        Ok(StageReport {
            rows: clients,
            summary,
            tables: Vec::new(),
        })
    }
}

/// Computes `client_segmentation` for `date`; returns the number of clients.
pub async fn segment(engine: &Engine, warehouse: &Warehouse, sql: &SqlLibrary, date: ProcessingDate) -> Result<u64> {
    let sources: Vec<_> = TABLES.iter().copied().filter(|t| t.has_client_id()).collect();
    let buckets = CleanedBuckets::discover(warehouse, &sources, date).await?;
    let query = sql.render(CLIENT_SEGMENTATION.sql, &[("processing_date", date.as_str())])?;
    let mut output = PartitionWriter::begin(warehouse, STAGE, Zone::Marts, CLIENT_SEGMENTATION.name, date).await?;
    for bucket in 0..buckets.buckets() {
        buckets.register(engine, bucket).await?;
        let df = engine.sql_with_options(&query, PLAN_OPTIONS, "segmenting").await?;
        let clients = output
            .write_with(|dir, prefix| write_partitions(engine, df, dir, prefix, "writing client_segmentation"))
            .await?;
        tracing::info!(
            %date,
            bucket,
            of = buckets.buckets(),
            clients,
            "segmented a client bucket"
        );
    }
    output.commit().await
}
