//! The analytics stage (SPEC §8): the daily slice per combined segment as the mart
//! `marketing_analytics_daily`, and the three standard reports over the day's offers,
//! rendered as aligned tables, CSV or JSON.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::marts::{register_cleaned, register_mart, write_partition};
use crate::sql::SqlLibrary;
use crate::storage::{Warehouse, Zone};

pub const STAGE: &str = "analytics";

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

/// How reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

/// The daily slice and the reports of one processing date.
pub struct AnalyticsReport {
    pub daily_rows: u64,
    pub sections: Vec<(String, Vec<RecordBatch>)>,
}

impl AnalyticsReport {
    /// Renders every section in `format`.
    pub fn render(&self, format: ReportFormat) -> Result<String> {
        let mut out = String::new();
        for (title, batches) in &self.sections {
            match format {
                ReportFormat::Table => {
                    let table = pretty_format_batches(batches)
                        .map_err(|e| Error::engine(format!("formatting {title}"))(e.into()))?;
                    out.push_str(&format!("{title}\n{table}\n\n"));
                }
                ReportFormat::Csv => {
                    out.push_str(&format!("# {title}\n"));
                    let mut writer = datafusion::arrow::csv::Writer::new(Vec::new());
                    for batch in batches {
                        writer
                            .write(batch)
                            .map_err(|e| Error::engine(format!("formatting {title}"))(e.into()))?;
                    }
                    out.push_str(&String::from_utf8_lossy(&writer.into_inner()));
                    out.push('\n');
                }
                ReportFormat::Json => {
                    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
                    let refs: Vec<&RecordBatch> = batches.iter().collect();
                    writer
                        .write_batches(&refs)
                        .map_err(|e| Error::engine(format!("formatting {title}"))(e.into()))?;
                    writer
                        .finish()
                        .map_err(|e| Error::engine(format!("formatting {title}"))(e.into()))?;
                    let rows = String::from_utf8_lossy(&writer.into_inner()).into_owned();
                    let rows = if rows.is_empty() { "[]".to_string() } else { rows };
                    out.push_str(&format!(
                        "{{\"report\":{},\"rows\":{rows}}}\n",
                        serde_json::Value::String(title.clone())
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Writes `marketing_analytics_daily` for `date` and computes the standard reports.
pub async fn analytics(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: &str,
) -> Result<AnalyticsReport> {
    register_cleaned(engine, warehouse, date).await?;
    register_mart(engine, warehouse, "marketing_clients", date).await?;
    register_mart(engine, warehouse, "targeted_offers", date).await?;
    let daily_sql = sql.render("datafusion/analytics_daily.sql", &[("processing_date", date)])?;
    let daily_rows = write_partition(
        engine,
        warehouse,
        STAGE,
        Zone::Marts,
        "marketing_analytics_daily",
        date,
        &daily_sql,
    )
    .await?;
    register_mart(engine, warehouse, "marketing_analytics_daily", date).await?;
    let mut sections = vec![(
        format!("Daily analytics {date}"),
        engine
            .collect(
                "SELECT * FROM marketing_analytics_daily ORDER BY segment",
                "reading the daily slice",
            )
            .await?,
    )];
    for (title, file) in REPORTS {
        let query = sql.render(file, &[])?;
        sections.push((title.to_string(), engine.collect(&query, title).await?));
    }
    Ok(AnalyticsReport { daily_rows, sections })
}
