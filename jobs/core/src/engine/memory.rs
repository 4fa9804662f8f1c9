//! The memory pool every ebroker query runs under, in-process and on executors: DataFusion's
//! `FairSpillPool` (spilling operators share the budget fairly), with one exception — the
//! buffers between a `RepartitionExec` and its consumers always get their memory instead of
//! being spilled.
//!
//! Why: in DataFusion 55.2 (the newest 55.x; Ballista 55 needs 55.x) a `RepartitionExec` that
//! cannot reserve memory writes batches to a spill pool whose reader waits on the oldest file
//! only; when two input tasks spill at once the query can stop forever with every thread
//! parked (apache/datafusion#24883, fixed upstream after 55.2). At 5M clients the
//! segmentation's aggregation and the sorts fill the budget, the repartition feeding them
//! spills, and `ebroker sql` over the same query was seen to hang this way. The repartition
//! buffers are small and short-lived — the distribution channels stop a sender while every
//! output already holds a batch — so they are counted in the pool but never refused. The
//! price: while a repartition holds more than its share, a reservation that cannot spill (a
//! sort's merge buffer) may be refused, and the query fails with "Resources exhausted" naming
//! the operator — an error `ebroker run` retries and reports, instead of a job that never
//! ends. Remove this wrapper once DataFusion ships the fix.

use std::fmt;

use datafusion::common::Result;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

/// `FairSpillPool` that never refuses a repartition buffer (see the module documentation).
#[derive(Debug)]
pub struct QueryMemoryPool {
    fair: FairSpillPool,
}

impl QueryMemoryPool {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize) -> QueryMemoryPool {
        QueryMemoryPool {
            fair: FairSpillPool::new(limit),
        }
    }
}

/// Whether `consumer` is a repartition's output buffer (`RepartitionExec[0]`, ...).
fn is_repartition_buffer(consumer: &MemoryConsumer) -> bool {
    consumer.name().starts_with("RepartitionExec[")
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "ebroker-fair-spill"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.fair.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.fair.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.fair.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.fair.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if is_repartition_buffer(reservation.consumer()) {
            self.fair.grow(reservation, additional);
            return Ok(());
        }
        self.fair.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.fair.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.fair.memory_limit()
    }
}

impl fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes reserved)", self.name(), self.reserved())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn repartition_buffers_are_counted_but_never_refused() {
        let pool: Arc<dyn MemoryPool> = Arc::new(QueryMemoryPool::new(1000));
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        let repartition = MemoryConsumer::new("RepartitionExec[0]")
            .with_can_spill(true)
            .register(&pool);
        sort.try_grow(400).unwrap();
        repartition.try_grow(5000).unwrap();
        assert_eq!(pool.reserved(), 5400);
        // the others keep their fair share of the budget: 1000 / 2 spilling consumers
        assert!(
            sort.try_grow(101).is_err(),
            "a spilling operator is still held to its share"
        );
        sort.try_grow(100).unwrap();
        let merge = MemoryConsumer::new("ExternalSorterMerge[0]").register(&pool);
        assert!(
            merge.try_grow(1).is_err(),
            "a non-spilling reservation is refused beyond the budget"
        );
        drop(repartition);
        assert_eq!(pool.reserved(), 500);
    }
}
