//! The DAG runner behind `ebroker run`: generate (when no input is given) -> [produce ->
//! ingest, when Kafka is configured] -> clean -> segment -> offers -> analytics for one
//! processing date, with run state in
//! `_runs/D/state.json` (each stage's status, start and end, attempts, rows, error),
//! retries with exponential backoff, `--resume` that skips stages which already succeeded,
//! and a summary with per-stage timings.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateOptions};
use crate::sql::SqlLibrary;
use crate::storage::Warehouse;

/// The stages of the batch DAG, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Generate,
    Produce,
    Ingest,
    Clean,
    Segment,
    Offers,
    Analytics,
    PublishGreenplum,
    PublishClickhouse,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Generate,
        Stage::Produce,
        Stage::Ingest,
        Stage::Clean,
        Stage::Segment,
        Stage::Offers,
        Stage::Analytics,
        Stage::PublishGreenplum,
        Stage::PublishClickhouse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Generate => "generate",
            Stage::Produce => "produce",
            Stage::Ingest => "ingest",
            Stage::Clean => "clean",
            Stage::Segment => "segment",
            Stage::Offers => "offers",
            Stage::Analytics => "analytics",
            Stage::PublishGreenplum => "publish_greenplum",
            Stage::PublishClickhouse => "publish_clickhouse",
        }
    }
}

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
    pub stage: Stage,
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

/// `_runs/D/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub processing_date: String,
    pub input: Option<PathBuf>,
    pub stages: Vec<StageState>,
}

impl RunState {
    fn new(date: &str) -> Self {
        RunState {
            processing_date: date.to_string(),
            input: None,
            stages: Stage::ALL
                .iter()
                .map(|&stage| StageState {
                    stage,
                    status: Status::Pending,
                    started_at: None,
                    finished_at: None,
                    seconds: None,
                    attempts: 0,
                    rows: None,
                    peak_rss_mib: None,
                    error: None,
                })
                .collect(),
        }
    }

    pub fn stage(&self, stage: Stage) -> &StageState {
        self.stages
            .iter()
            .find(|s| s.stage == stage)
            .expect("every stage has a state")
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut StageState {
        self.stages
            .iter_mut()
            .find(|s| s.stage == stage)
            .expect("every stage has a state")
    }

    /// The summary table printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = format!(
            "run {}\n{:<18} {:<10} {:>8} {:>9} {:>12} {:>9}\n",
            self.processing_date, "stage", "status", "attempts", "seconds", "rows", "peak MiB"
        );
        for s in &self.stages {
            out.push_str(&format!(
                "{:<18} {:<10} {:>8} {:>9} {:>12} {:>9}\n",
                s.stage.name(),
                format!("{:?}", s.status).to_lowercase(),
                s.attempts,
                s.seconds.map_or("-".into(), |x| format!("{x:.2}")),
                s.rows.map_or("-".into(), |r| r.to_string()),
                s.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
            ));
            if let Some(e) = &s.error {
                out.push_str(&format!("           error: {e}\n"));
            }
        }
        out
    }
}

/// What `ebroker run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub date: NaiveDate,
    /// Source CSV directory; without it the generate stage makes one.
    pub input: Option<PathBuf>,
    pub clients: u64,
    pub seed: u64,
    pub dirty: f64,
    pub resume: bool,
}

/// The run-state file of `date`.
pub fn state_file(date: &str) -> String {
    Warehouse::run_file(date, "state.json")
}

/// Runs the DAG for `options.date`. The returned state is also in `_runs/D/state.json`;
/// a failed stage makes this return its error after the state is saved.
pub async fn run(
    config: &Config,
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    options: &RunOptions,
) -> Result<RunState> {
    let date = options.date.to_string();
    let previous: Option<RunState> = warehouse.read_json(&state_file(&date)).await?;
    let mut state = match previous {
        Some(prev) if options.resume => prev,
        _ => RunState::new(&date),
    };
    let input = match &options.input {
        Some(dir) => dir.clone(),
        None => generated_dir(warehouse, &date)?,
    };
    state.input = Some(input.clone());
    for stage in Stage::ALL {
        if options.resume && state.stage(stage).status == Status::Succeeded {
            tracing::info!(stage = stage.name(), "already succeeded; skipped (--resume)");
            continue;
        }
        let not_needed = match stage {
            Stage::Generate => options.input.is_some(),
            Stage::Produce | Stage::Ingest => !config.kafka.enabled(),
            Stage::PublishGreenplum => !config.greenplum.enabled(),
            Stage::PublishClickhouse => !config.clickhouse.enabled(),
            _ => false,
        };
        if not_needed {
            state.stage_mut(stage).status = Status::Skipped;
            continue;
        }
        let started = Instant::now();
        {
            let s = state.stage_mut(stage);
            s.status = Status::Running;
            s.started_at = Some(Utc::now().to_rfc3339());
            s.error = None;
        }
        warehouse.write_json(&state_file(&date), &state).await?;
        let sampler = crate::resources::RssSampler::start();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let result = run_stage(stage, config, engine, warehouse, sql, options, &input, &date).await;
            match result {
                Err(e) if attempt <= config.run.retries && is_retryable(&e) => {
                    let wait =
                        Duration::from_millis(config.run.retry_backoff_ms.saturating_mul(1 << (attempt - 1).min(16)));
                    tracing::warn!(stage = stage.name(), attempt, error = %e, ?wait, "stage failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        let peak = sampler.map(crate::resources::RssSampler::finish);
        crate::resources::release_free_memory();
        let s = state.stage_mut(stage);
        s.peak_rss_mib = peak.map(|b| b as f64 / (1024.0 * 1024.0));
        s.attempts = attempt;
        s.finished_at = Some(Utc::now().to_rfc3339());
        s.seconds = Some(started.elapsed().as_secs_f64());
        match outcome {
            Ok(rows) => {
                s.status = Status::Succeeded;
                s.rows = Some(rows);
                tracing::info!(
                    stage = stage.name(),
                    rows,
                    seconds = started.elapsed().as_secs_f64(),
                    "stage succeeded"
                );
            }
            Err(e) => {
                s.status = Status::Failed;
                s.error = Some(e.to_string());
                warehouse.write_json(&state_file(&date), &state).await?;
                return Err(Error::Stage {
                    stage: stage.name().into(),
                    message: format!("{e} (fix the cause, then rerun with --resume)"),
                });
            }
        }
        warehouse.write_json(&state_file(&date), &state).await?;
    }
    // the skipped stages after the last one that ran
    warehouse.write_json(&state_file(&date), &state).await?;
    Ok(state)
}

/// Bad input and configuration do not get better by retrying.
fn is_retryable(error: &Error) -> bool {
    !matches!(
        error,
        Error::Input { .. } | Error::Config(_) | Error::Usage(_) | Error::Reconcile { .. }
    )
}

/// Where the generate stage writes when a run has no input: `<warehouse>/_runs/D/source/`.
fn generated_dir(warehouse: &Warehouse, date: &str) -> Result<PathBuf> {
    warehouse
        .local_dir(&Warehouse::run_file(date, "source"))
        .ok_or_else(|| {
            Error::Usage(format!(
                "the warehouse {} is not local, so generated sources have nowhere to go; pass --input DIR",
                warehouse.root()
            ))
        })
}

#[allow(clippy::too_many_arguments)]
async fn run_stage(
    stage: Stage,
    config: &Config,
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    options: &RunOptions,
    input: &std::path::Path,
    date: &str,
) -> Result<u64> {
    match stage {
        Stage::Generate => {
            let generate_options = GenerateOptions {
                clients: options.clients,
                seed: options.seed,
                dirty: options.dirty,
                anchor: options.date,
                out: input.to_path_buf(),
            };
            let report = tokio::task::spawn_blocking(move || generate(&generate_options))
                .await
                .map_err(|e| Error::Stage {
                    stage: "generate".into(),
                    message: e.to_string(),
                })??;
            Ok(report.rows())
        }
        Stage::Produce => {
            let report = crate::kafka::produce::produce_csv_dir(&config.kafka, input).await?;
            report.check()?;
            Ok(report.delivered())
        }
        Stage::Ingest => Ok(crate::kafka::ingest::ingest(&config.kafka, warehouse, date, false)
            .await?
            .manifest
            .records()),
        Stage::Clean if config.kafka.enabled() => {
            Ok(crate::clean::clean_raw(engine, warehouse, sql, date).await?.rows_read())
        }
        Stage::Clean => Ok(crate::clean::clean_csv_dir(engine, warehouse, sql, input, date)
            .await?
            .rows_read()),
        Stage::Segment => crate::segment::segment(engine, warehouse, sql, date).await,
        Stage::Offers => Ok(crate::offers::offers(engine, warehouse, sql, date).await?.offers),
        Stage::Analytics => Ok(crate::analytics::analytics(engine, warehouse, sql, date)
            .await?
            .daily_rows),
        Stage::PublishGreenplum => Ok(crate::greenplum::publish(&config.greenplum, warehouse, sql, date)
            .await?
            .rows()),
        Stage::PublishClickhouse => Ok(crate::clickhouse::publish(&config.clickhouse, warehouse, sql, date)
            .await?
            .rows()),
    }
}
