//! Running a [`WorkExec`] plan: submitted to the Ballista scheduler as a physical plan when
//! the engine is a cluster client (one task per task row, so a lost executor costs only its
//! own tasks), or executed partition by partition on the local engine — the same plan either
//! way (issue 17: one code path). Also where a query's result is written by the executors that
//! compute it ([`write_partitions`], the operator in `write.rs`).

use std::sync::Arc;

use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{common, ExecutionPlan};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::DataFrame;
use datafusion_proto::protobuf::PhysicalPlanNode;
use ebroker_core::engine::Engine;
use ebroker_core::error::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::codec;
use crate::task_files::task_store;
use crate::work::{from_json, task_list, Work, WorkExec};
use crate::write::{remove_strays, written_files, PartitionWriteExec, WriteTarget};

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

/// Runs the planned `df` and writes its result under `dir`: on a cluster each partition as one
/// file named `{prefix}-….parquet` by the executor that computes it, in this process with the
/// session's sink. Returns the rows written.
pub async fn write_partitions(engine: &Engine, df: DataFrame, dir: Url, prefix: String, what: &str) -> Result<u64> {
    let Some(url) = engine.scheduler_url() else {
        return engine.write_parquet_dir(df, &dir, what).await;
    };
    // Planned here, not with `df.create_physical_plan()`: the cluster session's query planner
    // is Ballista's, which would wrap the whole query in one `DistributedQueryExec`.
    let (state, logical) = df.into_parts();
    let planning = async {
        let optimized = state.optimize(&logical)?;
        DefaultPhysicalPlanner::default()
            .create_physical_plan(&optimized, &state)
            .await
    };
    let input = planning.await.map_err(Error::engine(format!("planning {what}")))?;
    let target = WriteTarget {
        dir: dir.to_string(),
        prefix: prefix.clone(),
    };
    let plan: Arc<dyn ExecutionPlan> = Arc::new(PartitionWriteExec::new(target, input));
    let batches = engine.bounded(what, submit(url, engine, plan, what)).await?;
    let written = written_files(&batches)?;
    let (store, path) = task_store(&engine.context().task_ctx(), dir.as_str())?;
    remove_strays(store.as_ref(), &path, &prefix, &written).await?;
    Ok(written.iter().map(|(_, rows)| rows).sum())
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
