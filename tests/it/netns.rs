//! The jobs across three test hosts on this machine (`deploy/local/netns.sh up`): Linux network
//! namespaces with veth pairs into a bridge, each with an address of its own — the Ballista
//! scheduler in eb-sched (its URL in EBROKER_TEST_NETNS), executors exec1 and exec2 in eb-exec1
//! and eb-exec2 (pid files and logs in EBROKER_NETNS_DIR) — with the warehouse on a plain HDFS
//! bound to the bridge address, which every host reaches (EBROKER_TEST_HDFS_NETNS), and the
//! client here in the root namespace. The DAG across the hosts gives the warehouse of the
//! in-process run; with exec1's process killed in the middle of clean, Ballista reruns its
//! tasks on exec2 and the day completes, with the same warehouse.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ebroker::runner::{RunState, Status};
use ebroker::warehouse::{StoreRegistry, Warehouse};
use ebroker_integration::{
    assert_completed, ebroker_command, generate_sources, repo_root, succeeded, unique_name, warehouse_digest,
    PartitionDigest,
};

const DATE: &str = "2024-06-01";

/// The size of cluster.rs's row-for-row comparison: tasks on both hosts, and parse tasks that
/// run for ~100 ms (the moment the kill test waits for).
const CLIENTS: u64 = 20_000;

type Digest = BTreeMap<String, PartitionDigest>;

/// The namespace tests share one cluster and take a host down: one at a time.
static NETNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A process of `deploy/local/netns.sh`: its pid file's name, binary and namespace.
struct Host {
    name: &'static str,
    binary: &'static str,
    netns: &'static str,
}

const HOSTS: [Host; 3] = [
    Host {
        name: "scheduler",
        binary: "ebroker-scheduler",
        netns: "eb-sched",
    },
    Host {
        name: "exec1",
        binary: "ebroker-executor",
        netns: "eb-exec1",
    },
    Host {
        name: "exec2",
        binary: "ebroker-executor",
        netns: "eb-exec2",
    },
];

/// A setting that `deploy/local/netns.sh up` writes to `$EBROKER_NETNS_DIR/env`; fails loudly
/// when it is missing, as the other service tests do.
fn netns_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test hosts with `deploy/local/netns.sh up` (as root) and \
             source $EBROKER_NETNS_DIR/env, or run the tests with deploy/local/test.sh"
        )
    })
}

fn netns_dir() -> PathBuf {
    PathBuf::from(netns_env("EBROKER_NETNS_DIR"))
}

fn log_path(name: &str) -> PathBuf {
    netns_dir().join(format!("{name}.log"))
}

fn pid_of(name: &str) -> u32 {
    let file = netns_dir().join(format!("{name}.pid"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (run `deploy/local/netns.sh up`)", file.display()))
        .trim()
        .parse()
        .expect("a pid file holds a pid")
}

/// The network namespace of a process as /proc names it: `net:[<inode>]`.
fn net_namespace(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/net: {e}"))
        .display()
        .to_string()
}

/// Checks that each process runs its binary in its own named namespace — not this test's,
/// not another host's — and returns the pids, in the order of [`HOSTS`].
fn assert_each_on_its_own_host() -> Vec<u32> {
    let own = net_namespace("self");
    let mut seen = HashSet::new();
    HOSTS
        .iter()
        .map(|host| {
            let pid = pid_of(host.name);
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                .unwrap_or_else(|e| panic!("{} (pid {pid}) is not running: {e}", host.name));
            assert!(
                exe.ends_with(host.binary),
                "{} (pid {pid}) is {}, not {}",
                host.name,
                exe.display(),
                host.binary
            );
            let ns = net_namespace(&pid.to_string());
            let named = std::fs::metadata(format!("/run/netns/{}", host.netns))
                .unwrap_or_else(|e| panic!("namespace {}: {e}", host.netns))
                .ino();
            assert_eq!(
                ns,
                format!("net:[{named}]"),
                "{} runs in namespace {}",
                host.name,
                host.netns
            );
            assert_ne!(
                ns, own,
                "{} runs on a host of its own, not in the client's namespace",
                host.name
            );
            assert!(seen.insert(ns), "{} shares a namespace with another process", host.name);
            pid
        })
        .collect()
}

/// The host part of a `df://` or `hdfs://` URL.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .host_str()
        .expect("a URL with a host")
        .to_string()
}

/// The executors the scheduler has registered: id -> the host it registered with.
fn registered_executors(url: &str) -> BTreeMap<String, String> {
    let api = format!("{}/api/executors", url.replace("df://", "http://"));
    let out = succeeded(Command::new("curl").args(["-sf", "--max-time", "10", &api]));
    let executors: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the scheduler answers JSON");
    executors
        .as_array()
        .expect("a list of executors")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["host"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The scheduler, both executors and the HDFS each at an address of its own, none loopback.
fn assert_addresses(url: &str, hdfs: &str) {
    let scheduler = host_of(url);
    let namenode = host_of(hdfs);
    let executors = registered_executors(url);
    assert_eq!(
        executors.keys().map(String::as_str).collect::<Vec<_>>(),
        ["exec1", "exec2"],
        "{executors:?}"
    );
    let mut addresses: Vec<&str> = executors.values().map(String::as_str).collect();
    addresses.extend([scheduler.as_str(), namenode.as_str()]);
    for address in &addresses {
        let ip: std::net::IpAddr = address.parse().unwrap_or_else(|e| panic!("{address}: {e}"));
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "{address} in {addresses:?}");
    }
    assert_eq!(
        addresses.iter().collect::<HashSet<_>>().len(),
        addresses.len(),
        "one address per host: {addresses:?}"
    );
}

/// The length of a log now: what a run appends is read from here on.
fn log_offset(name: &str) -> u64 {
    std::fs::metadata(log_path(name)).map_or(0, |m| m.len())
}

/// What `name`'s log gained since `offset`.
fn log_since(name: &str, offset: u64) -> String {
    let mut file = std::fs::File::open(log_path(name)).expect("the log exists");
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tasks_started(log: &str) -> usize {
    log.matches("Execute task").count()
}

fn input(dir: &Path) -> PathBuf {
    // Under the temporary directory: the hosts share this machine's file system, so every
    // executor reads the same path.
    let input = dir.join("input");
    generate_sources(&input, CLIENTS, 3, 0.03);
    input
}

/// The DAG in-process into a fresh local warehouse: the reference.
async fn local_reference(input: &Path, dir: &Path) -> Digest {
    let root = dir.join("local").display().to_string();
    succeeded(
        ebroker_command(&root)
            .args(["run", "--date", DATE, "--input"])
            .arg(input),
    );
    let digest = warehouse_digest(&root).await;
    assert!(
        digest.keys().any(|k| k.starts_with("marts/marketing_analytics_daily")),
        "{digest:?}"
    );
    digest
}

/// `ebroker run` of the day on the namespace cluster into `root`, without stage retries: what
/// recovers from a lost host is Ballista, not a second attempt of the stage.
fn cluster_run(root: &str, url: &str, input: &Path) -> Command {
    let mut cmd = ebroker_command(root);
    cmd.args(["--cluster", url])
        .env("EBROKER_RUN__RETRIES", "0")
        .env("EBROKER_CLUSTER__QUERY_TIMEOUT_SECS", "120")
        .args(["run", "--date", DATE, "--input"])
        .arg(input);
    cmd
}

async fn run_state(root: &str) -> RunState {
    let config = ebroker::config::WarehouseConfig::at(root);
    let warehouse = Warehouse::open(&config, &StoreRegistry::new()).expect("warehouse opens");
    warehouse
        .read_json(&format!("_runs/{DATE}/state.json"))
        .await
        .expect("state.json reads")
        .expect("state.json exists")
}

fn time(stamp: Option<&str>) -> DateTime<Utc> {
    let stamp = stamp.expect("a time stamp");
    DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|e| panic!("{stamp}: {e}"))
        .with_timezone(&Utc)
}

/// `deploy/local/netns.sh up`: restarts what is down (the killed executor), keeps the rest.
fn restart_hosts() {
    let status = Command::new(repo_root().join("deploy/local/netns.sh"))
        .arg("up")
        .status()
        .unwrap();
    assert!(status.success(), "deploy/local/netns.sh up failed");
}

/// Waits until the run has started a task on exec1 while exec1 has finished none, SIGKILLs
/// exec1 then, and returns when. Only a host with tasks running, none finished, is what
/// Ballista 55 recovers from: it reruns the tasks elsewhere, but it keeps a lost executor's
/// finished final-stage partitions in the job's result (`ExecutionGraph::output_locations` is
/// never pruned), so the client would fetch them from the dead host.
fn kill_exec1_while_it_runs_its_first_task(pid: u32, offset: u64, run: &mut Child) -> (DateTime<Utc>, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let new = log_since("exec1", offset);
        if new.contains("Execute task") {
            assert!(
                !new.contains("Finished task"),
                "exec1 finished a task before its first start was seen:\n{new}"
            );
            let at = Utc::now();
            let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
            assert!(killed.success(), "kill exec1 (pid {pid})");
            return (at, new);
        }
        if let Some(status) = run.try_wait().unwrap() {
            panic!("the run ended ({status}) before exec1 started a task");
        }
        assert!(Instant::now() < deadline, "exec1 started no task within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_across_network_namespaces_equals_the_in_process_run() {
    let url = netns_env("EBROKER_TEST_NETNS");
    let hdfs = netns_env("EBROKER_TEST_HDFS_NETNS");
    let _guard = NETNS.lock().await;
    assert_each_on_its_own_host();
    assert_addresses(&url, &hdfs);
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let reference = local_reference(&input, dir.path()).await;

    let offsets = (log_offset("exec1"), log_offset("exec2"));
    let root = format!("{hdfs}/{}", unique_name("netns_dag"));
    succeeded(&mut cluster_run(&root, &url, &input));
    assert_eq!(
        warehouse_digest(&root).await,
        reference,
        "across the namespaces, on HDFS"
    );

    let logs = (log_since("exec1", offsets.0), log_since("exec2", offsets.1));
    assert!(
        tasks_started(&logs.0) > 0 && tasks_started(&logs.1) > 0,
        "tasks ran on both executor hosts: {} and {}",
        tasks_started(&logs.0),
        tasks_started(&logs.1)
    );
    // The client's local input was uploaded to the warehouse's raw zone on HDFS, and the seven
    // source files were parsed there on the executor hosts, one task each.
    let raw_url = format!("{root}/raw/");
    let parsed_there = [&logs.0, &logs.1]
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains("parsed") && line.contains(&raw_url) && line.contains(".csv"))
        .count();
    assert_eq!(
        parsed_there,
        ebroker::schema::TABLES.len(),
        "one parse task per uploaded source file"
    );
    let state = run_state(&root).await;
    assert_completed(&state);
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_in_the_middle_of_clean_costs_nothing_but_time() {
    let url = netns_env("EBROKER_TEST_NETNS");
    let hdfs = netns_env("EBROKER_TEST_HDFS_NETNS");
    let _guard = NETNS.lock().await;
    let pids = assert_each_on_its_own_host();
    let exec1 = pids[1];
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let reference = local_reference(&input, dir.path()).await;

    let offsets = (log_offset("exec1"), log_offset("exec2"), log_offset("scheduler"));
    let root = format!("{hdfs}/{}", unique_name("netns_kill"));
    let mut run = cluster_run(&root, &url, &input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ebroker starts");
    let (killed_at, exec1_log) = kill_exec1_while_it_runs_its_first_task(exec1, offsets.0, &mut run);
    let out = run.wait_with_output().unwrap();
    restart_hosts();
    assert!(
        out.status.success(),
        "the day completes without exec1: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The kill fell inside clean, and clean succeeded at its first attempt: Ballista, not a
    // retry of the stage, made up for the lost host.
    let state = run_state(&root).await;
    let clean = state.stage("clean").expect("a clean stage");
    assert_eq!(clean.status, Status::Succeeded, "{}", state.render());
    assert_eq!(clean.attempts, 1, "{}", state.render());
    assert!(
        time(clean.started_at.as_deref()) <= killed_at && killed_at <= time(clean.finished_at.as_deref()),
        "killed at {killed_at}, clean ran {:?} .. {:?}",
        clean.started_at,
        clean.finished_at
    );
    assert_completed(&state);
    // The scheduler gave exec1 up and reran its tasks; exec2, in the other namespace, ran them
    // and the rest of the day.
    let scheduler_log = log_since("scheduler", offsets.2);
    assert!(
        scheduler_log.contains("on lost Executor exec1"),
        "the scheduler reset exec1's tasks:\n{scheduler_log}"
    );
    let job = exec1_log
        .split("[TID ")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the job exec1 ran a task of");
    let exec2_log = log_since("exec2", offsets.1);
    assert!(
        exec2_log
            .lines()
            .any(|line| line.contains("Execute task") && line.contains(&format!("[TID {job}/"))),
        "exec2 ran tasks of job {job}, the one exec1 was killed in"
    );
    assert!(tasks_started(&exec2_log) > 1, "exec2 ran the rest of the day");

    assert_eq!(
        warehouse_digest(&root).await,
        reference,
        "with exec1 killed mid-clean, across the namespaces, on HDFS"
    );
}
