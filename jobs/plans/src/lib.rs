//! ebroker's own execution plans, so that work which is not SQL — dumping Kafka ranges,
//! parsing raw records, writing a query's result partition by partition ([`write`]) — runs on
//! the executors like the queries do (docs/DESIGN.md, "What runs where"). A plan is a list of
//! tasks — one row, one partition each — under one [`work::WorkExec`] that carries out the
//! [`work::Work`] a row describes and answers with one result row. Ballista ships it to the
//! executors through [`codec::PlanCodec`], which the client, the scheduler and every executor
//! install; in-process the same plan runs on the local engine ([`run`]).
//!
//! Layer: above `ebroker-core`, below the `ebroker` crate's sources and stages; the scheduler
//! and executor binaries link it for the codec.

pub mod codec;
pub mod concat;
pub mod kafka;
pub mod parse;
pub mod run;
pub mod splits;
pub mod task_files;
pub mod work;
pub mod write;
