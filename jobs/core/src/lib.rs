//! ebroker-core: the bottom layer of ebroker (docs/DESIGN.md, "Layers"). Everything here is
//! shared by the jobs, the CLI, the Ballista scheduler and the executors, and imports nothing
//! above it: no stage, sink, Kafka client, database driver or command line.
//!
//! Modules, from the bottom up (each imports only those before it):
//! - [`error`] — the one error type and its exit codes.
//! - [`date`] — [`ProcessingDate`], validated once at the edge.
//! - [`secrets`] — which keys are secrets, masking, credentials stripped from URLs.
//! - [`config`] — layered configuration (defaults < file < `EBROKER_*` env < flags).
//! - [`schema`] — the source, cleaned and mart tables as data (docs/SPEC.md §2, §5, §6, §8).
//! - [`formats`] — strict field parsing, CSV record lines, the Kafka JSON message format,
//!   and the record parser that turns either into typed rows or quarantine.
//! - [`sql`] — the SQL files of `sql/` with their placeholders.
//! - [`resources`], [`progress`], [`retry`] — peak memory, progress bars, retries with backoff.
//! - [`warehouse`] — URLs, object stores, zones and layout, commits, Parquet writers, bucket
//!   file names.
//! - [`engine`] — the DataFusion session (in-process or on Ballista), its memory pool and
//!   ebroker's SQL functions.
//! - [`text`] — aligned tables for people.
//! - [`tables`] — reading and writing a day of a warehouse table through the engine.

pub mod config;
pub mod date;
pub mod engine;
pub mod error;
pub mod formats;
pub mod kerberos;
pub mod progress;
pub mod resources;
pub mod retry;
pub mod schema;
pub mod secrets;
pub mod sql;
pub mod tables;
pub mod text;
pub mod warehouse;

pub use date::ProcessingDate;
pub use error::{Error, Result};
