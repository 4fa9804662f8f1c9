//! [`PlanCodec`]: Ballista's physical extension codec plus [`WorkExec`]. The client, the
//! scheduler and every executor install it; Ballista's own nodes (shuffle readers and writers)
//! still go through Ballista's codec, to which everything not ours is handed. Our bytes start
//! with a zero byte, which no protobuf message does, so the two can never be confused.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::work::{Work, WorkExec};

/// The prefix of an encoded [`WorkExec`]; the rest is its [`Work`] as JSON.
const MAGIC: &[u8] = b"\0ebroker-work/1\0";

/// Ballista's codec, knowing [`WorkExec`] too.
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
        let Some(json) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let work: Work = serde_json::from_slice(json)
            .map_err(|e| DataFusionError::Internal(format!("an ebroker plan node does not decode: {e}")))?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "WorkExec has one input, got {}",
                inputs.len()
            )));
        };
        Ok(Arc::new(WorkExec::new(work, Arc::clone(input))))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(exec) = node.downcast_ref::<WorkExec>() else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(buf, exec.work())
            .map_err(|e| DataFusionError::Internal(format!("an ebroker plan node does not encode: {e}")))
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
