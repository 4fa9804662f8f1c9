//! Run history for operators (`ebroker runs list`, `ebroker runs show`): every date in
//! `_runs/` with its run state (`state.json`: each stage's status, duration, rows, peak memory)
//! and, when clean ran, its data-quality report (`clean.json`: quarantined by table and
//! reason), read back from the warehouse so yesterday's runs can be compared with today's.
//! The same records feed the Prometheus exposition ([`super::metrics`]).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{state_file, RunState, Status};
use crate::error::Result;
use crate::stages::clean::CleanReport;
use crate::warehouse::Warehouse;
use crate::ProcessingDate;

/// One date of the history: its run state and, when clean ran, its data-quality report.
#[derive(Debug, Clone)]
pub struct DayRecord {
    pub state: RunState,
    pub quality: Option<CleanReport>,
}

/// Every date with a run state in `_runs/`, oldest first; only those on or after `since`.
pub async fn load(warehouse: &Warehouse, since: Option<ProcessingDate>) -> Result<Vec<DayRecord>> {
    let mut dates = BTreeSet::new();
    for file in warehouse.list_files("_runs/").await? {
        let parts: Vec<String> = file.parts().map(|p| p.as_ref().to_string()).collect();
        if let [.., dir, name] = parts.as_slice() {
            if name == "state.json" {
                if let Ok(date) = ProcessingDate::parse(dir) {
                    dates.insert(date);
                }
            }
        }
    }
    let mut days = Vec::new();
    for date in dates.into_iter().filter(|d| since.is_none_or(|s| *d >= s)) {
        days.push(day(warehouse, date).await?);
    }
    Ok(days)
}

/// The record of one date, if it has a run state.
pub async fn day(warehouse: &Warehouse, date: ProcessingDate) -> Result<DayRecord> {
    let state = warehouse
        .read_json::<RunState>(&state_file(date))
        .await?
        .ok_or_else(|| {
            crate::error::Error::Usage(format!(
                "no run recorded for {date} in {}_runs/; see the dates with `ebroker runs list`",
                warehouse.root()
            ))
        })?;
    let quality = warehouse.read_json(&Warehouse::run_file(date, "clean.json")).await?;
    Ok(DayRecord { state, quality })
}

/// One line of `ebroker runs list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub processing_date: String,
    /// `succeeded` when every stage succeeded or was skipped; else the first of `failed`,
    /// `running`, `pending` found among the stages.
    pub status: String,
    pub stages_succeeded: usize,
    pub stages: usize,
    pub seconds: f64,
    /// Rows clean read (the day's input), when clean ran.
    pub rows_read: Option<u64>,
    pub quarantined: Option<u64>,
    pub peak_rss_mib: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl DayRecord {
    pub fn summary(&self) -> RunSummary {
        let stages = &self.state.stages;
        let status = [Status::Failed, Status::Running, Status::Pending]
            .into_iter()
            .find(|s| stages.iter().any(|stage| stage.status == *s))
            .map_or("succeeded", status_name);
        let peak = stages
            .iter()
            .filter_map(|s| s.peak_rss_mib)
            .fold(None, |max: Option<f64>, m| Some(max.map_or(m, |x| x.max(m))));
        RunSummary {
            processing_date: self.state.processing_date.to_string(),
            status: status.to_string(),
            stages_succeeded: stages.iter().filter(|s| s.status == Status::Succeeded).count(),
            stages: stages.iter().filter(|s| s.status != Status::Skipped).count(),
            seconds: stages.iter().filter_map(|s| s.seconds).sum(),
            rows_read: self.state.stage("clean").and_then(|s| s.rows),
            quarantined: self
                .quality
                .as_ref()
                .map(|q| q.tables.iter().map(|t| t.quarantined).sum()),
            peak_rss_mib: peak,
            started_at: stages.iter().filter_map(|s| s.started_at.clone()).min(),
            finished_at: stages.iter().filter_map(|s| s.finished_at.clone()).max(),
        }
    }

    /// The quarantined records of the day by table and reason, in report order.
    pub fn quarantine(&self) -> Vec<QuarantineCount> {
        let Some(quality) = &self.quality else {
            return Vec::new();
        };
        quality
            .tables
            .iter()
            .flat_map(|t| {
                t.quarantined_by_reason.iter().map(|(reason, records)| QuarantineCount {
                    table: t.table.clone(),
                    reason: reason.clone(),
                    records: *records,
                })
            })
            .collect()
    }
}

/// Records of one table quarantined for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineCount {
    pub table: String,
    pub reason: String,
    pub records: u64,
}

/// The name of a status as state.json writes it.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}
