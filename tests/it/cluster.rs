//! The jobs on a real Ballista cluster (scheduler + two executors started by
//! `deploy/local/cluster.sh`, address in EBROKER_TEST_CLUSTER): the same rows as in-process,
//! with tasks on both executors and the sources parsed there; ebroker's own plans run each
//! task once; a write on the executors keeps every task's file and only those; a day whose
//! joins have an empty side; an executor killed mid-job; and every executor lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::dataframe::DataFrameWriteOptions;
use ebroker::plans::run::write_partitions;
use ebroker::runner::Status;
use ebroker::schema::TABLES;
use ebroker::warehouse::{Warehouse, Zone};
use ebroker_integration::day;
use ebroker_integration::{assert_completed, repo_root, service, Sources, TestWarehouse};
use ebroker_integration::{run, RunOptions};

/// Cluster tests share one cluster and kill its executors: one at a time.
pub(crate) static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DATE: &str = "2024-06-01";

fn cluster_dir() -> PathBuf {
    PathBuf::from(std::env::var("EBROKER_CLUSTER_DIR").unwrap_or_else(|_| "/tmp/ebroker-cluster".into()))
}

fn options(input: PathBuf, resume: bool) -> RunOptions {
    RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: Some(input),
        clients: 0,
        seed: 3,
        dirty: 0.03,
        resume,
    }
}

fn generate(dir: &std::path::Path, clients: u64) {
    ebroker::stages::generate::generate(&ebroker::stages::generate::GenerateOptions {
        clients,
        seed: 3,
        dirty: 0.03,
        anchor: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        out: dir.to_path_buf(),
    })
    .unwrap();
}

fn kill_executor(name: &str) {
    let pid = std::fs::read_to_string(cluster_dir().join(format!("{name}.pid"))).expect("executor pid file");
    let status = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "could not kill {name}");
}

fn restart_cluster() {
    let status = std::process::Command::new(repo_root().join("deploy/local/cluster.sh"))
        .arg("start")
        .status()
        .unwrap();
    assert!(status.success(), "cluster.sh start failed");
}

async fn wait_for_running_job(url: &str) {
    let api = ebroker::cli::operator::SchedulerApi::new(url.replace("df://", "http://"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let jobs = api.jobs().await.unwrap();
        if jobs.iter().any(|j| j["status"] == "Running") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no job started running on the cluster");
}

/// Every row of `relative` (a day's partition) in `wh`, sorted, as strings.
async fn table_rows(reader: &TestWarehouse, wh: &Warehouse, relative: &str) -> Vec<Vec<String>> {
    reader
        .engine
        .register_parquet_dir("compared", &wh.url(relative), None)
        .await
        .unwrap();
    let width = reader
        .rows("SELECT * FROM compared LIMIT 1")
        .await
        .first()
        .map_or(1, Vec::len);
    let order: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
    reader
        .rows(&format!("SELECT * FROM compared ORDER BY {}", order.join(", ")))
        .await
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_on_the_cluster_equals_the_in_process_run_row_for_row() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let local = TestWarehouse::new();
    let input = local.input_dir("src");
    generate(&input, 20_000);
    run(
        &local.config,
        &local.engine,
        &local.warehouse,
        &local.sql,
        &options(input.clone(), false),
    )
    .await
    .unwrap();
    let log = |name: &str| {
        std::fs::read_to_string(cluster_dir().join(format!("{name}.log")))
            .unwrap_or_default()
            .matches("Execute task")
            .count()
    };
    let before = (log("exec-a"), log("exec-b"));

    let remote = TestWarehouse::on_cluster(&url).await;
    let state = run(
        &remote.config,
        &remote.engine,
        &remote.warehouse,
        &remote.sql,
        &options(input.clone(), false),
    )
    .await
    .unwrap();
    assert_completed(&state);

    let mut partitions: Vec<String> = TABLES
        .iter()
        .map(|t| Warehouse::partition(Zone::Cleaned, t.name, day(DATE)))
        .collect();
    for mart in [
        "client_segmentation",
        "marketing_clients",
        "targeted_offers",
        "marketing_analytics_daily",
    ] {
        partitions.push(Warehouse::partition(Zone::Marts, mart, day(DATE)));
    }
    for relative in partitions {
        let a = table_rows(&local, &local.warehouse, &relative).await;
        let b = table_rows(&local, &remote.warehouse, &relative).await;
        assert!(!a.is_empty(), "{relative} is empty");
        assert_eq!(a.len(), b.len(), "{relative}: row counts differ");
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!(
                "{relative}: row {i} differs between in-process and cluster:\n  {:?}\n  {:?}",
                a[i], b[i]
            );
        }
    }
    let after = (log("exec-a"), log("exec-b"));
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "tasks ran on both executors: {before:?} -> {after:?}"
    );
    // The local input was uploaded to the raw zone, and the seven files were parsed there by
    // the executors (one split each at this size), not by the client.
    for table in TABLES {
        let uploaded = format!(
            "{}{}",
            Warehouse::partition(Zone::Raw, table.name, day(DATE)),
            table.file_name()
        );
        let bytes = std::fs::metadata(remote.warehouse.local_dir(&uploaded).unwrap())
            .unwrap()
            .len();
        assert_eq!(bytes, std::fs::metadata(input.join(table.file_name())).unwrap().len());
    }
    let raw_url = remote.warehouse.url("raw/");
    let parsed_there: usize = ["exec-a", "exec-b"]
        .iter()
        .map(|name| {
            std::fs::read_to_string(cluster_dir().join(format!("{name}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains("parsed") && line.contains(raw_url.as_str()) && line.contains(".csv"))
                .count()
        })
        .sum();
    assert_eq!(
        parsed_there,
        TABLES.len(),
        "one parse task per uploaded source file, on the executors"
    );
}

/// A bucketed day deduplicated in passes: on the cluster the parse writes each pass's files,
/// and the concat tasks that join a bucket's files of every pass run on the executors; the
/// cleaned tables and marts equal the in-process run's with the same settings.
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucketed_day_in_passes_on_the_cluster_equals_the_in_process_run() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let settings = || {
        vec![
            ("warehouse.clients_per_bucket".to_string(), "700".to_string()),
            ("clean.dedup_pass_rows".to_string(), "1000".to_string()),
            ("clean.split_bytes".to_string(), "65536".to_string()),
        ]
    };
    let local = TestWarehouse::with_settings(settings());
    let input = local.input_dir("src");
    generate(&input, 3000);
    let options = options(input, false);
    let state = run(&local.config, &local.engine, &local.warehouse, &local.sql, &options)
        .await
        .unwrap();
    assert_completed(&state);
    let remote = TestWarehouse::on_cluster_with(&url, settings()).await;
    let state = run(&remote.config, &remote.engine, &remote.warehouse, &remote.sql, &options)
        .await
        .unwrap();
    assert_completed(&state);
    let mut partitions: Vec<String> = TABLES
        .iter()
        .map(|t| Warehouse::partition(Zone::Cleaned, t.name, day(DATE)))
        .collect();
    partitions.push(Warehouse::partition(Zone::Marts, "client_segmentation", day(DATE)));
    for relative in partitions {
        let files = |wh: &TestWarehouse| {
            let dir = wh.warehouse.local_dir(&relative).unwrap();
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with("bucket-"))
                .collect();
            names.sort();
            names
        };
        assert_eq!(files(&local), files(&remote), "{relative}: the bucket files");
        let a = table_rows(&local, &local.warehouse, &relative).await;
        let b = table_rows(&local, &remote.warehouse, &relative).await;
        assert!(!a.is_empty(), "{relative} is empty");
        assert!(
            a == b,
            "{relative}: the cluster's rows differ from the in-process run's"
        );
    }
    let transactions = Warehouse::partition(Zone::Cleaned, "bank_transactions", day(DATE));
    let buckets = std::fs::read_dir(local.warehouse.local_dir(&transactions).unwrap())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("bucket-"))
        .count();
    assert!(buckets >= 4, "3000 clients at 700 per bucket: {buckets} bucket files");
}

/// The pids of the scheduler and executors `deploy/local/cluster.sh` started.
fn cluster_pids() -> Vec<u32> {
    ["scheduler", "exec-a", "exec-b"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(cluster_dir().join(format!("{name}.pid"))).ok())
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

/// ebroker's own plans (a task list under `WorkExec`, through the codec installed in the
/// client, scheduler and executors) run each task exactly once, on an executor.
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_plans_run_each_task_once_on_the_executors() {
    use ebroker::plans::run::{run_tasks, Runner};
    use ebroker::plans::work::{Probe, Work};
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let remote = TestWarehouse::on_cluster(&url).await;
    let tasks: Vec<u64> = (0..8).collect();
    let bar = indicatif::ProgressBar::hidden();
    let probes: Vec<Probe> = run_tasks(&Runner::Engine(&remote.engine), Work::Probe, &tasks, "probe", &bar)
        .await
        .unwrap();
    let mut ran: Vec<u64> = probes.iter().map(|p| p.task).collect();
    ran.sort();
    assert_eq!(ran, tasks, "each task once");
    let nodes = cluster_pids();
    assert!(
        probes
            .iter()
            .all(|p| nodes.contains(&p.pid) && p.pid != std::process::id()),
        "every task ran in a cluster process {nodes:?}: {probes:?}"
    );
}

/// A day on which no client registered: the analytics query's left join has an empty side.
/// Ballista 55's adaptive planner re-plans such a join forever (a new one-task stage every few
/// milliseconds, found on the HDFS run); the cluster session plans statically instead, and
/// this run must finish within the query timeout with the in-process result.
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_without_new_clients_completes_on_the_cluster() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let mut sources = Sources::new();
    for (client, amount) in [("C1", "250000"), ("C2", "60000"), ("C3", "100.50")] {
        sources.client(client).transaction(client, amount).logins(client, 5);
    }
    let local = TestWarehouse::new();
    let remote = TestWarehouse::on_cluster(&url).await;
    let input = local.input_dir("src");
    sources.write(&input);
    for wh in [&local, &remote] {
        run(
            &wh.config,
            &wh.engine,
            &wh.warehouse,
            &wh.sql,
            &options(input.clone(), false),
        )
        .await
        .unwrap();
    }
    let relative = Warehouse::partition(Zone::Marts, "marketing_analytics_daily", day(DATE));
    let expected = table_rows(&local, &local.warehouse, &relative).await;
    assert!(!expected.is_empty(), "{relative} is empty");
    assert_eq!(table_rows(&local, &remote.warehouse, &relative).await, expected);
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_executors_keeps_every_task_s_file_and_removes_what_no_task_reported() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let remote = TestWarehouse::on_cluster(&url).await;
    let source = remote.dir.path().join("numbers");
    std::fs::create_dir_all(&source).unwrap();
    let local = datafusion::prelude::SessionContext::new();
    for (name, from) in [("a", 1), ("b", 1001)] {
        let sql = format!("SELECT value AS n FROM generate_series({from}, {})", from + 999);
        let path = source.join(format!("{name}.parquet"));
        let single = DataFrameWriteOptions::new().with_single_file_output(true);
        let df = local.sql(&sql).await.unwrap();
        df.write_parquet(path.to_str().unwrap(), single, None).await.unwrap();
    }
    let source_url = url::Url::from_directory_path(&source).unwrap();
    remote
        .engine
        .register_parquet_dir("numbers", &source_url, None)
        .await
        .unwrap();
    let out = remote.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let stray = "w-lost-attempt-00000.parquet";
    std::fs::write(out.join(stray), b"the file of an attempt whose executor was lost").unwrap();
    // Two files are two tasks, and Ballista numbers the partition of each task's plan 0.
    let df = remote.engine.sql("SELECT n FROM numbers", "numbers").await.unwrap();
    let out_url = url::Url::from_directory_path(&out).unwrap();
    let rows = write_partitions(&remote.engine, df, out_url, "w".into(), "writing numbers")
        .await
        .unwrap();
    assert_eq!(rows, 2000);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one file per task, the stray removed: {files:?}");
    assert!(files.iter().all(|f| f.starts_with("w-") && f != stray), "{files:?}");
    let written = format!("{}/", out.display());
    local
        .register_parquet("written", &written, Default::default())
        .await
        .unwrap();
    let back = local
        .sql("SELECT count(*), sum(n) FROM written")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        ebroker_integration::to_strings(&back),
        vec![vec!["2000".to_string(), "2001000".to_string()]]
    );
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_costs_nothing_but_time() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let remote = TestWarehouse::on_cluster(&url).await;
    let input = remote.input_dir("src");
    generate(&input, 200_000);
    let job = {
        let (config, engine, warehouse, sql) = (
            remote.config.clone(),
            remote.engine.clone(),
            remote.warehouse.clone(),
            remote.sql.clone(),
        );
        let opts = options(input, false);
        tokio::spawn(async move { run(&config, &engine, &warehouse, &sql, &opts).await })
    };
    wait_for_running_job(&url).await;
    kill_executor("exec-b");
    let outcome = job.await.unwrap();
    restart_cluster();
    let state = outcome.expect("the run finishes on the remaining executor");
    let report: ebroker::stages::clean::CleanReport = remote
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    assert!(report.tables.iter().all(|t| t.reconciles()));
    assert_eq!(state.stage("analytics").unwrap().status, Status::Succeeded);
    ebroker::tables::partitions::register_mart(&remote.engine, &remote.warehouse, "targeted_offers", day(DATE))
        .await
        .unwrap();
    ebroker::tables::partitions::register_cleaned(&remote.engine, &remote.warehouse, day(DATE))
        .await
        .unwrap();
    let counts = remote
        .rows("SELECT (SELECT count(*) FROM targeted_offers) AS o, (SELECT count(*) * 3 FROM clients) AS c")
        .await;
    assert_eq!(counts[0][0], counts[0][1], "three offers per clean client");
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_executor_fails_the_stage_in_bounded_time_and_resume_completes() {
    let url = service("EBROKER_TEST_CLUSTER");
    let _guard = CLUSTER.lock().await;
    let remote = TestWarehouse::on_cluster(&url).await;
    let input = remote.input_dir("src");
    generate(&input, 200_000);
    let started = Instant::now();
    let job = {
        let (config, engine, warehouse, sql) = (
            remote.config.clone(),
            remote.engine.clone(),
            remote.warehouse.clone(),
            remote.sql.clone(),
        );
        let opts = options(input.clone(), false);
        tokio::spawn(async move { run(&config, &engine, &warehouse, &sql, &opts).await })
    };
    wait_for_running_job(&url).await;
    kill_executor("exec-a");
    kill_executor("exec-b");
    let err = job.await.unwrap().expect_err("a run without executors must fail");
    let elapsed = started.elapsed();
    restart_cluster();
    assert!(elapsed < Duration::from_secs(100), "failed only after {elapsed:?}");
    assert!(err.to_string().contains("--resume"), "{err}");
    let failed: ebroker::runner::RunState = remote
        .warehouse
        .read_json(&format!("_runs/{DATE}/state.json"))
        .await
        .unwrap()
        .unwrap();
    let stage = failed
        .stages
        .iter()
        .find(|s| s.status == Status::Failed)
        .expect("a failed stage");
    for later in failed.stages.iter().skip_while(|s| s.stage != stage.stage).skip(1) {
        assert_eq!(later.status, Status::Pending);
        if let Some(dir) = remote
            .warehouse
            .local_dir(&format!("marts/{}/processing_date={DATE}", later.stage))
        {
            assert!(!dir.exists(), "no output published for {:?}", later.stage);
        }
    }
    if stage.stage == "clean" {
        assert!(
            !remote
                .warehouse
                .local_dir(&format!("cleaned/clients/processing_date={DATE}"))
                .unwrap()
                .exists(),
            "clean published nothing"
        );
    }

    let resumed = run(
        &remote.config,
        &remote.engine,
        &remote.warehouse,
        &remote.sql,
        &options(input, true),
    )
    .await
    .unwrap();
    assert_eq!(
        resumed.stage("analytics").unwrap().status,
        Status::Succeeded,
        "{}",
        resumed.render()
    );
}
