//! The publish stages (docs/SPEC.md §7, §8): a date's tables to Greenplum and to ClickHouse.
//! The work is the sinks' ([`crate::sinks::greenplum`], [`crate::sinks::clickhouse`]); these
//! types put them in the DAG and on the command line (`ebroker publish greenplum|clickhouse`).

use super::{Stage, StageContext, StageReport};
use crate::error::Result;
use crate::sinks::{clickhouse, greenplum};

pub struct PublishGreenplum;

#[async_trait::async_trait]
impl Stage for PublishGreenplum {
    fn name(&self) -> &'static str {
        "publish_greenplum"
    }

    fn command(&self) -> &'static [&'static str] {
        &["publish", "greenplum"]
    }

    fn about(&self) -> &'static str {
        "Load the cleaned tables and client_segmentation into Greenplum (PXF external tables) or PostgreSQL (binary COPY), replacing the day in one transaction, and run the in-database segmentation (sql/greenplum/segmentation.sql). Connection: [greenplum] or GPHOST etc."
    }

    fn enabled(&self, ctx: &StageContext) -> bool {
        ctx.config.greenplum.enabled()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let report = greenplum::publish(&ctx.config.greenplum, &ctx.warehouse, &ctx.sql, ctx.date).await?;
        Ok(StageReport {
            rows: report.rows(),
            summary: report.render(),
            tables: Vec::new(),
        })
    }
}

pub struct PublishClickhouse;

#[async_trait::async_trait]
impl Stage for PublishClickhouse {
    fn name(&self) -> &'static str {
        "publish_clickhouse"
    }

    fn command(&self) -> &'static [&'static str] {
        &["publish", "clickhouse"]
    }

    fn about(&self) -> &'static str {
        "Publish marketing_clients, targeted_offers and marketing_analytics_daily to ClickHouse (RowBinary, lz4); each table's month is rebuilt in a staging table and swapped in atomically, so a day published twice is there once. Connection: [clickhouse]"
    }

    fn enabled(&self, ctx: &StageContext) -> bool {
        ctx.config.clickhouse.enabled()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let report = clickhouse::publish(&ctx.config.clickhouse, &ctx.warehouse, &ctx.sql, ctx.date).await?;
        Ok(StageReport {
            rows: report.rows(),
            summary: report.render(),
            tables: Vec::new(),
        })
    }
}
