//! Running a [`WorkExec`] plan: submitted to the Ballista scheduler as a physical plan when
//! the engine is a cluster client (one task per task row, so a lost executor costs only its
//! own tasks), or executed partition by partition on the local engine — the same plan either
//! way (issue 17: one code path).

use std::sync::Arc;

use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{common, ExecutionPlan};
use datafusion_proto::protobuf::PhysicalPlanNode;
use ebroker_core::engine::Engine;
use ebroker_core::error::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::work::{from_json, task_list, Work, WorkExec};

/// Where a plan runs: on the engine (the cluster, or in-process), or on a bare local task
/// context (callers without an engine, such as `ingest` called as a library).
pub enum Runner<'a> {
    Engine(&'a Engine),
    Local(Arc<TaskContext>),
}

/// Does `work` for each of `tasks` and returns their results, in no particular order.
/// `bar` counts finished tasks when they run in this process.
pub async fn run_tasks<T: Serialize, R: DeserializeOwned>(
    runner: &Runner<'_>,
    work: Work,
    tasks: &[T],
    what: &str,
    bar: &ProgressBar,
) -> Result<Vec<R>> {
    let at_once = work.tasks_at_once();
    let plan: Arc<dyn ExecutionPlan> = Arc::new(WorkExec::new(work, task_list(tasks)?));
    let batches = match runner {
        Runner::Engine(engine) => match engine.scheduler_url() {
            Some(url) => engine.bounded(what, submit(url, engine, plan, what)).await?,
            None => run_local(plan, engine.context().task_ctx(), (at_once, bar), what).await?,
        },
        Runner::Local(ctx) => run_local(plan, Arc::clone(ctx), (at_once, bar), what).await?,
    };
    let found = results(&batches)?;
    if found.len() != tasks.len() {
        return Err(Error::Stage {
            stage: what.into(),
            message: format!(
                "{} tasks gave {} results; nothing was committed",
                tasks.len(),
                found.len()
            ),
        });
    }
    Ok(found)
}

/// Runs `plan` on the engine: submitted to the cluster, or in this process with every
/// partition at once (a query's partitions feed each other through its repartitions).
pub async fn run_plan(engine: &Engine, plan: Arc<dyn ExecutionPlan>, what: &str) -> Result<Vec<RecordBatch>> {
    let work = async {
        match engine.scheduler_url() {
            Some(url) => submit(url, engine, plan, what).await,
            None => {
                let partitions = plan.properties().output_partitioning().partition_count();
                let ctx = engine.context().task_ctx();
                run_local(plan, ctx, (partitions.max(1), &ProgressBar::hidden()), what).await
            }
        }
    };
    engine.bounded(what, work).await
}

/// The results of a work plan's output batches.
pub fn results<R: DeserializeOwned>(batches: &[RecordBatch]) -> Result<Vec<R>> {
    let mut found = Vec::new();
    for batch in batches {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Stage {
                stage: "plan".into(),
                message: "a work plan's result column is not text".into(),
            })?;
        for text in column.iter().flatten() {
            found.push(from_json(text)?);
        }
    }
    Ok(found)
}

/// Every partition of `plan` in this process, `at_once` at a time, counted on `bar`.
async fn run_local(
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    (at_once, bar): (usize, &ProgressBar),
    what: &str,
) -> Result<Vec<RecordBatch>> {
    let partitions = plan.properties().output_partitioning().partition_count();
    let runs = futures::stream::iter(0..partitions).map(|partition| {
        let (plan, ctx, bar) = (Arc::clone(&plan), Arc::clone(&ctx), bar.clone());
        async move {
            let batches = common::collect(plan.execute(partition, ctx)?).await?;
            bar.inc(1);
            Ok::<_, datafusion::error::DataFusionError>(batches)
        }
    });
    let done: Vec<Vec<RecordBatch>> = runs
        .buffer_unordered(at_once)
        .try_collect()
        .await
        .map_err(Error::engine(format!("running {what}")))?;
    Ok(done.into_iter().flatten().collect())
}

/// Submits `plan` to the scheduler at `url` with ebroker's codec; one task per partition.
async fn submit(url: &str, engine: &Engine, plan: Arc<dyn ExecutionPlan>, what: &str) -> Result<Vec<RecordBatch>> {
    let ctx = engine.context();
    let mut config = ctx
        .copied_config()
        .with_ballista_physical_extension_codec(codec::codec());
    config
        .options_mut()
        .set("ballista.scheduler.max_partitions_per_task", "1")
        .map_err(Error::engine("configuring the plan's tasks"))?;
    let ballista = config.ballista_config();
    let codec = config.ballista_physical_extension_codec();
    let stream = execute_physical_plan::<PhysicalPlanNode>(
        url.to_string(),
        &ballista,
        plan,
        codec.as_ref(),
        ctx.session_id(),
        config,
    )
    .await
    .map_err(Error::engine(format!("submitting {what} to the cluster at {url}")))?;
    common::collect(stream)
        .await
        .map_err(Error::engine(format!("running {what} on the cluster")))
}
