//! The DAG runner behind `ebroker run`: the stages of [`crate::stages::registry`], in order,
//! for one processing date — generate (when no input is given) -> [produce -> ingest, when
//! Kafka is configured] -> clean -> segment -> offers -> analytics -> [publish greenplum,
//! publish clickhouse, when configured] — with run state in `_runs/D/state.json` (each
//! stage's status, start and end, attempts, rows, peak memory, error), retries with
//! exponential backoff, `--resume` that skips stages which already succeeded, and a summary.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resources::{release_free_memory, RssSampler};
use crate::retry::{retry, Backoff};
use crate::stages::{registry, Stage, StageContext};
use crate::warehouse::Warehouse;
use crate::ProcessingDate;

pub mod history;
pub mod metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// The state of one stage in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    /// The stage's name ([`Stage::name`]).
    pub stage: String,
    pub status: Status,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub attempts: u32,
    /// Rows the stage wrote (for clean: rows read).
    pub rows: Option<u64>,
    /// Peak resident memory of this process while the stage ran, in MiB (sampled every
    /// 20 ms on Linux; on a cluster the work's memory is the executors').
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    pub error: Option<String>,
}

impl StageState {
    fn pending(stage: &str) -> StageState {
        StageState {
            stage: stage.to_string(),
            status: Status::Pending,
            started_at: None,
            finished_at: None,
            seconds: None,
            attempts: 0,
            rows: None,
            peak_rss_mib: None,
            error: None,
        }
    }
}

/// `_runs/D/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub processing_date: ProcessingDate,
    pub input: Option<PathBuf>,
    pub stages: Vec<StageState>,
}

impl RunState {
    /// A fresh state with every stage pending; with `previous`, each stage keeps its earlier
    /// state (a stage added since that run starts pending).
    fn new(date: ProcessingDate, previous: Option<RunState>) -> Self {
        let mut previous = previous.map(|p| p.stages).unwrap_or_default();
        let stages = registry()
            .iter()
            .map(|stage| match previous.iter().position(|s| s.stage == stage.name()) {
                Some(i) => previous.swap_remove(i),
                None => StageState::pending(stage.name()),
            })
            .collect();
        RunState {
            processing_date: date,
            input: None,
            stages,
        }
    }

    /// The state of the stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageState> {
        self.stages.iter().find(|s| s.stage == name)
    }

    fn stage_mut(&mut self, name: &str) -> &mut StageState {
        let index = self
            .stages
            .iter()
            .position(|s| s.stage == name)
            .expect("RunState::new lists every stage");
        &mut self.stages[index]
    }

    /// The summary table printed at the end of a run.
    pub fn render(&self) -> String {
        let rows = self.stages.iter().map(|s| {
            vec![
                s.stage.clone(),
                format!("{:?}", s.status).to_lowercase(),
                s.attempts.to_string(),
                s.seconds.map_or("-".into(), |x| format!("{x:.2}")),
                s.rows.map_or("-".into(), |r| r.to_string()),
                s.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
            ]
        });
        let mut out = format!("run {}\n", self.processing_date);
        out.push_str(&crate::text::aligned(
            &["stage", "status", "attempts", "seconds", "rows", "peak MiB"],
            rows.collect(),
        ));
        for s in self.stages.iter().filter(|s| s.error.is_some()) {
            out.push_str(&format!(
                "{} error: {}\n",
                s.stage,
                s.error.as_deref().unwrap_or_default()
            ));
        }
        out
    }
}

/// What `ebroker run` was asked to do besides the date.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Source CSV directory; without it the generate stage makes one.
    pub input: Option<PathBuf>,
    /// Skip the stages that already succeeded for this date.
    pub resume: bool,
}

/// The run-state file of `date`.
pub fn state_file(date: ProcessingDate) -> String {
    Warehouse::run_file(date, "state.json")
}

/// Runs the DAG for `ctx.date`. The returned state is also in `_runs/D/state.json`; a failed
/// stage makes this return its error after the state is saved.
pub async fn run(ctx: &mut StageContext, options: &RunOptions) -> Result<RunState> {
    let result = run_stages(ctx, options).await;
    write_metrics(&ctx.warehouse).await;
    result
}

/// Rewrites `_runs/metrics.prom` from the whole history. A failure is logged, not raised: the
/// day's data does not depend on it.
async fn write_metrics(warehouse: &Warehouse) {
    let written = async {
        let days = history::load(warehouse, None).await?;
        let text = metrics::exposition(&days);
        warehouse
            .store()
            .put(&warehouse.path(metrics::METRICS_FILE), text.into_bytes().into())
            .await
            .map_err(Error::storage(warehouse.url(metrics::METRICS_FILE).to_string()))?;
        Ok::<_, Error>(())
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "could not write {}", metrics::METRICS_FILE);
    }
}

async fn run_stages(ctx: &mut StageContext, options: &RunOptions) -> Result<RunState> {
    let date = ctx.date;
    let previous: Option<RunState> = ctx.warehouse.read_json(&state_file(date)).await?;
    let mut state = RunState::new(date, previous.filter(|_| options.resume));
    ctx.input = Some(match &options.input {
        Some(dir) => dir.clone(),
        None => generated_dir(&ctx.warehouse, date)?,
    });
    ctx.input_generated = options.input.is_none();
    ctx.via_kafka = ctx.config.kafka.enabled();
    state.input = ctx.input.clone();
    for stage in registry() {
        let name = stage.name();
        if options.resume && state.stage(name).is_some_and(|s| s.status == Status::Succeeded) {
            tracing::info!(stage = name, "already succeeded; skipped (--resume)");
            continue;
        }
        if !stage.enabled(ctx) {
            state.stage_mut(name).status = Status::Skipped;
            continue;
        }
        run_one(ctx, stage.as_ref(), &mut state).await?;
    }
    // the skipped stages after the last one that ran
    ctx.warehouse.write_json(&state_file(date), &state).await?;
    Ok(state)
}

/// Runs one stage with retries, recording its state before and after.
async fn run_one(ctx: &StageContext, stage: &dyn Stage, state: &mut RunState) -> Result<()> {
    let name = stage.name();
    let started = Instant::now();
    {
        let s = state.stage_mut(name);
        s.status = Status::Running;
        s.started_at = Some(Utc::now().to_rfc3339());
        s.error = None;
    }
    ctx.warehouse.write_json(&state_file(ctx.date), state).await?;
    let sampler = RssSampler::start();
    let policy = Backoff {
        max_attempts: ctx.config.run.retries + 1,
        first_wait_ms: ctx.config.run.retry_backoff_ms,
    };
    let (outcome, attempts) = retry(policy, name, is_retryable, || stage.run(ctx)).await;
    let peak = sampler.map(RssSampler::finish);
    release_free_memory();
    let s = state.stage_mut(name);
    s.peak_rss_mib = peak.map(|b| b as f64 / (1024.0 * 1024.0));
    s.attempts = attempts;
    s.finished_at = Some(Utc::now().to_rfc3339());
    s.seconds = Some(started.elapsed().as_secs_f64());
    let result = match outcome {
        Ok(report) => {
            s.status = Status::Succeeded;
            s.rows = Some(report.rows);
            tracing::info!(
                stage = name,
                rows = report.rows,
                seconds = started.elapsed().as_secs_f64(),
                "stage succeeded"
            );
            Ok(())
        }
        Err(e) => {
            s.status = Status::Failed;
            s.error = Some(e.to_string());
            Err(Error::Stage {
                stage: name.into(),
                message: format!("{e} (fix the cause, then rerun with --resume)"),
            })
        }
    };
    ctx.warehouse.write_json(&state_file(ctx.date), state).await?;
    result
}

/// Bad input and configuration do not get better by retrying.
fn is_retryable(error: &Error) -> bool {
    !matches!(
        error,
        Error::Input { .. } | Error::Config(_) | Error::Usage(_) | Error::Reconcile { .. }
    )
}

/// Where the generate stage writes when a run has no input: `<warehouse>/_runs/D/source/`.
fn generated_dir(warehouse: &Warehouse, date: ProcessingDate) -> Result<PathBuf> {
    warehouse
        .local_dir(&Warehouse::run_file(date, "source"))
        .ok_or_else(|| {
            Error::Usage(format!(
                "the warehouse {} is not local, so generated sources have nowhere to go; pass --input DIR",
                warehouse.root()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_missing_a_stage_resumes_it_as_pending() {
        let date = ProcessingDate::parse("2024-06-01").unwrap();
        let mut old = RunState::new(date, None);
        old.stages.retain(|s| s.stage != "offers");
        old.stages.iter_mut().for_each(|s| s.status = Status::Succeeded);
        let resumed = RunState::new(date, Some(old));
        assert_eq!(resumed.stages.len(), registry().len());
        assert_eq!(resumed.stage("offers").unwrap().status, Status::Pending);
        assert_eq!(resumed.stage("segment").unwrap().status, Status::Succeeded);
    }
}
