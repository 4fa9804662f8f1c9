//! `ebroker runs`: the run history of the warehouse ([`crate::runner::history`]) as a table,
//! CSV or JSON — every date, or one date stage by stage with its quarantine — and the same
//! history in Prometheus' text format.

use serde::Serialize;

use super::{ReportFormat, RunsCommand};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::runner::history::{self, status_name, DayRecord};
use crate::runner::metrics;
use crate::warehouse::{StoreRegistry, Warehouse};

pub async fn runs(config: &Config, command: RunsCommand) -> Result<()> {
    let warehouse = Warehouse::open(&config.warehouse, &StoreRegistry::new())?;
    let text = match command {
        RunsCommand::List { since, format } => {
            let days = history::load(&warehouse, since).await?;
            list(&days, format)?
        }
        RunsCommand::Show { date, format } => show(&history::day(&warehouse, date).await?, format)?,
        RunsCommand::Metrics => metrics::exposition(&history::load(&warehouse, None).await?),
    };
    print!("{text}");
    Ok(())
}

fn list(days: &[DayRecord], format: ReportFormat) -> Result<String> {
    let summaries: Vec<_> = days.iter().map(DayRecord::summary).collect();
    Ok(match format {
        ReportFormat::Json => json(&summaries)?,
        ReportFormat::Csv => csv(&summaries)?,
        ReportFormat::Table => {
            let rows = summaries
                .iter()
                .map(|s| {
                    vec![
                        s.processing_date.clone(),
                        s.status.clone(),
                        format!("{}/{}", s.stages_succeeded, s.stages),
                        format!("{:.2}", s.seconds),
                        optional(s.rows_read),
                        optional(s.quarantined),
                        s.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
                        s.finished_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let header = [
                "date",
                "status",
                "stages ok",
                "seconds",
                "rows read",
                "quarantined",
                "peak MiB",
                "finished at",
            ];
            crate::text::aligned(&header, rows)
        }
    })
}

/// One date: the stages, then the quarantine by table and reason.
fn show(day: &DayRecord, format: ReportFormat) -> Result<String> {
    let quarantine = day.quarantine();
    Ok(match format {
        ReportFormat::Json => json(&serde_json::json!({ "run": day.state, "quarantine": quarantine }))?,
        ReportFormat::Csv => {
            let stages: Vec<StageRow> = day.state.stages.iter().map(StageRow::from).collect();
            format!("# stages\n{}\n# quarantine\n{}", csv(&stages)?, csv(&quarantine)?)
        }
        ReportFormat::Table => {
            let rows = quarantine
                .iter()
                .map(|q| vec![q.table.clone(), q.reason.clone(), q.records.to_string()])
                .collect();
            let table = crate::text::aligned(&["table", "reason", "records"], rows);
            format!("{}\nquarantined\n{table}", day.state.render())
        }
    })
}

/// A stage of `runs show` as a flat CSV row.
#[derive(Serialize)]
struct StageRow {
    stage: String,
    status: &'static str,
    attempts: u32,
    seconds: Option<f64>,
    rows: Option<u64>,
    peak_rss_mib: Option<f64>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error: Option<String>,
}

impl From<&crate::runner::StageState> for StageRow {
    fn from(s: &crate::runner::StageState) -> Self {
        StageRow {
            stage: s.stage.clone(),
            status: status_name(s.status),
            attempts: s.attempts,
            seconds: s.seconds,
            rows: s.rows,
            peak_rss_mib: s.peak_rss_mib,
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            error: s.error.clone(),
        }
    }
}

fn optional(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| Error::Usage(format!("the history does not serialize: {e}")))
}

fn csv<T: Serialize>(rows: &[T]) -> Result<String> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| Error::Usage(format!("the history does not serialize as CSV: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Usage(format!("the history does not serialize as CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
