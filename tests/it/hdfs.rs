//! The warehouse on a real HDFS (`deploy/local/hdfs.sh`: a MiniDFSCluster with a NameNode and
//! three DataNodes at EBROKER_TEST_HDFS; a Kerberos + HA one, two NameNodes behind
//! `hdfs://minidfs-ns`, at EBROKER_TEST_HDFS_SECURE with its keytab): the whole DAG gives the
//! same warehouse as on local disk — in-process, on the Ballista cluster, and from a keytab on
//! the secure cluster — and Spark 3.5 reads the cleaned tables and marts back from both stores. A missing ticket is an error naming the principal
//! and the fix.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ebroker_integration::{
    ebroker_command, generate_sources, service, succeeded, unique_name, warehouse_digest, PartitionDigest,
};

const DATE: &str = "2024-06-01";

type Digest = BTreeMap<String, PartitionDigest>;

fn run_dag(cmd: &mut Command, input: &Path) {
    succeeded(cmd.args(["run", "--date", DATE, "--input"]).arg(input));
}

/// The DAG into a fresh local warehouse: the reference the HDFS runs are compared with.
async fn local_reference(input: &Path, dir: &Path) -> (String, Digest) {
    let root = dir.join("local").display().to_string();
    run_dag(&mut ebroker_command(&root), input);
    let digest = warehouse_digest(&root).await;
    assert!(
        digest.keys().any(|k| k.starts_with("marts/marketing_analytics_daily")),
        "{digest:?}"
    );
    (root, digest)
}

fn input(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("input");
    generate_sources(&input, 400, 12, 0.03);
    input
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
async fn the_dag_on_hdfs_in_process_and_on_the_cluster_equals_the_local_run() {
    let hdfs = service("EBROKER_TEST_HDFS");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (_, reference) = local_reference(&input, dir.path()).await;

    let in_process = format!("{hdfs}/{}", unique_name("dag"));
    run_dag(&mut ebroker_command(&in_process), &input);
    assert_eq!(warehouse_digest(&in_process).await, reference, "in-process on HDFS");

    // The same run on the Ballista cluster: its executors read and write the HDFS.
    let cluster = service("EBROKER_TEST_CLUSTER");
    let _guard = crate::cluster::CLUSTER.lock().await;
    let on_cluster = format!("{hdfs}/{}", unique_name("dag_cluster"));
    run_dag(ebroker_command(&on_cluster).args(["--cluster", &cluster]), &input);
    assert_eq!(warehouse_digest(&on_cluster).await, reference, "on the cluster on HDFS");
}

/// Environment for the secure cluster with the ticket cache `cache` (empty: no ticket).
fn kerberos_env<'a>(cmd: &'a mut Command, cache: &Path) -> &'a mut Command {
    cmd.env("KRB5CCNAME", format!("FILE:{}", cache.display()))
        .env("KRB5_CONFIG", service("KRB5_CONFIG"))
        .env("HADOOP_CONF_DIR", service("HADOOP_CONF_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
async fn the_dag_on_kerberos_ha_hdfs_runs_from_a_keytab_and_a_missing_ticket_names_the_fix() {
    let secure = service("EBROKER_TEST_HDFS_SECURE");
    let keytab = service("EBROKER_TEST_HDFS_KEYTAB");
    let principal = service("EBROKER_TEST_HDFS_PRINCIPAL");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (_, reference) = local_reference(&input, dir.path()).await;
    let root = format!("{secure}/{}", unique_name("kerberos"));

    // No ticket: an error that names the principal to use and how to get a ticket.
    let empty = dir.path().join("no-ticket");
    let out = kerberos_env(&mut ebroker_command(&root), &empty)
        .env("EBROKER_WAREHOUSE__KERBEROS_PRINCIPAL", &principal)
        .args(["run", "--date", DATE, "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("kinit") && stderr.contains("Kerberos") && stderr.contains(&principal),
        "{stderr}"
    );

    // From the keytab (ebroker's warehouse.kerberos_keytab/principal): the same warehouse.
    let cache = dir.path().join("ticket");
    let mut cmd = ebroker_command(&root);
    kerberos_env(&mut cmd, &cache)
        .env("EBROKER_WAREHOUSE__KERBEROS_KEYTAB", &keytab)
        .env("EBROKER_WAREHOUSE__KERBEROS_PRINCIPAL", &principal);
    run_dag(&mut cmd, &input);
    // The digest reads with the tests' own ticket (deploy/local/test.sh's KRB5CCNAME).
    assert_eq!(warehouse_digest(&root).await, reference, "Kerberos + HA");
}

/// The tables Spark reads back: every cleaned table and the four marts.
fn spark_tables() -> Vec<String> {
    let cleaned = ebroker::schema::TABLES.iter().map(|t| format!("cleaned/{}", t.name));
    let marts = [
        "client_segmentation",
        "marketing_clients",
        "targeted_offers",
        "marketing_analytics_daily",
    ];
    cleaned.chain(marts.iter().map(|m| format!("marts/{m}"))).collect()
}

fn spark_read(root: &str, tables: &[String]) -> serde_json::Value {
    let python = service("EBROKER_TEST_SPARK_PYTHON");
    let script = ebroker_integration::repo_root().join("tests/interop/spark_read.py");
    // The plain cluster needs no client configuration; the combined one asks for Kerberos.
    let out = succeeded(
        Command::new(python)
            .arg(script)
            .arg(root)
            .args(tables)
            .env_remove("HADOOP_CONF_DIR"),
    );
    serde_json::from_slice(&out.stdout).expect("the Spark reader prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
async fn spark_reads_the_cleaned_tables_and_marts_from_hdfs_and_local_disk() {
    let hdfs = service("EBROKER_TEST_HDFS");
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (local, digest) = local_reference(&input, dir.path()).await;
    let on_hdfs = format!("{hdfs}/{}", unique_name("spark"));
    run_dag(&mut ebroker_command(&on_hdfs), &input);

    let tables = spark_tables();
    let local_url = url::Url::from_directory_path(&local).unwrap().to_string();
    let from_local = spark_read(&local_url, &tables);
    let from_hdfs = spark_read(&on_hdfs, &tables);
    for table in &tables {
        let rows: u64 = digest
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{table}/")))
            .map(|(_, d)| d.rows)
            .sum();
        let seen = &from_local[table];
        assert_eq!(seen["rows"], rows, "{table}: Spark's row count on local disk");
        assert_eq!(
            seen["processing_dates"],
            serde_json::json!([DATE]),
            "{table}: Hive partition discovered"
        );
        assert_eq!(&from_hdfs[table], seen, "{table}: the same from HDFS");
    }
}
