//! [`PlanCodec`]: Ballista's physical extension codec plus [`WorkExec`] and
//! [`PartitionWriteExec`]. The client, the scheduler and every executor install it; Ballista's
//! own nodes (shuffle readers and writers) still go through Ballista's codec, to which
//! everything not ours is handed. Our bytes start with a zero byte, which no protobuf message
//! does, so the two can never be confused.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::work::{Work, WorkExec};
use crate::write::{PartitionWriteExec, WriteTarget};

/// The prefix of an encoded [`WorkExec`]; the rest is its [`Work`] as JSON.
const MAGIC: &[u8] = b"\0ebroker-work/1\0";
/// The prefix of an encoded [`PartitionWriteExec`]; the rest is its [`WriteTarget`] as JSON.
const WRITE_MAGIC: &[u8] = b"\0ebroker-write/1\0";

/// Ballista's codec, knowing [`WorkExec`] and [`PartitionWriteExec`] too.
#[derive(Debug, Default)]
pub struct PlanCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

/// The codec, ready to install (`SchedulerConfig`/`ExecutorProcessConfig::override_physical_codec`).
pub fn codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(PlanCodec::default())
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(json) = buf.strip_prefix(MAGIC) {
            let work: Work = decode(json)?;
            Ok(Arc::new(WorkExec::new(work, one_input(inputs, "WorkExec")?)))
        } else if let Some(json) = buf.strip_prefix(WRITE_MAGIC) {
            let target: WriteTarget = decode(json)?;
            Ok(Arc::new(PartitionWriteExec::new(
                target,
                one_input(inputs, "PartitionWriteExec")?,
            )))
        } else {
            self.ballista.try_decode(buf, inputs, ctx, proto_converter)
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(exec) = node.downcast_ref::<WorkExec>() {
            encode(buf, MAGIC, exec.work())
        } else if let Some(exec) = node.downcast_ref::<PartitionWriteExec>() {
            encode(buf, WRITE_MAGIC, exec.target())
        } else {
            self.ballista.try_encode(node, buf, proto_converter)
        }
    }
}

/// An ebroker node's description from the JSON after its prefix.
fn decode<T: serde::de::DeserializeOwned>(json: &[u8]) -> DfResult<T> {
    serde_json::from_slice(json)
        .map_err(|e| DataFusionError::Internal(format!("an ebroker plan node does not decode: {e}")))
}

/// Appends `magic` and `node` as JSON to `buf`.
fn encode<T: serde::Serialize>(buf: &mut Vec<u8>, magic: &[u8], node: &T) -> DfResult<()> {
    buf.extend_from_slice(magic);
    serde_json::to_writer(buf, node)
        .map_err(|e| DataFusionError::Internal(format!("an ebroker plan node does not encode: {e}")))
}

/// The single input of a unary ebroker node.
fn one_input(inputs: &[Arc<dyn ExecutionPlan>], name: &str) -> DfResult<Arc<dyn ExecutionPlan>> {
    match inputs {
        [input] => Ok(Arc::clone(input)),
        _ => Err(DataFusionError::Internal(format!(
            "{name} has one input, got {}",
            inputs.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use super::*;
    use crate::work::{task_list, Probe};

    #[tokio::test]
    async fn a_work_plan_survives_the_round_trip_and_runs_each_task_once() {
        let plan: Arc<dyn ExecutionPlan> = Arc::new(WorkExec::new(Work::Probe, task_list(&[7u64, 8, 9]).unwrap()));
        let codec = PlanCodec::default();
        let proto = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec).unwrap();
        let ctx = SessionContext::new();
        let decoded = proto.try_into_physical_plan(&ctx.task_ctx(), &codec).unwrap();
        assert_eq!(decoded.properties().output_partitioning().partition_count(), 3);
        let batches = collect(decoded, ctx.task_ctx()).await.unwrap();
        let mut tasks: Vec<u64> = crate::run::results::<Probe>(&batches)
            .unwrap()
            .into_iter()
            .map(|p| p.task)
            .collect();
        tasks.sort();
        assert_eq!(tasks, vec![7, 8, 9]);
    }
}
