//! Kafka as the bank runs it (docs/SPEC.md §2, §3): the seven topics, `produce` (CSV -> topics, one
//! JSON object per message keyed by record id) and `ingest` (topics -> the raw zone, exactly
//! once per record across crashes and reruns, with the offset ranges in `_runs/D/`).
//! This module holds what both share: topic names, and the client configuration
//! (`ebroker-plans`, where the executors' dump tasks need it too).

pub mod ingest;
pub mod produce;

pub use ebroker_plans::kafka::{client_config, kafka_error};

use crate::config::KafkaConfig;
use crate::schema::Table;

/// The topic of `table` under the configured prefix (`HA_` + `clients`).
pub fn topic_name(config: &KafkaConfig, table: &Table) -> String {
    format!("{}{}", config.topic_prefix, table.name)
}
