//! The one custom operator: [`WorkExec`] over a task list. The task list is a
//! `MemorySourceConfig` with one one-row partition per task, because that is a leaf Ballista's
//! scheduler knows how to cut down to the partitions of each task it sends; a custom leaf would
//! be sent whole to every task and run N times. `WorkExec` is unary: for each task row of its
//! input partition it does the work and emits the result as one JSON row.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use ebroker_core::config::KafkaConfig;
use ebroker_core::error::{Error, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{concat, kafka, parse, splits};

/// What a [`WorkExec`] does with each task row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Work {
    /// Dump Kafka offset ranges ([`kafka::RangeTask`]) into raw Parquet files.
    KafkaDump { kafka: KafkaConfig },
    /// Parse raw files ([`parse::RawParseTask`]) into staged typed and quarantine Parquet.
    ParseRaw { max_record_bytes: usize },
    /// Count the line breaks of byte ranges of source CSV files ([`splits::CountTask`]).
    CountLines,
    /// Parse splits of source CSV files ([`parse::CsvParseTask`]) into staged typed and
    /// quarantine Parquet.
    ParseCsv { max_record_bytes: usize },
    /// Copy the scratch files of a client bucket into its one file ([`concat::ConcatTask`]).
    Concat,
    /// Report where the task ran ([`Probe`]): proves the mechanism on a cluster.
    Probe,
}

impl Work {
    /// How many tasks of this work run at once in one process. A Kafka dump mostly waits on
    /// the broker (its consumer fetches while the writer compresses), so four per core keep
    /// the cores busy — as many partitions as the old one-consumer-per-topic ingest fetched at
    /// once; parsing is CPU-bound: one per core.
    pub fn tasks_at_once(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        match self {
            Work::KafkaDump { .. } => cores * 4,
            Work::ParseRaw { .. } | Work::ParseCsv { .. } | Work::CountLines | Work::Concat | Work::Probe => cores,
        }
    }
}

/// The answer of [`Work::Probe`]: the process and host a task ran in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub task: u64,
    pub pid: u32,
}

/// The one column of a task list and of a `WorkExec`'s output: JSON text.
fn json_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
}

/// One partition per task, each one row: the task as JSON.
pub fn task_list<T: Serialize>(tasks: &[T]) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = json_schema("task");
    let partitions = tasks
        .iter()
        .map(|task| {
            let text = serde_json::to_string(task).map_err(|e| Error::Stage {
                stage: "plan".into(),
                message: format!("a task does not serialize: {e}"),
            })?;
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(vec![text]))])
                .map(|batch| vec![batch])
                .map_err(|e| Error::engine("building a task list")(e.into()))
        })
        .collect::<Result<Vec<_>>>()?;
    let exec =
        MemorySourceConfig::try_new_exec(&partitions, schema, None).map_err(Error::engine("building a task list"))?;
    Ok(exec)
}

/// Does [`Work`] for every task row of its input; one result row (JSON) per task.
#[derive(Debug)]
pub struct WorkExec {
    work: Work,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl WorkExec {
    pub fn new(work: Work, input: Arc<dyn ExecutionPlan>) -> Self {
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(json_schema("result")),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        WorkExec {
            work,
            input,
            properties,
        }
    }

    pub fn work(&self) -> &Work {
        &self.work
    }
}

impl DisplayAs for WorkExec {
    // Never the Kafka properties: plans are shown in logs and the scheduler's REST API.
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.work {
            Work::KafkaDump { kafka } => write!(f, "WorkExec: dump Kafka ranges from {}", kafka.brokers),
            Work::ParseRaw { .. } => write!(f, "WorkExec: parse raw records"),
            Work::CountLines => write!(f, "WorkExec: count line breaks"),
            Work::ParseCsv { .. } => write!(f, "WorkExec: parse CSV splits"),
            Work::Concat => write!(f, "WorkExec: concatenate files"),
            Work::Probe => write!(f, "WorkExec: probe"),
        }
    }
}

impl ExecutionPlan for WorkExec {
    fn name(&self) -> &str {
        "WorkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    // The scheduler cuts the task list down to each task's partitions: the partition count
    // always follows the new input.
    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|c| DataFusionError::Internal(format!("WorkExec has one input, got {}", c.len())))?;
        Ok(Arc::new(WorkExec::new(self.work.clone(), input)))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, ctx: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition >= self.properties.output_partitioning().partition_count() {
            return internal_err!("WorkExec has no partition {partition}");
        }
        let input = self.input.execute(partition, Arc::clone(&ctx))?;
        let work = self.work.clone();
        let results = input.then(move |batch| {
            let (work, ctx) = (work.clone(), Arc::clone(&ctx));
            async move { do_batch(&work, &batch?, &ctx).await }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(json_schema("result"), results)))
    }
}

/// Runs every task row of `batch`; their results as one batch.
async fn do_batch(work: &Work, batch: &RecordBatch, ctx: &TaskContext) -> DfResult<RecordBatch> {
    let Some(tasks) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
        return internal_err!("a task list's column is not text");
    };
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks.iter().flatten() {
        let result = do_task(work, task, ctx)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        results.push(result);
    }
    Ok(RecordBatch::try_new(
        json_schema("result"),
        vec![Arc::new(StringArray::from(results))],
    )?)
}

async fn do_task(work: &Work, task: &str, ctx: &TaskContext) -> Result<String> {
    match work {
        Work::KafkaDump { kafka } => to_json(&kafka::dump_range(kafka, &from_json(task)?, ctx).await?),
        Work::ParseRaw { max_record_bytes } => {
            to_json(&parse::parse_raw(*max_record_bytes, &from_json(task)?, ctx).await?)
        }
        Work::ParseCsv { max_record_bytes } => {
            to_json(&parse::parse_csv(*max_record_bytes, &from_json(task)?, ctx).await?)
        }
        Work::CountLines => to_json(&splits::count_newlines(&from_json(task)?, ctx).await?),
        Work::Concat => to_json(&concat::concat(&from_json(task)?, ctx).await?),
        Work::Probe => to_json(&Probe {
            task: from_json(task)?,
            pid: std::process::id(),
        }),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Stage {
        stage: "plan".into(),
        message: format!("a task result does not serialize: {e}"),
    })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Stage {
        stage: "plan".into(),
        message: format!("a task does not parse ({e}): {text}"),
    })
}
