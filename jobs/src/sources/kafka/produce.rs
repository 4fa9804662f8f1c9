//! `ebroker produce`: the seven CSV files -> the seven topics (docs/SPEC.md §3 stage 2). One JSON
//! message per record, keyed by the record id, through an idempotent lz4 producer; every
//! delivery report is counted per topic, and any record that was not delivered makes the
//! command fail after the summary. A line that is not a CSV record is sent as it is (and
//! quarantined by cleaning), so nothing in the file is dropped on the way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Serialize;

use super::{client_config, kafka_error, topic_name};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::formats::csv::{source_files, CsvRecords};
use crate::formats::fields::{split_csv_line, trim};
use crate::schema::Table;

/// Messages that may wait in the producer's queue; a full queue makes senders wait.
const QUEUE_MESSAGES: &str = "1000000";

/// Delivered and failed counts of one topic.
#[derive(Debug, Default)]
struct TopicCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// Counts delivery reports per topic and keeps the first error.
#[derive(Default)]
struct DeliveryCounter {
    topics: HashMap<String, TopicCounter>,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        use rdkafka::message::Message;
        let (topic, ok) = match result {
            Ok(message) => (message.topic(), true),
            Err((error, message)) => {
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| format!("{} [{}]: {error}", message.topic(), message.partition()));
                (message.topic(), false)
            }
        };
        if let Some(counter) = self.topics.get(topic) {
            let slot = if ok { &counter.delivered } else { &counter.failed };
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What was sent to one topic.
#[derive(Debug, Clone, Serialize)]
pub struct TopicReport {
    pub table: String,
    pub topic: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// The summary of one `produce` run.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    pub topics: Vec<TopicReport>,
    pub seconds: f64,
    pub first_error: Option<String>,
}

impl ProduceReport {
    pub fn delivered(&self) -> u64 {
        self.topics.iter().map(|t| t.delivered).sum()
    }

    /// Fails when any record was not delivered, naming how many and the first error.
    pub fn check(&self) -> Result<()> {
        let failed: u64 = self
            .topics
            .iter()
            .map(|t| t.failed + (t.sent - t.delivered - t.failed))
            .sum();
        if failed == 0 {
            return Ok(());
        }
        Err(Error::Stage {
            stage: "produce".into(),
            message: format!(
                "{failed} records were not delivered (first error: {}); check the brokers and rerun — ingest and cleaning deduplicate resent records by id",
                self.first_error.as_deref().unwrap_or("none reported")
            ),
        })
    }

    /// The per-topic summary as an aligned table.
    pub fn render(&self) -> String {
        let mut out = format!("{:<32} {:>10} {:>10} {:>8}\n", "topic", "sent", "delivered", "failed");
        for t in &self.topics {
            out.push_str(&format!(
                "{:<32} {:>10} {:>10} {:>8}\n",
                t.topic, t.sent, t.delivered, t.failed
            ));
        }
        let secs = self.seconds.max(1e-9);
        out.push_str(&format!(
            "delivered {} messages in {:.2} s ({:.0} msg/s)\n",
            self.delivered(),
            secs,
            self.delivered() as f64 / secs
        ));
        out
    }
}

/// Sends the seven CSV files in `input` to their topics, creating missing topics first.
/// Lines over `max_record_bytes` are sent cut just past it, and quarantined as too long by
/// cleaning (with the same limit, `clean.max_record_bytes`).
pub async fn produce_csv_dir(config: &KafkaConfig, input: &Path, max_record_bytes: usize) -> Result<ProduceReport> {
    let files = source_files(input)?;
    ensure_topics(config).await?;
    let started = Instant::now();
    let context = DeliveryCounter {
        topics: files
            .iter()
            .map(|(t, _)| (topic_name(config, t), TopicCounter::default()))
            .collect(),
        first_error: Mutex::new(None),
    };
    let producer: Arc<ThreadedProducer<DeliveryCounter>> = Arc::new(
        client_config(config)?
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", QUEUE_MESSAGES)
            .set("queue.buffering.max.kbytes", "262144")
            .create_with_context(context)
            .map_err(kafka_error(config, "creating the producer"))?,
    );
    let total_bytes = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = crate::progress::bar(total_bytes, "produce", "bytes");
    let senders = files.into_iter().map(|(table, path)| {
        let producer = Arc::clone(&producer);
        let topic = topic_name(config, table);
        let bar = bar.clone();
        let brokers = config.brokers.clone();
        tokio::task::spawn_blocking(move || {
            send_file(&producer, table, &topic, &brokers, &path, max_record_bytes, &bar)
        })
    });
    let mut sent = Vec::new();
    for handle in futures::future::join_all(senders).await {
        sent.push(handle.map_err(|e| Error::Stage {
            stage: "produce".into(),
            message: format!("a sender panicked: {e}"),
        })??);
    }
    bar.finish_and_clear();
    let flush_producer = Arc::clone(&producer);
    let timeout = Duration::from_millis(config.request_timeout_ms.max(60_000));
    let flushed = tokio::task::spawn_blocking(move || flush_producer.flush(timeout))
        .await
        .map_err(|e| Error::Stage {
            stage: "produce".into(),
            message: format!("flush panicked: {e}"),
        })?;
    if let Err(e) = flushed {
        tracing::error!(error = %e, "not every message was acknowledged before the flush timeout");
    }
    let context = producer.context();
    let topics = sent
        .into_iter()
        .map(|(table, topic, count)| {
            let counter = &context.topics[&topic];
            TopicReport {
                table: table.name.to_string(),
                topic,
                sent: count,
                delivered: counter.delivered.load(Ordering::Relaxed),
                failed: counter.failed.load(Ordering::Relaxed),
            }
        })
        .collect();
    let first_error = context.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(ProduceReport {
        topics,
        seconds: started.elapsed().as_secs_f64(),
        first_error,
    })
}

/// Creates the seven topics where they do not exist yet.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)?
        .create()
        .map_err(kafka_error(config, "creating the admin client"))?;
    let names: Vec<String> = crate::schema::TABLES.iter().map(|t| topic_name(config, t)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_millis(config.request_timeout_ms)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(kafka_error(config, "creating topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(kafka_error(config, format!("creating topic {topic}"))(
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

/// Sends every line of one CSV file; returns (table, topic, messages sent).
fn send_file(
    producer: &ThreadedProducer<DeliveryCounter>,
    table: &'static Table,
    topic: &str,
    brokers: &str,
    path: &Path,
    max_record_bytes: usize,
    bar: &ProgressBar,
) -> Result<(&'static Table, String, u64)> {
    let mut value = Vec::with_capacity(512);
    let id_index = table
        .columns
        .iter()
        .position(|c| c.name == table.id)
        .expect("the id is a column");
    let mut sent = 0u64;
    let mut lines = CsvRecords::open(table, path, max_record_bytes, bar)?;
    while let Some((_, record)) = lines.next_record()? {
        value.clear();
        // A line over the record limit arrives cut; it is sent as it is, to be quarantined
        // as too long by cleaning.
        let text = std::str::from_utf8(record)
            .ok()
            .filter(|_| record.len() <= max_record_bytes);
        let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(table.columns.len());
        let key = match text {
            Some(text) if split_csv_line(text, &mut fields) && fields.len() == table.columns.len() => {
                crate::formats::kafka_json::encode_record(table, &fields, &mut value);
                Some(trim(&fields[id_index]).to_string()).filter(|k| !k.is_empty())
            }
            // not a record: sent as it is, to be quarantined as malformed (or too long) by cleaning
            _ => {
                value.extend_from_slice(record);
                None
            }
        };
        send_one(producer, topic, key.as_deref(), &value).map_err(|source| Error::Kafka {
            brokers: brokers.to_string(),
            doing: format!("sending to topic {topic}"),
            source: Box::new(source),
        })?;
        sent += 1;
    }
    Ok((table, topic.to_string(), sent))
}

/// Enqueues one message, waiting while the producer's queue is full.
fn send_one(
    producer: &ThreadedProducer<DeliveryCounter>,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
) -> std::result::Result<(), KafkaError> {
    loop {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err((error, _)) => return Err(error),
        }
    }
}
