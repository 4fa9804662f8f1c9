//! Shared fixtures of the integration tests: a throw-away warehouse with an in-process
//! engine, hand-made source files, and query helpers that turn results into strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ebroker::config::Config;
use ebroker::engine::Engine;
use ebroker::runner::{RunState, Status};
use ebroker::sql::SqlLibrary;
use ebroker::stages::clean::{clean_csv_dir, CleanReport};
use ebroker::stages::StageContext;
use ebroker::warehouse::Warehouse;
use ebroker::ProcessingDate;

/// A warehouse in a temporary directory, with the engine and SQL to run jobs against it.
pub struct TestWarehouse {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub engine: Engine,
    pub warehouse: Warehouse,
    pub sql: SqlLibrary,
}

impl TestWarehouse {
    pub fn new() -> Self {
        Self::with_sql_dir(None)
    }

    /// A warehouse whose SQL files are overridden from `sql_dir`.
    pub fn with_sql_dir(sql_dir: Option<PathBuf>) -> Self {
        Self::build(sql_dir, Vec::new())
    }

    /// A warehouse with extra configuration (`section.key`, TOML value) on top of the defaults.
    pub fn with_settings(extra: Vec<(String, String)>) -> Self {
        Self::build(None, extra)
    }

    /// A warehouse whose jobs run on the Ballista cluster at `url`.
    pub async fn on_cluster(url: &str) -> Self {
        Self::on_cluster_with(url, Vec::new()).await
    }

    /// [`Self::on_cluster`] with extra configuration.
    pub async fn on_cluster_with(url: &str, mut extra: Vec<(String, String)>) -> Self {
        extra.extend([
            ("cluster.url".into(), format!("{url:?}")),
            ("cluster.query_timeout_secs".into(), "60".into()),
            ("run.retries".into(), "0".into()),
        ]);
        let mut wh = Self::build(None, extra);
        wh.engine = Engine::connect(&wh.config).await.expect("cluster engine connects");
        wh
    }

    fn build(sql_dir: Option<PathBuf>, extra: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("warehouse");
        let overrides = vec![
            (
                "warehouse.root".to_string(),
                format!("{:?}", root.display().to_string()),
            ),
            (
                "engine.spill_dir".to_string(),
                format!("{:?}", dir.path().join("spill").display().to_string()),
            ),
        ];
        let sql_override = sql_dir
            .iter()
            .map(|d| ("sql.dir".to_string(), format!("{:?}", d.display().to_string())));
        let overrides: Vec<_> = overrides.into_iter().chain(sql_override).chain(extra).collect();
        let config = Config::load_from(None, &[], &overrides).expect("test configuration loads");
        let engine = Engine::in_process(&config).expect("engine starts");
        // (`on_cluster` replaces this engine with the cluster one.)
        let warehouse = Warehouse::open(&config.warehouse, engine.registry().as_ref()).expect("warehouse opens");
        TestWarehouse {
            dir,
            config,
            engine,
            warehouse,
            sql: SqlLibrary::new(sql_dir),
        }
    }

    /// Cleans the CSV files in `input` as processing date `date` with this warehouse's
    /// engine, SQL and clean settings.
    pub async fn clean_csv(&self, input: &std::path::Path, date: &str) -> ebroker::Result<CleanReport> {
        clean_csv_dir(
            &self.engine,
            &self.warehouse,
            &self.sql,
            &self.config.clean,
            input,
            day(date),
        )
        .await
    }

    /// A directory for source files.
    pub fn input_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Runs `sql` and returns each row as strings (NULL as "NULL").
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let batches = self.engine.collect(sql, "test query").await.expect("test query runs");
        to_strings(&batches)
    }

    /// Runs `sql` whose first column is a key and returns key -> the rest of the row.
    pub async fn keyed(&self, sql: &str) -> BTreeMap<String, Vec<String>> {
        self.rows(sql).await.into_iter().map(|mut r| (r.remove(0), r)).collect()
    }
}

impl Default for TestWarehouse {
    fn default() -> Self {
        Self::new()
    }
}

/// The processing date `text` (a test's constant).
pub fn day(text: &str) -> ProcessingDate {
    ProcessingDate::parse(text).expect("test dates are valid")
}

/// What a test asks `ebroker run` to do: the date, the sources (or the generator's settings),
/// and whether to resume.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub date: chrono::NaiveDate,
    pub input: Option<PathBuf>,
    pub clients: u64,
    pub seed: u64,
    pub dirty: f64,
    pub resume: bool,
}

/// Runs the DAG as `ebroker run` does with these flags, on `engine` (in-process or a cluster).
pub async fn run(
    config: &Config,
    engine: &Engine,
    _warehouse: &Warehouse,
    _sql: &SqlLibrary,
    options: &RunOptions,
) -> ebroker::Result<RunState> {
    let mut config = config.clone();
    config.generate.clients = options.clients;
    config.generate.seed = options.seed;
    config.generate.dirty = options.dirty;
    let date = ProcessingDate::from_date(options.date)?;
    let mut ctx = StageContext::with_engine(config, engine.clone(), date)?;
    let run_options = ebroker::runner::RunOptions {
        input: options.input.clone(),
        resume: options.resume,
    };
    ebroker::runner::run(&mut ctx, &run_options).await
}

/// Formats batches as rows of strings.
pub fn to_strings(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    rows
}

/// Hand-made source files: lines (without header) per table, written as the seven CSVs.
#[derive(Default)]
pub struct Sources {
    lines: BTreeMap<&'static str, Vec<String>>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a raw CSV line to `table`.
    pub fn line(&mut self, table: &'static str, line: impl Into<String>) -> &mut Self {
        self.lines.entry(table).or_default().push(line.into());
        self
    }

    /// A clean client registered on 2020-01-01.
    pub fn client(&mut self, id: &str) -> &mut Self {
        self.line(
            "clients",
            format!("{id},Иванов Иван Иванович,79160000000,i@mail.ru,1980-01-01,2020-01-01,Москва,Basic,Active"),
        )
    }

    /// A rouble transaction of `amount` on 2024-05-01.
    pub fn transaction(&mut self, client: &str, amount: &str) -> &mut Self {
        let n = self.count("bank_transactions");
        self.line(
            "bank_transactions",
            format!("TXN_{client}_{n},{client},2024-05-01,{amount},RUB,Debit,ATM"),
        )
    }

    pub fn logins(&mut self, client: &str, n: usize) -> &mut Self {
        for _ in 0..n {
            let k = self.count("client_logins");
            self.line(
                "client_logins",
                format!("LOGIN_{client}_{k},{client},2024-05-01 10:00:00,10.0.0.1,Desktop,Chrome,True"),
            );
        }
        self
    }

    pub fn activities(&mut self, client: &str, n: usize) -> &mut Self {
        for _ in 0..n {
            let k = self.count("client_activities");
            self.line(
                "client_activities",
                format!("ACT_{client}_{k},{client},2024-05-01,Login,5,2"),
            );
        }
        self
    }

    /// A position worth `quantity * price`.
    pub fn position(&mut self, client: &str, quantity: u32, price: &str) -> &mut Self {
        let k = self.count("securities_portfolios");
        self.line(
            "securities_portfolios",
            format!("PORT_{client}_{k},{client},Stock,Газпром ао,{quantity},{price},{price},2024-01-01"),
        )
    }

    fn count(&self, table: &str) -> usize {
        self.lines.get(table).map_or(0, Vec::len)
    }

    /// Writes the seven CSV files (with headers) into `dir`.
    pub fn write(&self, dir: &Path) {
        for table in ebroker::schema::TABLES {
            let mut text = table.header();
            text.push('\n');
            for line in self.lines.get(table.name).into_iter().flatten() {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(dir.join(table.file_name()), text).unwrap();
        }
    }
}

/// A service address the test suite needs, from the environment. Fails loudly when it is
/// not set: `deploy/local/test.sh` starts the services and sets these variables.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with deploy/local/test.sh, which starts the services")
    })
}

/// The repository root (for the deploy/local scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// A name no other test (or earlier run against the same service) uses: `prefix_<pid>_<n>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings that point the jobs at the test Kafka broker (`EBROKER_TEST_KAFKA`), with topics
/// and consumer group of their own.
pub fn kafka_settings(prefix: &str) -> Vec<(String, String)> {
    vec![
        ("kafka.brokers".into(), format!("{:?}", service("EBROKER_TEST_KAFKA"))),
        ("kafka.topic_prefix".into(), format!("{:?}", format!("{prefix}_"))),
        ("kafka.group_id".into(), format!("{:?}", format!("{prefix}_group"))),
        ("kafka.request_timeout_ms".into(), "10000".into()),
        ("kafka.partitions".into(), "4".into()),
    ]
}

/// The `ebroker` binary built beside this test binary (`cargo test --workspace` builds it).
pub fn ebroker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = dir.join("ebroker");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p ebroker` (deploy/local/test.sh does)",
        bin.display()
    );
    bin
}

/// The `ebroker` binary on the warehouse `root`, with two partitions and no inherited log
/// filter or fault hook: what the tests that drive the binary as an operator start from.
pub fn ebroker_command(root: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(ebroker_binary());
    cmd.arg("--warehouse")
        .arg(root)
        .env_remove("RUST_LOG")
        .env_remove("EBROKER_FAIL_COMMIT_STEP")
        .env("EBROKER_ENGINE__TARGET_PARTITIONS", "2");
    cmd
}

/// Runs `cmd` and fails the test with its stderr unless it exits 0.
pub fn succeeded(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("ebroker starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Generates `clients` clients' dirty sources into `dir`.
pub fn generate_sources(dir: &Path, clients: u64, seed: u64, dirty: f64) -> u64 {
    let options = ebroker::stages::generate::GenerateOptions {
        clients,
        seed,
        dirty,
        anchor: chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        out: dir.to_path_buf(),
    };
    ebroker::stages::generate::generate(&options).expect("generate").rows()
}

/// Settings that point `publish greenplum` at the test PostgreSQL (`EBROKER_TEST_POSTGRES`,
/// host:port, user postgres) in a schema of its own, flavour `postgres`.
pub fn postgres_settings(schema: &str) -> Vec<(String, String)> {
    let address = service("EBROKER_TEST_POSTGRES");
    let (host, port) = address.rsplit_once(':').expect("EBROKER_TEST_POSTGRES is host:port");
    vec![
        ("greenplum.host".into(), format!("{host:?}")),
        ("greenplum.port".into(), port.to_string()),
        ("greenplum.user".into(), "\"postgres\"".into()),
        ("greenplum.database".into(), "\"postgres\"".into()),
        ("greenplum.schema".into(), format!("{schema:?}")),
        ("greenplum.flavour".into(), "\"postgres\"".into()),
        ("greenplum.sslmode".into(), "\"disable\"".into()),
    ]
}

/// Settings that point ClickHouse publishing at the test server (`EBROKER_TEST_CLICKHOUSE`,
/// an HTTP URL) in a database of its own, with quick retries.
pub fn clickhouse_settings(database: &str) -> Vec<(String, String)> {
    vec![
        (
            "clickhouse.url".into(),
            format!("{:?}", service("EBROKER_TEST_CLICKHOUSE")),
        ),
        ("clickhouse.database".into(), format!("{database:?}")),
        ("clickhouse.retries".into(), "2".into()),
        ("clickhouse.retry_backoff_ms".into(), "200".into()),
        ("clickhouse.batch_rows".into(), "10000".into()),
    ]
}

/// Rows and an order-independent content checksum of one partition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionDigest {
    pub rows: u64,
    pub checksum: u64,
}

/// Every partition directory of the zones readers see (`raw`, `quarantine`, `cleaned`,
/// `marts`) under the warehouse `root` (a path or URL), with its rows and content checksum:
/// two warehouses are equal for readers when their digests are. Files are read with the
/// store's own reader, so the same function checks local disk and HDFS.
#[allow(deprecated)] // ParquetObjectReader: still the reader DataFusion 55 uses itself
pub async fn warehouse_digest(root: &str) -> BTreeMap<String, PartitionDigest> {
    use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    use futures::TryStreamExt;
    use std::hash::{Hash, Hasher};

    let config = ebroker::config::WarehouseConfig::at(root);
    let warehouse = Warehouse::open(&config, &ebroker::warehouse::StoreRegistry::new()).expect("warehouse opens");
    let mut digests = BTreeMap::new();
    for zone in ["raw/", "quarantine/", "cleaned/", "marts/"] {
        for file in warehouse.list_files(zone).await.expect("warehouse lists") {
            let path = file.to_string();
            if !path.ends_with(".parquet") {
                continue;
            }
            let relative: Vec<String> = file
                .prefix_match(&warehouse.path(""))
                .expect("listed below the root")
                .map(|part| part.as_ref().to_string())
                .collect();
            let partition = relative[..relative.len() - 1].join("/");
            let reader = ParquetObjectReader::new(std::sync::Arc::clone(warehouse.store()), file);
            let batches: Vec<RecordBatch> = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .and_then(|b| b.build())
                .expect("parquet opens")
                .try_collect()
                .await
                .expect("parquet reads");
            let entry = digests
                .entry(partition)
                .or_insert(PartitionDigest { rows: 0, checksum: 0 });
            for row in to_strings(&batches) {
                let mut hasher = std::hash::DefaultHasher::new();
                row.hash(&mut hasher);
                entry.rows += 1;
                entry.checksum = entry.checksum.wrapping_add(hasher.finish());
            }
        }
    }
    digests
}

/// A child process killed when the test ends.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ebroker serve` on `port` with `args` (flags of serve, or `--set` pairs), once it listens;
/// its /metrics endpoint is off unless `args` set `serve.metrics_port`.
pub async fn start_server(wh: &TestWarehouse, port: u16, args: &[&str]) -> Server {
    let child = std::process::Command::new(ebroker_binary())
        .args([
            "--warehouse",
            &wh.config.warehouse.root,
            "serve",
            "--port",
            &port.to_string(),
        ])
        .args(args)
        .env_remove("EBROKER_SERVE__TOKEN")
        .env("EBROKER_SERVE__METRICS_PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "ebroker serve did not listen on {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server
}

/// Fails the test unless every stage of the run succeeded or was skipped, showing the run.
pub fn assert_completed(state: &RunState) {
    assert!(
        state
            .stages
            .iter()
            .all(|s| matches!(s.status, Status::Succeeded | Status::Skipped)),
        "{}",
        state.render()
    );
}
