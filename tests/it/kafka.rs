//! Kafka against the real broker (`EBROKER_TEST_KAFKA`, started by deploy/local/kafka.sh):
//! produce -> ingest -> clean reconciles exactly per topic and matches cleaning the same CSV;
//! a SIGKILLed ingest publishes nothing and its rerun holds every record once; the next date
//! gets only new records; malformed messages end in quarantine with their reasons; a broker
//! restart in the middle of ingest still gives the day exactly once; records deleted by
//! retention before ingest fail it naming the range (and `--force` never shrinks a day);
//! committed offsets never move backwards. Topics have 4 partitions (`kafka_settings`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ebroker::schema::TABLES;
use ebroker::sources::kafka::ingest::{ingest, ingest_on, IngestManifest};
use ebroker::sources::kafka::produce::{ensure_topics, produce_csv_dir, ProduceReport};
use ebroker::stages::clean::{clean_raw, CleanReport};
use ebroker::warehouse::{Warehouse, Zone};
use ebroker_integration::day;
use ebroker_integration::{
    assert_completed, ebroker_binary, generate_sources, kafka_settings, unique_name, TestWarehouse,
};
use rdkafka::producer::{FutureProducer, FutureRecord};

const DATE: &str = "2024-06-01";
const NEXT_DATE: &str = "2024-06-02";

/// The broker is shared: the restart test takes it alone, the others share it.
static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn kafka_warehouse(prefix: &str) -> TestWarehouse {
    TestWarehouse::with_settings(kafka_settings(prefix))
}

/// `clients` generated clients' sources (`seed`, `dirty`) in `wh`'s input directory, produced
/// to its topics, every message delivered: the input directory and the producer's report.
async fn produce_sources(wh: &TestWarehouse, clients: u64, seed: u64, dirty: f64) -> (PathBuf, ProduceReport) {
    let input = wh.input_dir("src");
    generate_sources(&input, clients, seed, dirty);
    let produced = produce_csv_dir(&wh.config.kafka, &input, wh.config.clean.max_record_bytes)
        .await
        .unwrap();
    produced.check().unwrap();
    (input, produced)
}

/// Cleans `wh`'s raw zone of [`DATE`] on its engine (in-process or the cluster).
async fn clean_from_raw(wh: &TestWarehouse) -> CleanReport {
    clean_raw(&wh.engine, &wh.warehouse, &wh.sql, &wh.config.clean, day(DATE))
        .await
        .unwrap()
}

/// (rows, distinct (partition, offset)) of one raw table of `date`.
async fn raw_counts(wh: &TestWarehouse, table: &str, date: &str) -> (u64, u64) {
    let name = format!("raw_{table}_{}", date.replace('-', "_"));
    let url = wh.warehouse.url(&Warehouse::partition(Zone::Raw, table, day(date)));
    wh.engine.register_parquet_dir(&name, &url, None).await.unwrap();
    let rows = wh.rows(&format!("SELECT count(*) FROM {name}")).await;
    let distinct = wh
        .rows(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT partition, \"offset\" FROM {name})"
        ))
        .await;
    (rows[0][0].parse().unwrap(), distinct[0][0].parse().unwrap())
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_equals_consumed_equals_raw_equals_cleaned_plus_quarantined_plus_duplicates() {
    let _broker = BROKER.read().await;
    let prefix = unique_name("recon");
    let wh = kafka_warehouse(&prefix);
    let (input, produced) = produce_sources(&wh, 20_000, 5, 0.03).await;
    let outcome = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    assert!(outcome.ingested);
    let report = clean_from_raw(&wh).await;

    let from_csv = TestWarehouse::new();
    let csv_report = from_csv.clean_csv(&input, DATE).await.unwrap();
    for table in TABLES {
        let sent = produced.topics.iter().find(|t| t.table == table.name).unwrap();
        let consumed = outcome.manifest.topic(table.name).unwrap().records;
        let (raw, distinct) = raw_counts(&wh, table.name, DATE).await;
        let cleaned = report.table(table.name).unwrap();
        assert_eq!(sent.delivered, sent.sent, "{}: every message delivered", table.name);
        assert_eq!(sent.delivered, consumed, "{}: produced = consumed", table.name);
        assert_eq!(
            (raw, distinct),
            (consumed, consumed),
            "{}: consumed = raw, each offset once",
            table.name
        );
        assert_eq!(cleaned.read, raw, "{}: raw = read by clean", table.name);
        assert!(cleaned.reconciles(), "{}: {cleaned:?}", table.name);
        assert!(
            cleaned.quarantined > 0 && cleaned.duplicates_removed > 0,
            "{}: dirt travelled through Kafka: {cleaned:?}",
            table.name
        );
        let csv = csv_report.table(table.name).unwrap();
        assert_eq!(
            (
                cleaned.written,
                &cleaned.quarantined_by_reason,
                cleaned.duplicates_removed
            ),
            (csv.written, &csv.quarantined_by_reason, csv.duplicates_removed),
            "{}: cleaning the topic equals cleaning the file",
            table.name
        );
    }

    let again = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    assert!(!again.ingested, "a finished date is a no-op");
    assert_eq!(again.manifest, outcome.manifest);
    let forced = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), true).await.unwrap();
    assert!(forced.ingested);
    assert_eq!(
        forced.manifest, outcome.manifest,
        "--force re-reads exactly the recorded ranges"
    );
}

/// Lines of the cluster's executor logs that say `what` and contain `about`.
fn logged_by_executors(what: &str, about: &str) -> usize {
    let dir = std::env::var("EBROKER_CLUSTER_DIR").unwrap_or_else(|_| "/tmp/ebroker-cluster".into());
    ["exec-a", "exec-b"]
        .iter()
        .map(|name| {
            std::fs::read_to_string(Path::new(&dir).join(format!("{name}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains(what) && line.contains(about))
                .count()
        })
        .sum()
}

/// With `--cluster`, each partition range is a task on an executor (the client only plans
/// and commits): every produced record lands in the raw zone once, the offsets end where
/// the manifest says, and the executors' logs hold one dump per range; then each raw file is
/// parsed by an executor, and the day cleans as the same CSV does in-process.
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_parsing_on_the_cluster_run_each_range_on_an_executor_exactly_once() {
    let _broker = BROKER.read().await;
    let _cluster = crate::cluster::CLUSTER.lock().await;
    let prefix = unique_name("cluster_ingest");
    let wh = TestWarehouse::on_cluster_with(
        &ebroker_integration::service("EBROKER_TEST_CLUSTER"),
        kafka_settings(&prefix),
    )
    .await;
    let (input, produced) = produce_sources(&wh, 20_000, 8, 0.0).await;
    let outcome = ingest_on(&wh.engine, &wh.config.kafka, &wh.warehouse, day(DATE), false)
        .await
        .unwrap();
    for topic in &produced.topics {
        let got = outcome.manifest.topic(&topic.table).unwrap();
        assert_eq!(got.partitions.len(), 4, "{}: four partitions", topic.table);
        let (raw, distinct) = raw_counts(&wh, &topic.table, DATE).await;
        assert_eq!(
            (raw, distinct, got.records),
            (topic.delivered, topic.delivered, topic.delivered),
            "{}: each produced record exactly once",
            topic.table
        );
        let partitions: Vec<i32> = got.partitions.iter().map(|r| r.partition).collect();
        let ends: BTreeMap<i32, i64> = got.partitions.iter().map(|r| (r.partition, r.end)).collect();
        assert_eq!(
            committed_offsets(&wh, &topic.topic, &partitions),
            ends,
            "{}",
            topic.table
        );
        assert_eq!(
            logged_by_executors("dumped", &format!("topic=\"{}\"", topic.topic)),
            4,
            "{}: one dump per range, on the executors",
            topic.topic
        );
    }

    // Parsing the raw zone runs there too, one task per raw file, and cleans as the CSV does.
    let report = clean_from_raw(&wh).await;
    let csv_report = TestWarehouse::new().clean_csv(&input, DATE).await.unwrap();
    for table in TABLES {
        let (cleaned, csv) = (report.table(table.name).unwrap(), csv_report.table(table.name).unwrap());
        assert!(cleaned.reconciles(), "{}: {cleaned:?}", table.name);
        assert_eq!(
            (
                cleaned.written,
                &cleaned.quarantined_by_reason,
                cleaned.duplicates_removed
            ),
            (csv.written, &csv.quarantined_by_reason, csv.duplicates_removed),
            "{}: cleaning the topic on the cluster equals cleaning the file",
            table.name
        );
        let raw_dir = wh
            .warehouse
            .url(&Warehouse::partition(Zone::Raw, table.name, day(DATE)));
        assert_eq!(
            logged_by_executors("parsed", raw_dir.as_str()),
            4,
            "{}: one parse per raw file, on the executors",
            table.name
        );
    }
}

/// `ebroker ingest` of [`DATE`] as a child process on `wh` and the topics of `prefix`.
fn spawn_ingest(wh: &TestWarehouse, prefix: &str) -> Command {
    let mut cmd = Command::new(ebroker_binary());
    cmd.args(["--warehouse", &wh.config.warehouse.root, "ingest", "--date", DATE])
        .envs(kafka_settings(prefix).into_iter().map(|(k, v)| {
            (
                format!("EBROKER_{}", k.to_uppercase().replacen('.', "__", 1)),
                v.trim_matches('"').to_string(),
            )
        }))
        .stdout(Stdio::null());
    cmd
}

/// Waits until `child` (an ingest) writes `_staging/ingest/DATE/<under>`, failing if it ends
/// first or takes over a minute.
fn wait_for_staging(wh: &TestWarehouse, child: &mut Child, under: &str) {
    let staging = Path::new(&wh.config.warehouse.root)
        .join("_staging/ingest")
        .join(DATE)
        .join(under);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !staging.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before {} appeared; produce more records",
            staging.display()
        );
        assert!(Instant::now() < deadline, "ingest never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_publishes_nothing_and_the_rerun_holds_each_record_once() {
    let _broker = BROKER.read().await;
    let prefix = unique_name("crash");
    let wh = kafka_warehouse(&prefix);
    let (_, produced) = produce_sources(&wh, 150_000, 6, 0.0).await;

    // SIGKILL the CLI once it is writing the raw dump.
    let mut child = spawn_ingest(&wh, &prefix).stderr(Stdio::null()).spawn().unwrap();
    wait_for_staging(&wh, &mut child, "raw");
    std::thread::sleep(Duration::from_millis(150));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    let manifest: Option<IngestManifest> = wh
        .warehouse
        .read_json(&Warehouse::run_file(day(DATE), "ingest.json"))
        .await
        .unwrap();
    assert!(manifest.is_none(), "the kill came before the manifest");
    for table in TABLES {
        let published =
            Path::new(&wh.config.warehouse.root).join(Warehouse::partition(Zone::Raw, table.name, day(DATE)));
        assert!(
            !published.exists(),
            "nothing of a killed ingest is where readers look: {}",
            published.display()
        );
    }

    let outcome = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    for topic in &produced.topics {
        let (raw, distinct) = raw_counts(&wh, &topic.table, DATE).await;
        assert_eq!(
            (raw, distinct),
            (topic.delivered, topic.delivered),
            "{}: each produced record exactly once",
            topic.table
        );
    }

    // More records arrive; the next date gets exactly those.
    let more = wh.input_dir("more");
    generate_sources(&more, 500, 7, 0.0);
    let second = produce_csv_dir(&wh.config.kafka, &more, wh.config.clean.max_record_bytes)
        .await
        .unwrap();
    second.check().unwrap();
    let next = ingest(&wh.config.kafka, &wh.warehouse, day(NEXT_DATE), false)
        .await
        .unwrap();
    for topic in &second.topics {
        let got = next.manifest.topic(&topic.table).unwrap();
        assert_eq!(got.records, topic.delivered, "{}: only the new records", topic.table);
        let before = outcome.manifest.topic(&topic.table).unwrap();
        let ends: BTreeMap<i32, i64> = before.partitions.iter().map(|r| (r.partition, r.end)).collect();
        for r in &got.partitions {
            assert_eq!(
                r.start, ends[&r.partition],
                "{} [{}] starts where {DATE} ended",
                topic.table, r.partition
            );
        }
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_quarantined_with_their_reasons() {
    let _broker = BROKER.read().await;
    let prefix = unique_name("malformed");
    let wh = kafka_warehouse(&prefix);
    ensure_topics(&wh.config.kafka).await.unwrap();
    let producer: FutureProducer = ebroker::sources::kafka::client_config(&wh.config.kafka)
        .unwrap()
        .create()
        .unwrap();
    let topic = format!("{prefix}_clients");
    let good = r#"{"client_id":"CLIENT_000001","client_name":"Иванов","phone":"+7 (916) 000-00-00","email":"i@x.ru","birth_date":"1980-01-01","registration_date":"2020-01-01","city":"Москва","segment":"Basic","status":"Active"}"#;
    let messages: Vec<(Option<&str>, &str)> = vec![
        (Some("CLIENT_000001"), good),
        (
            Some("CLIENT_000002"),
            r#"{"client_id":"CLIENT_000002","registration_date":"#,
        ),
        (
            Some("CLIENT_000003"),
            r#"{"client_id":3,"registration_date":"2020-01-01"}"#,
        ),
        (
            None,
            r#"{"client_name":"Без идентификатора","registration_date":"2020-01-01"}"#,
        ),
        (
            Some("CLIENT_000005"),
            r#"{"client_id":"CLIENT_000005","registration_date":"2020-02-30"}"#,
        ),
        (Some("CLIENT_000006"), r#"["not","an","object"]"#),
    ];
    for (key, value) in &messages {
        let mut record = FutureRecord::to(&topic).payload(*value);
        if let Some(k) = key {
            record = record.key(*k);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    let report = clean_from_raw(&wh).await;
    let clients = report.table("clients").unwrap();
    let expected: BTreeMap<String, u64> = [
        ("malformed record", 2),
        ("unparsable client_id", 1),
        ("missing client_id", 1),
        ("unparsable registration_date", 1),
    ]
    .into_iter()
    .map(|(r, n)| (r.to_string(), n))
    .collect();
    assert_eq!(clients.quarantined_by_reason, expected);
    assert_eq!((clients.read, clients.written), (6, 1));

    let url = wh
        .warehouse
        .url(&Warehouse::partition(Zone::Quarantine, "clients", day(DATE)));
    wh.engine.register_parquet_dir("q", &url, None).await.unwrap();
    let kept = wh
        .rows("SELECT record FROM q WHERE reason = 'malformed record' ORDER BY record")
        .await;
    let mut sent: Vec<String> = vec![messages[5].1.to_string(), messages[1].1.to_string()];
    sent.sort();
    assert_eq!(
        kept.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        sent,
        "the raw value is kept"
    );
    ebroker::tables::partitions::register_cleaned(&wh.engine, &wh.warehouse, day(DATE))
        .await
        .unwrap();
    assert_eq!(
        wh.rows("SELECT client_id, phone FROM clients").await,
        vec![vec!["CLIENT_000001".to_string(), "79160000000".to_string()]]
    );
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_kafka_goes_generate_produce_ingest_clean() {
    let _broker = BROKER.read().await;
    use ebroker::runner::Status;
    use ebroker_integration::{run, RunOptions};
    let prefix = unique_name("dag");
    let wh = kafka_warehouse(&prefix);
    let options = RunOptions {
        date: chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: None,
        clients: 2_000,
        seed: 3,
        dirty: 0.03,
        resume: false,
    };
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options)
        .await
        .unwrap();
    assert_completed(&state);
    for stage in [
        "generate",
        "produce",
        "ingest",
        "clean",
        "segment",
        "offers",
        "analytics",
    ] {
        assert_eq!(
            state.stage(stage).unwrap().status,
            Status::Succeeded,
            "{}",
            state.render()
        );
    }
    let generated = state.stage("generate").unwrap().rows.unwrap();
    assert_eq!(
        state.stage("produce").unwrap().rows,
        Some(generated),
        "every generated line was delivered"
    );
    assert_eq!(state.stage("ingest").unwrap().rows, Some(generated), "and ingested");
    assert_eq!(state.stage("clean").unwrap().rows, Some(generated), "and read by clean");
    assert!(state.stage("offers").unwrap().rows.unwrap() > 0);
}

/// The consumer group's committed offsets of `topic` per partition.
fn committed_offsets(wh: &TestWarehouse, topic: &str, partitions: &[i32]) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &wh.config.kafka.brokers)
        .set("group.id", &wh.config.kafka.group_id)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    partitions
        .iter()
        .filter_map(|&p| match committed.find_partition(topic, p)?.offset() {
            rdkafka::Offset::Offset(n) => Some((p, n)),
            _ => None,
        })
        .collect()
}

/// deploy/local/kafka.sh with the test broker's settings.
fn kafka_script(args: &[&str]) {
    let status = Command::new(ebroker_integration::repo_root().join("deploy/local/kafka.sh"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "deploy/local/kafka.sh {args:?} failed");
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_ingest_fail_it_naming_the_range_and_offsets_never_move_back() {
    let _broker = BROKER.read().await;
    let prefix = unique_name("retention");
    let wh = kafka_warehouse(&prefix);
    let (_, produced) = produce_sources(&wh, 400, 8, 0.0).await;
    let clients = format!("{prefix}_clients");
    let partitions = [0, 1, 2, 3];

    // Retention deletes the first records of a partition before the first ingest.
    kafka_script(&["delete-records", &clients, "1", "5"]);
    let err = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 3, "{text}");
    assert!(
        text.contains(&clients) && text.contains("partition 1") && text.contains("offsets 0..5"),
        "the error names the lost range: {text}"
    );
    assert!(
        committed_offsets(&wh, &clients, &partitions).is_empty(),
        "no offset moved"
    );
    assert!(!wh
        .warehouse
        .exists(&Warehouse::partition(Zone::Raw, "clients", day(DATE)))
        .await
        .unwrap());

    // Accepting the loss the way the message says; then the day is ingested.
    let group = wh.config.kafka.group_id.clone();
    kafka_script(&[
        "tool",
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        &wh.config.kafka.brokers,
        "--group",
        &group,
        "--topic",
        &format!("{clients}:1"),
        "--reset-offsets",
        "--to-offset",
        "5",
        "--execute",
    ]);
    let first = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    let sent = produced.topics.iter().find(|t| t.table == "clients").unwrap().delivered;
    assert_eq!(first.manifest.topic("clients").unwrap().records, sent - 5);
    assert!(
        first.manifest.topic("clients").unwrap().partitions.len() >= 4,
        "topics have 4 partitions"
    );

    // Part of the day's range is deleted afterwards: --force refuses to replace the day.
    let (raw_before, _) = raw_counts(&wh, "clients", DATE).await;
    let range = first
        .manifest
        .topic("clients")
        .unwrap()
        .partitions
        .iter()
        .find(|r| r.partition == 2 && r.end > r.start + 2)
        .cloned()
        .expect("partition 2 holds records");
    kafka_script(&["delete-records", &clients, "2", &(range.start + 2).to_string()]);
    let err = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("partition 2"), "{err}");
    let (raw_after, _) = raw_counts(&wh, "clients", DATE).await;
    assert_eq!(raw_after, raw_before, "--force never replaces a day with fewer records");

    // A later date moves the group on; re-running the earlier date does not move it back.
    let more = wh.input_dir("more");
    generate_sources(&more, 100, 9, 0.0);
    produce_csv_dir(&wh.config.kafka, &more, wh.config.clean.max_record_bytes)
        .await
        .unwrap()
        .check()
        .unwrap();
    ingest(&wh.config.kafka, &wh.warehouse, day(NEXT_DATE), false)
        .await
        .unwrap();
    let ahead = committed_offsets(&wh, &clients, &partitions);
    let again = ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    assert!(!again.ingested);
    assert_eq!(
        committed_offsets(&wh, &clients, &partitions),
        ahead,
        "offsets never move backwards"
    );
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_in_the_middle_of_ingest_gives_the_day_exactly_once() {
    let _broker = BROKER.write().await;
    let prefix = unique_name("restart");
    let wh = kafka_warehouse(&prefix);
    let (_, produced) = produce_sources(&wh, 100_000, 10, 0.0).await;

    let mut child = spawn_ingest(&wh, &prefix)
        .env("EBROKER_KAFKA__REQUEST_TIMEOUT_MS", "60000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_staging(&wh, &mut child, "");
    assert!(
        child.try_wait().unwrap().is_none(),
        "ingest finished before the broker restarted; produce more records"
    );
    kafka_script(&["restart"]);
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        // The ingest may give up on the broker; the rerun must then complete the day once.
        eprintln!(
            "ingest during the restart failed (rerunning): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ingest(&wh.config.kafka, &wh.warehouse, day(DATE), false).await.unwrap();
    }
    let manifest: IngestManifest = wh
        .warehouse
        .read_json(&Warehouse::run_file(day(DATE), "ingest.json"))
        .await
        .unwrap()
        .expect("the day has its manifest");
    for topic in &produced.topics {
        let (raw, distinct) = raw_counts(&wh, &topic.table, DATE).await;
        assert_eq!(
            (raw, distinct, manifest.topic(&topic.table).unwrap().records),
            (topic.delivered, topic.delivered, topic.delivered),
            "{}: each produced record exactly once",
            topic.table
        );
        let partitions: Vec<i32> = manifest
            .topic(&topic.table)
            .unwrap()
            .partitions
            .iter()
            .map(|r| r.partition)
            .collect();
        let ends: BTreeMap<i32, i64> = manifest
            .topic(&topic.table)
            .unwrap()
            .partitions
            .iter()
            .map(|r| (r.partition, r.end))
            .collect();
        assert_eq!(
            committed_offsets(&wh, &topic.topic, &partitions),
            ends,
            "{}: offsets at the ends",
            topic.table
        );
    }
}
