//! Kafka on the nodes that run tasks: the client settings every Kafka client shares, and
//! [`dump_range`] — one partition's offset range `[start, end)` written losslessly to one raw
//! Parquet file (topic, partition, offset, timestamp, key, value). Ingest plans the ranges,
//! runs one task per range (on the executors, or in-process) and commits the day and then the
//! offsets itself (`ebroker::sources::kafka::ingest`); a task only reads — it assigns its
//! partition, never subscribes and never commits — so a task Ballista runs again, or one left
//! running by a killed client, rewrites the same file with the same records.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayBuilder, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::AsyncArrowWriter;
use ebroker_core::config::KafkaConfig;
use ebroker_core::error::{Error, Result};
use ebroker_core::warehouse::parquet;
use object_store::buffered::BufWriter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::task_files::task_store;

/// Name of the stage in errors.
const STAGE: &str = "ingest";

/// A batch is handed from the consumer to the Parquet writer at this many messages...
const BATCH_ROWS: usize = 32_768;

/// ...or this many bytes of keys and values, so that large messages neither overflow an
/// Arrow binary array (2 GiB) nor pile up in memory.
const BATCH_BYTES: usize = 16 << 20;

/// Rows per row group of the raw files.
const RAW_ROW_GROUP_ROWS: usize = 65_536;

/// The schema of every raw table: each message as it was on the topic.
pub fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
    ]))
}

/// The librdkafka settings every client shares: brokers, timeouts and the extra properties
/// (on an executor, plus the secret ones of its own configuration: [`set_node_secrets`]).
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
    for (key, value) in config.properties.iter().chain(NODE_SECRETS.get().into_iter().flatten()) {
        client.set(key, value);
    }
    Ok(client)
}

/// Wraps a librdkafka error with what ebroker was doing and where.
pub fn kafka_error(config: &KafkaConfig, doing: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let doing = doing.into();
    let brokers = config.brokers.clone();
    move |source| Error::Kafka {
        brokers,
        doing,
        source: Box::new(source),
    }
}

/// The secret Kafka properties of this node's own configuration (passwords, keys), which
/// plans never carry: the scheduler keeps plans in its job state and shows them.
static NODE_SECRETS: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// Called once by an executor at start-up with its `kafka` section.
pub fn set_node_secrets(config: &KafkaConfig) {
    let secrets = config
        .properties
        .iter()
        .filter(|(key, _)| ebroker_core::secrets::is_secret_key(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let _ = NODE_SECRETS.set(secrets);
}

/// `config` without its secret properties: what may travel in a plan to a cluster.
pub fn shippable(config: &KafkaConfig) -> KafkaConfig {
    let mut shipped = config.clone();
    shipped
        .properties
        .retain(|key, _| !ebroker_core::secrets::is_secret_key(key));
    shipped
}

/// One task of an ingest: the offsets `[start, end)` of one partition, into `file` (a URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeTask {
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub file: String,
}

/// What a [`RangeTask`] read and wrote, and where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeResult {
    pub task: RangeTask,
    /// Records read (fewer than end - start when the log has control records).
    pub records: u64,
    /// Rows in the written file, from its footer.
    pub file_rows: u64,
    /// The process the task ran in.
    pub pid: u32,
}

/// Reads `task`'s range into its file, through the object store of the task's runtime.
pub async fn dump_range(config: &KafkaConfig, task: &RangeTask, ctx: &TaskContext) -> Result<RangeResult> {
    let (store, path) = task_store(ctx, &task.file)?;
    let properties = parquet::properties(parquet::zstd(), RAW_ROW_GROUP_ROWS);
    let mut writer = AsyncArrowWriter::try_new(BufWriter::new(store, path), raw_schema(), Some(properties))
        .map_err(parquet::parquet_error(&task.file))?;

    let (tx, mut rx) = mpsc::channel::<RecordBatch>(4);
    let (consume_config, consume_task) = (config.clone(), task.clone());
    let consume = tokio::task::spawn_blocking(move || consume_range_into(&consume_config, &consume_task, &tx));
    while let Some(batch) = rx.recv().await {
        writer.write(&batch).await.map_err(parquet::parquet_error(&task.file))?;
    }
    let records = consume.await.map_err(|e| Error::Stage {
        stage: STAGE.into(),
        message: format!("the consumer of {}[{}] panicked: {e}", task.topic, task.partition),
    })??;
    let footer = writer.close().await.map_err(parquet::parquet_error(&task.file))?;
    let file_rows = footer.file_metadata().num_rows() as u64;
    tracing::info!(topic = task.topic, partition = task.partition, records, "dumped");
    Ok(RangeResult {
        task: task.clone(),
        records,
        file_rows,
        pid: std::process::id(),
    })
}

/// Consumes `[start, end)` of the task's partition, sending batches of raw rows; returns
/// the records read.
fn consume_range_into(config: &KafkaConfig, task: &RangeTask, tx: &mpsc::Sender<RecordBatch>) -> Result<u64> {
    let topic = &task.topic;
    if task.start >= task.end {
        return Ok(0);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, task.partition, Offset::Offset(task.start))
        .map_err(kafka_error(config, format!("assigning {topic}")))?;
    let consumer: BaseConsumer<EofQuietContext> = client_config(config)?
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // Several tasks run at once: bound what librdkafka prefetches for each (its defaults
        // queue up to 64 MiB or 100,000 messages per partition).
        .set("fetch.max.bytes", "8388608")
        .set("max.partition.fetch.bytes", "2097152")
        .set("queued.max.messages.kbytes", "16384")
        .set("queued.min.messages", "20000")
        .create_with_context(EofQuietContext)
        .map_err(kafka_error(config, "creating a consumer"))?;
    consumer
        .assign(&list)
        .map_err(kafka_error(config, format!("assigning {topic}")))?;

    let stall_limit = Duration::from_millis(config.request_timeout_ms);
    let mut last_progress = Instant::now();
    let mut rows = RawRows::new(topic);
    let mut records = 0;
    loop {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if last_progress.elapsed() > stall_limit {
                return Err(Error::Stage {
                    stage: STAGE.into(),
                    message: format!(
                        "no records from {topic}[{}] for {stall_limit:?}; is the broker {} up?",
                        task.partition, config.brokers
                    ),
                });
            }
            continue;
        };
        last_progress = Instant::now();
        let message = match polled {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(_)) => break,
            Err(e) => return Err(kafka_error(config, format!("reading {topic}"))(e)),
        };
        if message.partition() != task.partition || message.offset() < task.start {
            continue;
        }
        if message.offset() >= task.end {
            break;
        }
        rows.push(
            task.partition,
            message.offset(),
            message.timestamp().to_millis(),
            message.key(),
            message.payload(),
        );
        records += 1;
        let last = message.offset() + 1 >= task.end;
        if (rows.is_full() || last) && tx.blocking_send(rows.finish()).is_err() {
            return Err(Error::Stage {
                stage: STAGE.into(),
                message: format!("the writer of {topic}[{}] stopped", task.partition),
            });
        }
        if last {
            return Ok(records);
        }
    }
    if rows.len() > 0 && tx.blocking_send(rows.finish()).is_err() {
        return Err(Error::Stage {
            stage: STAGE.into(),
            message: format!("the writer of {topic}[{}] stopped", task.partition),
        });
    }
    Ok(records)
}

/// Logs librdkafka's errors through tracing, except the end-of-partition events that a dump
/// asks for (`enable.partition.eof`) to know a partition is drained.
struct EofQuietContext;

impl ClientContext for EofQuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::debug!(%error, "end of partition");
        } else {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for EofQuietContext {}

/// Raw rows under construction.
struct RawRows {
    topic: String,
    topics: StringBuilder,
    partitions: Int32Builder,
    offsets: Int64Builder,
    timestamps: TimestampMillisecondBuilder,
    keys: BinaryBuilder,
    values: BinaryBuilder,
    bytes: usize,
}

impl RawRows {
    fn new(topic: &str) -> Self {
        RawRows {
            topic: topic.to_string(),
            topics: StringBuilder::new(),
            partitions: Int32Builder::new(),
            offsets: Int64Builder::new(),
            timestamps: TimestampMillisecondBuilder::new(),
            keys: BinaryBuilder::new(),
            values: BinaryBuilder::new(),
            bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn is_full(&self) -> bool {
        self.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    fn push(&mut self, partition: i32, offset: i64, timestamp: Option<i64>, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.topics.append_value(&self.topic);
        self.partitions.append_value(partition);
        self.offsets.append_value(offset);
        self.timestamps.append_option(timestamp);
        self.bytes += key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        self.keys.append_option(key);
        self.values.append_option(value);
    }

    fn finish(&mut self) -> RecordBatch {
        self.bytes = 0;
        RecordBatch::try_new(
            raw_schema(),
            vec![
                Arc::new(self.topics.finish()),
                Arc::new(self.partitions.finish()),
                Arc::new(self.offsets.finish()),
                Arc::new(self.timestamps.finish()),
                Arc::new(self.keys.finish()),
                Arc::new(self.values.finish()),
            ],
        )
        .expect("raw columns match the raw schema")
    }
}
