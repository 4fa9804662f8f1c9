//! ebroker: the YARN- and Spark-free jobs of the bank's client-segmentation pipeline, on
//! Apache DataFusion (in-process) and Ballista (on a cluster).
//!
//! Module map, in the order data flows (SPEC.md §3):
//! - [`schema`] — the seven source tables as data.
//! - [`generate`] — synthetic CSV sources, optionally dirty.
//! - [`kafka`] — `produce` (CSV -> topics) and `ingest` (topics -> `raw/`, exactly once).
//! - [`clean`] — strict parsing, quarantine, dedup, enrichment -> `cleaned/`, written in
//!   client [`buckets`].
//! - [`segment`], [`offers`], [`analytics`] — the marts (SPEC §5, §6, §8), via [`marts`].
//! - [`greenplum`] — `publish greenplum` (PXF or binary COPY) and `verify greenplum`.
//! - [`clickhouse`] — `publish clickhouse` (atomic partition swaps) and `report`.
//! - [`pipeline`] — the DAG runner behind `ebroker run`.
//! - [`catalog`], [`shell`], [`flight`] — the warehouse as SQL: `ebroker sql` and `ebroker serve`.
//! - [`operator`] — `ebroker jobs`: the scheduler's jobs, for cluster operators.
//! - [`cli`] — the `ebroker` command line.
//!
//! Infrastructure: [`cluster`] (Ballista session, runtime and functions), [`config`] (layered settings), [`storage`] (warehouse URLs, object stores,
//! atomic commits), [`engine`] (the DataFusion session), [`memory`] (its memory pool), [`sql`] (SQL files),
//! [`functions`] (SQL functions), [`progress`], [`resources`], [`error`].

pub mod analytics;
pub mod buckets;
pub mod catalog;
pub mod clean;
pub mod cli;
pub mod clickhouse;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod flight;
pub mod functions;
pub mod generate;
pub mod greenplum;
pub mod kafka;
pub mod marts;
pub mod memory;
pub mod offers;
pub mod operator;
pub mod pipeline;
pub mod progress;
pub mod resources;
pub mod schema;
pub mod segment;
pub mod shell;
pub mod sql;
pub mod storage;

pub use error::{Error, Result};
