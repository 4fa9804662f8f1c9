//! The run history in Prometheus' text exposition format (version 0.0.4), so the daily runs can
//! be graphed and alerted on: written to `_runs/metrics.prom` after every `ebroker run` (for
//! node-exporter's textfile collector), printed by `ebroker runs metrics` and served at
//! `/metrics` by `ebroker serve`. Labels never carry the date (one series per stage, not one
//! per day); the day each value belongs to is a sample of its own, as Unix seconds.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::history::DayRecord;
use super::Status;

/// Where `ebroker run` writes the exposition, relative to the warehouse root.
pub const METRICS_FILE: &str = "_runs/metrics.prom";

/// The latest state of each stage across `days` (oldest first), and the day it belongs to.
fn latest_by_stage(days: &[DayRecord]) -> BTreeMap<&str, (&DayRecord, &super::StageState)> {
    let mut latest = BTreeMap::new();
    for day in days {
        for stage in &day.state.stages {
            if matches!(stage.status, Status::Succeeded | Status::Failed) {
                latest.insert(stage.stage.as_str(), (day, stage));
            }
        }
    }
    latest
}

/// The exposition of `days` (the history, oldest first).
pub fn exposition(days: &[DayRecord]) -> String {
    let mut out = String::new();
    let latest = latest_by_stage(days);
    let per_stage = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&super::StageState) -> Option<f64>| {
        family(out, name, help);
        for (stage, (_, state)) in &latest {
            if let Some(v) = value(state) {
                sample(out, name, &[("stage", stage)], v);
            }
        }
    };
    per_stage(
        &mut out,
        "ebroker_stage_duration_seconds",
        "Duration of the stage in the latest run that finished it.",
        &|s| s.seconds,
    );
    per_stage(
        &mut out,
        "ebroker_stage_rows",
        "Rows the stage wrote in the latest run that finished it (clean: rows read).",
        &|s| s.rows.map(|r| r as f64),
    );
    per_stage(
        &mut out,
        "ebroker_stage_peak_rss_bytes",
        "Peak resident memory of the client process while the stage ran, in its latest run.",
        &|s| s.peak_rss_mib.map(|m| m * 1024.0 * 1024.0),
    );
    per_stage(
        &mut out,
        "ebroker_stage_attempts",
        "Attempts the stage needed in its latest run.",
        &|s| Some(f64::from(s.attempts)),
    );
    per_stage(
        &mut out,
        "ebroker_stage_succeeded",
        "1 when the latest run that finished the stage succeeded, 0 when it failed.",
        &|s| Some(if s.status == Status::Succeeded { 1.0 } else { 0.0 }),
    );
    family(
        &mut out,
        "ebroker_stage_processing_date_seconds",
        "The processing date (00:00 UTC, Unix seconds) of the latest run that finished the stage.",
    );
    for (stage, (day, _)) in &latest {
        sample(
            &mut out,
            "ebroker_stage_processing_date_seconds",
            &[("stage", stage)],
            date_seconds(day),
        );
    }
    last_success(&mut out, days);
    quarantine(&mut out, days);
    publish_rows(&mut out, &latest);
    out
}

/// The last processing date on which each stage succeeded.
fn last_success(out: &mut String, days: &[DayRecord]) {
    let name = "ebroker_stage_last_success_processing_date_seconds";
    family(
        out,
        name,
        "The latest processing date (00:00 UTC, Unix seconds) on which the stage succeeded.",
    );
    let mut last = BTreeMap::new();
    for day in days {
        for stage in day.state.stages.iter().filter(|s| s.status == Status::Succeeded) {
            last.insert(stage.stage.as_str(), date_seconds(day));
        }
    }
    for (stage, seconds) in last {
        sample(out, name, &[("stage", stage)], seconds);
    }
}

/// Records quarantined by the latest clean, by table and reason.
fn quarantine(out: &mut String, days: &[DayRecord]) {
    let name = "ebroker_quarantined_records";
    family(out, name, "Records the latest clean quarantined, by table and reason.");
    let Some(day) = days.iter().rev().find(|d| d.quality.is_some()) else {
        return;
    };
    for count in day.quarantine() {
        let labels = [("table", count.table.as_str()), ("reason", count.reason.as_str())];
        sample(out, name, &labels, count.records as f64);
    }
}

/// Rows the latest publish of each target loaded.
fn publish_rows(out: &mut String, latest: &BTreeMap<&str, (&DayRecord, &super::StageState)>) {
    let name = "ebroker_publish_rows";
    family(
        out,
        name,
        "Rows the latest publish loaded into the target (greenplum, clickhouse).",
    );
    for (stage, (_, state)) in latest {
        if let (Some(target), Some(rows)) = (stage.strip_prefix("publish_"), state.rows) {
            sample(out, name, &[("target", target)], rows as f64);
        }
    }
}

fn date_seconds(day: &DayRecord) -> f64 {
    let midnight = day.state.processing_date.date().and_time(chrono::NaiveTime::MIN);
    midnight.and_utc().timestamp() as f64
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// A label value as the exposition format quotes it: backslash, double quote and line feed
/// escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        sample(&mut out, "m", &[("reason", "bad \"x\"")], 2.0);
        assert_eq!(out, "m{reason=\"bad \\\"x\\\"\"} 2\n");
    }
}
