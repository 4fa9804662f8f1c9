//! Kafka as the bank runs it (docs/SPEC.md §2, §3): the seven topics, `produce` (CSV -> topics, one
//! JSON object per message keyed by record id) and `ingest` (topics -> the raw zone, exactly
//! once per record across crashes and reruns, with the offset ranges in `_runs/D/`).
//! This module holds what both share: topic names and client configuration.

pub mod ingest;
pub mod produce;

use rdkafka::config::ClientConfig;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::schema::Table;

/// The topic of `table` under the configured prefix (`HA_` + `clients`).
pub fn topic_name(config: &KafkaConfig, table: &Table) -> String {
    format!("{}{}", config.topic_prefix, table.name)
}

/// The librdkafka settings every client shares: brokers, timeouts and the extra properties.
pub fn client_config(config: &KafkaConfig) -> Result<ClientConfig> {
    if !config.enabled() {
        return Err(Error::Config(
            "kafka.brokers is empty; set it (e.g. --set kafka.brokers=127.0.0.1:9092 or EBROKER_KAFKA__BROKERS) to use Kafka".into(),
        ));
    }
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("socket.timeout.ms", config.request_timeout_ms.to_string())
        .set("client.id", "ebroker");
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    Ok(client)
}

/// Wraps a librdkafka error with what ebroker was doing and where.
pub fn kafka_error(config: &KafkaConfig, doing: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let doing = doing.into();
    let brokers = config.brokers.clone();
    move |source| Error::Kafka {
        brokers,
        doing,
        source: Box::new(source),
    }
}
