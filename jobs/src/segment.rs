//! The segment stage (SPEC §5): per-client aggregates and the three segment axes, from the
//! cleaned tables of a processing date, by `sql/datafusion/segment.sql`, into
//! `marts/client_segmentation/processing_date=D/`. The query runs once per client bucket of
//! the cleaned tables ([`crate::buckets`]): every client's rows are in one bucket, so each
//! pass aggregates a fraction of the day in memory, and the day is published in one commit.

use crate::buckets::CleanedBuckets;
use crate::engine::Engine;
use crate::error::Result;
use crate::marts::PartitionWriter;
use crate::schema::TABLES;
use crate::sql::SqlLibrary;
use crate::storage::{Warehouse, Zone};

pub const STAGE: &str = "segment";

/// Computes `client_segmentation` for `date`; returns the number of clients.
pub async fn segment(engine: &Engine, warehouse: &Warehouse, sql: &SqlLibrary, date: &str) -> Result<u64> {
    let sources: Vec<_> = TABLES.iter().copied().filter(|t| t.has_client_id()).collect();
    let buckets = CleanedBuckets::discover(warehouse, &sources, date).await?;
    let query = sql.render("datafusion/segment.sql", &[("processing_date", date)])?;
    let mut output = PartitionWriter::begin(warehouse, STAGE, Zone::Marts, "client_segmentation", date).await?;
    for bucket in 0..buckets.buckets() {
        buckets.register(engine, bucket).await?;
        let clients = output.write_query(engine, &query).await?;
        tracing::info!(
            date,
            bucket,
            of = buckets.buckets(),
            clients,
            "segmented a client bucket"
        );
    }
    output.commit().await
}
