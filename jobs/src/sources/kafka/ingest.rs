//! `ebroker ingest --date D` (docs/SPEC.md §3 stage 3): each topic-partition is read from where the
//! last ingest stopped up to the high-water mark seen at the start, and written losslessly to
//! `raw/<table>/processing_date=D/` (topic, partition, offset, timestamp, key, value).
//!
//! Exactly once, in this order: (1) the offset ranges are planned; (2) the records are written
//! under `_staging/` and each table's day is swapped in; (3) the offset manifest
//! `_runs/D/ingest.json` is written — from here the day is done; (4) the ranges' ends are
//! committed to the consumer group. A crash before (3) leaves no manifest, and the rerun reads
//! the same ranges again and replaces the day; a crash between (3) and (4) is repaired by the
//! next run, which commits the manifest's ends and starts after them. A date with a manifest
//! is not read again unless `--force`, which re-reads exactly the recorded ranges.
//!
//! Step (2) is one task per partition range ([`ebroker_plans::kafka::dump_range`]), on the
//! executors of a cluster or in this process: the client plans, reconciles and commits, and
//! moves no records itself.
//!
//! Nothing is skipped silently: a range the broker no longer holds (deleted by retention
//! before it was ingested) is an error naming it, not a shorter day; `--force` refuses to
//! replace a day when part of its ranges is gone; and committed offsets never move backwards
//! (re-committing an older date's manifest leaves a group that is further ahead alone).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::TaskContext;
use ebroker_plans::kafka::{shippable, RangeResult, RangeTask};
use ebroker_plans::run::{run_tasks, Runner};
use ebroker_plans::work::Work;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{client_config, kafka_error, topic_name};
use crate::config::KafkaConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::TABLES;
use crate::tables::partitions::footer_rows;
use crate::warehouse::commit::Commit;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

pub use ebroker_plans::kafka::raw_schema;

/// Name of the stage in run state and staging paths.
const STAGE: &str = "ingest";

/// The offset manifest of a date, under `_runs/D/`.
pub const MANIFEST: &str = "ingest.json";

/// The offsets `[start, end)` of one partition that a date holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    /// Records read in the range (fewer than end - start when the log has control records).
    pub records: u64,
}

/// What one topic contributed to a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicManifest {
    pub table: String,
    pub topic: String,
    pub records: u64,
    pub partitions: Vec<PartitionRange>,
}

/// `_runs/D/ingest.json`: the ranges a date holds; written once the raw zone is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestManifest {
    pub processing_date: ProcessingDate,
    pub group_id: String,
    pub topics: Vec<TopicManifest>,
}

impl IngestManifest {
    pub fn records(&self) -> u64 {
        self.topics.iter().map(|t| t.records).sum()
    }

    pub fn topic(&self, table: &str) -> Option<&TopicManifest> {
        self.topics.iter().find(|t| t.table == table)
    }

    /// The per-topic summary as an aligned table.
    pub fn render(&self) -> String {
        let mut out = format!("{:<32} {:>10} {:>10}\n", "topic", "partitions", "records");
        for t in &self.topics {
            out.push_str(&format!(
                "{:<32} {:>10} {:>10}\n",
                t.topic,
                t.partitions.len(),
                t.records
            ));
        }
        out
    }
}

/// The outcome of `ingest`.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub manifest: IngestManifest,
    /// False when the date had already been ingested and nothing was read (no `--force`).
    pub ingested: bool,
    pub seconds: f64,
}

/// Ingests every topic for `date` into the raw zone (see the module documentation), one
/// task per partition range on `engine`: on its cluster's executors, or in this process.
pub async fn ingest_on(
    engine: &Engine,
    config: &KafkaConfig,
    warehouse: &Warehouse,
    date: ProcessingDate,
    force: bool,
) -> Result<IngestOutcome> {
    ingest_with(&Runner::Engine(engine), config, warehouse, date, force).await
}

/// [`ingest_on`] in this process, without an engine (the tasks write through `warehouse`).
pub async fn ingest(
    config: &KafkaConfig,
    warehouse: &Warehouse,
    date: ProcessingDate,
    force: bool,
) -> Result<IngestOutcome> {
    let runtime = RuntimeEnvBuilder::new()
        .build_arc()
        .map_err(Error::engine("building the ingest runtime"))?;
    runtime.register_object_store(warehouse.root(), Arc::clone(warehouse.store()));
    let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
    ingest_with(&Runner::Local(ctx), config, warehouse, date, force).await
}

async fn ingest_with(
    runner: &Runner<'_>,
    config: &KafkaConfig,
    warehouse: &Warehouse,
    date: ProcessingDate,
    force: bool,
) -> Result<IngestOutcome> {
    let started = Instant::now();
    let consumer = offsets_consumer(config)?;
    let manifest_file = Warehouse::run_file(date, MANIFEST);
    let existing: Option<IngestManifest> = warehouse.read_json(&manifest_file).await?;
    if let (Some(done), false) = (&existing, force) {
        tracing::info!(
            %date,
            records = done.records(),
            "already ingested; committing its offsets again and reading nothing (--force re-reads it)"
        );
        commit_offsets(config, &consumer, done).await?;
        return Ok(IngestOutcome {
            manifest: done.clone(),
            ingested: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let plan = match &existing {
        Some(done) => replan(config, &consumer, done)?,
        None => plan_ranges(config, warehouse, &consumer, date).await?,
    };

    let staging_root = Warehouse::staging_root(STAGE, date);
    warehouse.remove_all(&staging_root).await?;
    let topics = dump(runner, config, warehouse, date, plan).await?;

    let mut commit = Commit::new(STAGE, date);
    for topic in &topics {
        let staged = Warehouse::staging(STAGE, date, Zone::Raw.dir(), &topic.table);
        // Counted in the written file, not by the consumer that wrote it.
        let written = footer_rows(warehouse, &staged).await?;
        if written != topic.records {
            return Err(Error::Reconcile {
                table: topic.table.clone(),
                message: format!(
                    "consumed {} messages of {} but the raw file holds {written}; nothing was committed, rerun `ebroker ingest --date {date}`",
                    topic.records, topic.topic
                ),
            });
        }
        if let Some(before) = existing.as_ref().and_then(|m| m.topic(&topic.table)) {
            if written < before.records {
                return Err(Error::Reconcile {
                    table: topic.table.clone(),
                    message: format!(
                        "--force re-read {written} records of {} where the raw day holds {}; the day was left as it was",
                        topic.topic, before.records
                    ),
                });
            }
        }
        commit.directory(&staged, &Warehouse::partition(Zone::Raw, &topic.table, date));
    }
    let manifest = IngestManifest {
        processing_date: date,
        group_id: config.group_id.clone(),
        topics,
    };
    // The raw days and their manifest are published in one commit, durably, before the
    // offsets move (docs/DESIGN.md, "Storage and the commit protocol").
    let staged_manifest = format!("{staging_root}manifest.json");
    warehouse.write_json(&staged_manifest, &manifest).await?;
    commit.file(&staged_manifest, &manifest_file);
    warehouse.publish(commit).await?;
    warehouse.remove_all(&staging_root).await?;
    commit_offsets(config, &consumer, &manifest).await?;
    Ok(IngestOutcome {
        manifest,
        ingested: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A consumer of the group, used for watermarks and committed offsets (never subscribed,
/// so it never takes part in a rebalance).
fn offsets_consumer(config: &KafkaConfig) -> Result<BaseConsumer> {
    client_config(config)?
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_error(config, "creating a consumer"))
}

type Plan = Vec<(String, String, Vec<PartitionRange>)>;

/// For each topic-partition: from the group's committed offset (or the end recorded by the
/// latest earlier manifest, if that is further, or the log start) to the high-water mark now.
async fn plan_ranges(
    config: &KafkaConfig,
    warehouse: &Warehouse,
    consumer: &BaseConsumer,
    date: ProcessingDate,
) -> Result<Plan> {
    let previous = latest_manifest_before(warehouse, date).await?;
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let mut plan = Vec::new();
    for table in TABLES {
        let topic = topic_name(config, table);
        let partitions = topic_partitions(config, consumer, &topic)?;
        let mut list = TopicPartitionList::new();
        for &p in &partitions {
            list.add_partition(&topic, p);
        }
        let committed = committed_offsets(consumer, list, timeout)
            .map_err(kafka_error(config, format!("reading committed offsets of {topic}")))?;
        let mut ranges = Vec::new();
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(kafka_error(config, format!("reading watermarks of {topic} [{p}]")))?;
            // Where this pipeline is in the partition: the group's offset or the last
            // manifest's end, whichever is further; a partition never read starts at 0.
            let committed = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => 0,
            };
            let recorded = previous
                .as_ref()
                .and_then(|m| m.topic(table.name))
                .and_then(|t| t.partitions.iter().find(|r| r.partition == p))
                .map_or(0, |r| r.end);
            let start = committed.max(recorded);
            if start < low {
                return Err(lost_range(config, &topic, p, start, low));
            }
            if start > high {
                return Err(Error::Stage {
                    stage: STAGE.into(),
                    message: format!("{topic} [{p}] ends at offset {high} but group {} is at {start}: was the topic recreated? reset the group's offsets or use a new kafka.group_id", config.group_id),
                });
            }
            ranges.push(PartitionRange {
                partition: p,
                start,
                end: high,
                records: 0,
            });
        }
        plan.push((table.name.to_string(), topic, ranges));
    }
    Ok(plan)
}

/// The ranges of an ingested day, to read again (`--force`): all of them still on the broker.
fn replan(config: &KafkaConfig, consumer: &BaseConsumer, done: &IngestManifest) -> Result<Plan> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let mut plan = Vec::new();
    for t in &done.topics {
        let mut ranges = Vec::new();
        for r in &t.partitions {
            let (low, _) = consumer
                .fetch_watermarks(&t.topic, r.partition, timeout)
                .map_err(kafka_error(
                    config,
                    format!("reading watermarks of {} [{}]", t.topic, r.partition),
                ))?;
            if r.start < r.end && low > r.start {
                return Err(lost_range(config, &t.topic, r.partition, r.start, low.min(r.end)));
            }
            ranges.push(PartitionRange {
                records: 0,
                ..r.clone()
            });
        }
        plan.push((t.table.clone(), t.topic.clone(), ranges));
    }
    Ok(plan)
}

/// Records `[from, to)` of a partition are gone from the broker before they were read.
fn lost_range(config: &KafkaConfig, topic: &str, partition: i32, from: i64, to: i64) -> Error {
    Error::Input {
        path: format!("kafka://{}/{topic}", config.brokers),
        message: format!(
            "partition {partition}: offsets {from}..{to} ({} records) were deleted by the broker (retention) before ingest; nothing was written and no offset moved. Produce those records again, or, to accept their loss, move group {} past them (kafka-consumer-groups --reset-offsets --to-offset {to}) and rerun",
            to - from,
            config.group_id
        ),
    }
}

fn topic_partitions(config: &KafkaConfig, consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka_error(config, format!("reading metadata of {topic}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::Input {
            path: format!("kafka://{}/{topic}", config.brokers),
            message: "the topic does not exist; run `ebroker produce` first, or check kafka.topic_prefix".into(),
        });
    }
    Ok(partitions)
}

/// The manifest of the latest date before `date` that was ingested, if any.
async fn latest_manifest_before(warehouse: &Warehouse, date: ProcessingDate) -> Result<Option<IngestManifest>> {
    let suffix = format!("/{MANIFEST}");
    let mut dates: Vec<ProcessingDate> = warehouse
        .list_files("_runs/")
        .await?
        .iter()
        .filter_map(|p| {
            let day = p.as_ref().strip_suffix(&suffix).and_then(|d| d.rsplit('/').next())?;
            ProcessingDate::parse(day).ok()
        })
        .filter(|d| *d < date)
        .collect();
    dates.sort();
    match dates.last() {
        Some(d) => warehouse.read_json(&Warehouse::run_file(*d, MANIFEST)).await,
        None => Ok(None),
    }
}

/// The group's committed offsets of `list`. A restarted broker answers "not coordinator" or
/// "coordinator loading" until it has loaded the group's offsets: asked again until `timeout`.
fn committed_offsets(
    consumer: &BaseConsumer,
    list: TopicPartitionList,
    timeout: Duration,
) -> std::result::Result<TopicPartitionList, KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.committed_offsets(list.clone(), timeout) {
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "reading committed offsets failed; asking again");
                std::thread::sleep(Duration::from_millis(250));
            }
            result => return result,
        }
    }
}

/// Commits each partition's end to the consumer group, where the group is not already
/// further: committed offsets never move backwards.
async fn commit_offsets(config: &KafkaConfig, consumer: &BaseConsumer, manifest: &IngestManifest) -> Result<()> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let mut list = TopicPartitionList::new();
    for topic in &manifest.topics {
        let mut current = TopicPartitionList::new();
        for r in &topic.partitions {
            current.add_partition(&topic.topic, r.partition);
        }
        let current = committed_offsets(consumer, current, timeout).map_err(kafka_error(
            config,
            format!("reading committed offsets of {}", topic.topic),
        ))?;
        for r in &topic.partitions {
            let ahead = matches!(
                current.find_partition(&topic.topic, r.partition).map(|e| e.offset()),
                Some(Offset::Offset(n)) if n >= r.end
            );
            if !ahead {
                list.add_partition_offset(&topic.topic, r.partition, Offset::Offset(r.end))
                    .map_err(kafka_error(config, format!("preparing the commit of {}", topic.topic)))?;
            }
        }
    }
    if list.count() == 0 {
        return Ok(());
    }
    consumer.commit(&list, CommitMode::Sync).map_err(kafka_error(
        config,
        format!("committing offsets of group {}", config.group_id),
    ))
}

/// Runs one task per range of `plan` (each writes
/// `_staging/ingest/D/raw/<table>/part-<partition>.parquet`) and gathers what each topic
/// read, checking every range was read once and fully written.
async fn dump(
    runner: &Runner<'_>,
    config: &KafkaConfig,
    warehouse: &Warehouse,
    date: ProcessingDate,
    plan: Plan,
) -> Result<Vec<TopicManifest>> {
    let tasks: Vec<RangeTask> = plan
        .iter()
        .flat_map(|(table, topic, ranges)| {
            let dir = Warehouse::staging(STAGE, date, Zone::Raw.dir(), table);
            ranges.iter().map(move |r| RangeTask {
                table: table.clone(),
                topic: topic.clone(),
                partition: r.partition,
                start: r.start,
                end: r.end,
                file: warehouse
                    .url(&format!("{dir}part-{:05}.parquet", r.partition))
                    .to_string(),
            })
        })
        .collect();
    // Secrets never travel in a plan to a cluster: executors add their own.
    let kafka = match runner {
        Runner::Engine(engine) if engine.scheduler_url().is_some() => shippable(config),
        _ => config.clone(),
    };
    let bar = crate::progress::bar(tasks.len() as u64, "ingest", "partitions");
    let results: Vec<RangeResult> = run_tasks(runner, Work::KafkaDump { kafka }, &tasks, STAGE, &bar).await?;
    bar.finish_and_clear();
    let mut topics = Vec::new();
    for (table, topic, ranges) in plan {
        let mut partitions = Vec::new();
        for range in ranges {
            let done = results
                .iter()
                .find(|r| r.task.topic == topic && r.task.partition == range.partition)
                .filter(|r| r.records == r.file_rows)
                .ok_or_else(|| Error::Reconcile {
                    table: table.clone(),
                    message: format!(
                        "the dump of {topic} [{}] did not write what it read; nothing was committed, rerun `ebroker ingest --date {date}`",
                        range.partition
                    ),
                })?;
            partitions.push(PartitionRange {
                records: done.records,
                ..range
            });
        }
        let records = partitions.iter().map(|r| r.records).sum();
        tracing::info!(topic, records, "dumped");
        topics.push(TopicManifest {
            table,
            topic,
            records,
            partitions,
        });
    }
    Ok(topics)
}
