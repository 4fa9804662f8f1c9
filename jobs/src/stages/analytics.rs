//! The analytics stage (docs/SPEC.md §8): the daily slice per combined segment as the mart
//! `marketing_analytics_daily`, and the three standard reports over the day's offers,
//! rendered as aligned tables, CSV or JSON.

use datafusion::arrow::record_batch::RecordBatch;

use super::{Flag, Stage, StageContext, StageReport};
use crate::engine::Engine;
use crate::error::Result;
use crate::schema::marts::{MARKETING_ANALYTICS_DAILY, MARKETING_CLIENTS, TARGETED_OFFERS};
use crate::sql::SqlLibrary;
use crate::tables::partitions::{register_cleaned, register_mart, write_partition};
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

const STAGE: &str = "analytics";

pub struct Analytics;

#[async_trait::async_trait]
impl Stage for Analytics {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn command(&self) -> &'static [&'static str] {
        &["analytics"]
    }

    fn about(&self) -> &'static str {
        "Write the daily analytics slice and print the standard reports (SPEC §8)"
    }

    fn flags(&self) -> &'static [Flag] {
        &[Flag::Date, Flag::Format]
    }

    fn enabled(&self, _: &StageContext) -> bool {
        true
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let report = analytics(ctx.engine().await?, &ctx.warehouse, &ctx.sql, ctx.date).await?;
        Ok(StageReport {
            rows: report.daily_rows,
            summary: String::new(),
            tables: report.sections,
        })
    }
}

/// The standard reports: (title, SQL file).
pub const REPORTS: [(&str, &str); 3] = [
    (
        "Offers by type and combined segment",
        "datafusion/report_offers_by_type.sql",
    ),
    (
        "Top 10 clients by expected revenue",
        "datafusion/report_top_clients.sql",
    ),
    (
        "Offers by priority level and offer priority",
        "datafusion/report_offers_by_priority.sql",
    ),
];

/// The daily slice and the reports of one processing date.
pub struct AnalyticsReport {
    pub daily_rows: u64,
    pub sections: Vec<(String, Vec<RecordBatch>)>,
}

/// Writes `marketing_analytics_daily` for `date` and computes the standard reports.
pub async fn analytics(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<AnalyticsReport> {
    register_cleaned(engine, warehouse, date).await?;
    register_mart(engine, warehouse, MARKETING_CLIENTS.name, date).await?;
    register_mart(engine, warehouse, TARGETED_OFFERS.name, date).await?;
    let daily_sql = sql.render(MARKETING_ANALYTICS_DAILY.sql, &[("processing_date", date.as_str())])?;
    // The slice and the three reports are independent: run at once, they share the cores.
    let daily = async {
        let rows = write_partition(
            engine,
            warehouse,
            STAGE,
            Zone::Marts,
            MARKETING_ANALYTICS_DAILY.name,
            date,
            &daily_sql,
        )
        .await?;
        register_mart(engine, warehouse, MARKETING_ANALYTICS_DAILY.name, date).await?;
        let query = "SELECT * FROM marketing_analytics_daily ORDER BY segment";
        let batches = engine.collect(query, "reading the daily slice").await?;
        Ok::<_, crate::error::Error>((rows, (format!("Daily analytics {date}"), batches)))
    };
    let reports = REPORTS.iter().map(|(title, file)| async move {
        let query = sql.render(file, &[])?;
        let batches = engine.collect(&query, title).await?;
        Ok::<_, crate::error::Error>((title.to_string(), batches))
    });
    let ((daily_rows, daily), reports) = futures::try_join!(daily, futures::future::try_join_all(reports))?;
    let sections = std::iter::once(daily).chain(reports).collect();
    Ok(AnalyticsReport { daily_rows, sections })
}
