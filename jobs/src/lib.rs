//! ebroker: the YARN- and Spark-free jobs of the bank's client-segmentation pipeline, on
//! Apache DataFusion (in-process) and Ballista (on a cluster). The contract is docs/SPEC.md,
//! the architecture docs/DESIGN.md.
//!
//! Layers, each importing only those below it (docs/DESIGN.md, "Layers"):
//! - [`cli`] — the `ebroker` command line, the SQL shell, the Flight SQL server, the
//!   operator's client of the scheduler.
//! - [`runner`] — the DAG behind `ebroker run`: run state, retries, resume.
//! - [`stages`] — one type per stage behind the `Stage` trait, and the registry; beside them
//!   [`sinks`] (Greenplum, ClickHouse), each a folder.
//! - [`sources`] — Kafka: produce and the exactly-once ingest.
//! - [`plans`] (the `ebroker-plans` crate): work that is not SQL as Ballista tasks — the Kafka
//!   range dumps — and the codec the scheduler and executors install.
//! - the core crate `ebroker-core` (re-exported here): schema, formats, warehouse, engine,
//!   SQL files, configuration, errors, [`ProcessingDate`].

pub use ebroker_core::{
    config, date, engine, error, formats, progress, resources, retry, schema, secrets, sql, tables, text, warehouse,
};
pub use ebroker_core::{Error, ProcessingDate, Result};
/// ebroker's own execution plans (work as Ballista tasks) and their codec.
pub use ebroker_plans as plans;

pub mod cli;
pub mod report;
pub mod runner;
pub mod sinks;
pub mod sources;
pub mod stages;
