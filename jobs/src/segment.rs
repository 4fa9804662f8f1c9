//! The segment stage (SPEC §5): per-client aggregates and the three segment axes, from the
//! cleaned tables of a processing date, by `sql/datafusion/segment.sql`, into
//! `marts/client_segmentation/processing_date=D/`.

use crate::engine::Engine;
use crate::error::Result;
use crate::marts::{register_cleaned, write_partition};
use crate::sql::SqlLibrary;
use crate::storage::{Warehouse, Zone};

pub const STAGE: &str = "segment";

/// Computes `client_segmentation` for `date`; returns the number of clients.
pub async fn segment(engine: &Engine, warehouse: &Warehouse, sql: &SqlLibrary, date: &str) -> Result<u64> {
    register_cleaned(engine, warehouse, date).await?;
    let query = sql.render("datafusion/segment.sql", &[("processing_date", date)])?;
    write_partition(engine, warehouse, STAGE, Zone::Marts, "client_segmentation", date, &query).await
}
