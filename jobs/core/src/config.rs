//! Configuration: documented serde structs, layered embedded defaults -> config file ->
//! `EBROKER_<SECTION>__<KEY>` environment -> command-line overrides, with unknown keys
//! rejected and every value checked by [`Config::validate`] before a job sees it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The defaults compiled into the binary (`jobs/core/config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_FILE: &str = "ebroker.toml";

/// Environment variables with this prefix override keys: `EBROKER_ENGINE__MEMORY_LIMIT=2GiB`.
pub const ENV_PREFIX: &str = "EBROKER_";

/// The whole effective configuration. Its `Debug` is the masked TOML (no secret printed).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub warehouse: WarehouseConfig,
    pub engine: EngineConfig,
    pub cluster: ClusterConfig,
    pub generate: GenerateConfig,
    pub run: RunConfig,
    pub clean: CleanConfig,
    pub sql: SqlConfig,
    pub kafka: KafkaConfig,
    pub greenplum: GreenplumConfig,
    pub clickhouse: ClickHouseConfig,
    pub serve: ServeConfig,
}

/// The Flight SQL endpoint of `ebroker serve`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on; 127.0.0.1 keeps it on this machine.
    pub host: String,
    pub port: u16,
    /// Bearer token clients must send; empty = no authentication, which only a loopback
    /// `host` may run without. Masked by `config show`.
    pub token: String,
    /// File whose content (trimmed) is the token; when set it replaces `token`. Empty = none.
    pub token_file: String,
    /// PEM file of the server's certificate (chain); with `tls_key`, clients connect over TLS.
    /// Both empty = plaintext.
    pub tls_cert: String,
    /// PEM file of the private key of `tls_cert`.
    pub tls_key: String,
    /// Upper bound on one query, in seconds (1 to 86400).
    pub query_timeout_secs: u64,
    /// Memory budget of one query, with a unit (`256MiB`, `1GiB`); in-process only.
    pub query_memory_limit: String,
    /// Queries that may run at once (1 to 1024); one more is refused.
    pub max_concurrent_queries: usize,
    /// Port of the plain-HTTP `/metrics` endpoint (the run history in Prometheus' text format)
    /// on `host`, behind the same token; 0 = none.
    pub metrics_port: u16,
}

impl ServeConfig {
    /// The memory budget of one query in bytes.
    pub fn query_memory_limit_bytes(&self) -> Result<usize> {
        parse_byte_size(&self.query_memory_limit)
            .filter(|bytes| *bytes > 0)
            .ok_or_else(|| {
                Error::Config(format!(
                    "serve.query_memory_limit = {:?} is not a size; write it like 256MiB, 1GiB or 268435456",
                    self.query_memory_limit
                ))
            })
    }

    fn validate(&self) -> Result<()> {
        if self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Config(format!(
                "serve.host = {:?} is not an IP address; use 127.0.0.1, or 0.0.0.0 for every interface",
                self.host
            )));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(Error::Config(format!(
                "serve.tls_cert = {:?} and serve.tls_key = {:?}: TLS needs both PEM files (or neither, for plaintext)",
                self.tls_cert, self.tls_key
            )));
        }
        if !(1..=86_400).contains(&self.query_timeout_secs) {
            return Err(Error::Config(format!(
                "serve.query_timeout_secs = {} is outside 1..86400; use e.g. 300",
                self.query_timeout_secs
            )));
        }
        if self.metrics_port != 0 && self.metrics_port == self.port {
            return Err(Error::Config(format!(
                "serve.metrics_port = {} is serve.port too; give /metrics a port of its own (e.g. 50071) or 0 for none",
                self.metrics_port
            )));
        }
        if !(1..=1024).contains(&self.max_concurrent_queries) {
            return Err(Error::Config(format!(
                "serve.max_concurrent_queries = {} is outside 1..1024; use e.g. 4",
                self.max_concurrent_queries
            )));
        }
        self.query_memory_limit_bytes().map(|_| ())
    }
}

/// How records are read before cleaning (docs/SPEC.md §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    /// The longest record (CSV line or Kafka message value) parsed, in bytes; a longer one is
    /// quarantined as `record too long`. 1 KiB to 256 MiB.
    pub max_record_bytes: usize,
    /// Source CSV files are parsed in byte-range splits of this size, one task each (Hadoop's
    /// TextInputFormat rule), so a large file is parsed on many cores and executors. 1 KiB to
    /// 1 TiB.
    pub split_bytes: u64,
    /// How many tables are deduplicated at once, 1 to 7; 0 (the default) means two: a table's
    /// deduplication runs on one partition (one core), so two keep a small machine busy, and
    /// each holds its pass's ids and (on a bucketed day) one open writer per bucket in the
    /// memory budget (`engine.memory_limit`).
    pub tables_at_once: usize,
    /// A bucketed day deduplicates its tables in passes of about this many parsed rows, so
    /// that the ids a pass hashes fit in memory instead of spilling: the parse writes each row
    /// into the pass of a hash of its id, and a pass holds every copy of its ids. A table
    /// expected to hold more rows is split into ceil(rows / dedup_pass_rows) passes; a day of
    /// one client bucket takes one pass. At least 1,000.
    pub dedup_pass_rows: u64,
}

impl CleanConfig {
    /// The deduplication passes of a table expected to hold `rows` parsed rows.
    pub fn dedup_passes(&self, rows: u64) -> u32 {
        u32::try_from(rows.div_ceil(self.dedup_pass_rows.max(1)).max(1)).unwrap_or(u32::MAX)
    }

    /// The tables deduplicated at once.
    pub fn tables_at_once(&self) -> usize {
        match self.tables_at_once {
            0 => 2,
            n => n,
        }
    }
}

/// Where the warehouse lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// Path or URL of the warehouse root.
    pub root: String,
    /// Clients per bucket of the cleaned tables: a day of N clients is written as
    /// ceil(N / clients_per_bucket) files per table, and segmentation runs bucket by bucket.
    pub clients_per_bucket: u64,
    /// Kerberos principal of an `hdfs://` warehouse on a secured cluster (e.g.
    /// `etl/host@BANK.RU`): named in errors about a missing ticket; with `kerberos_keytab`,
    /// ebroker gets its own ticket (`kinit -kt`) into the cache `KRB5CCNAME` names.
    #[serde(default)]
    pub kerberos_principal: String,
    /// Keytab of `kerberos_principal`; empty = use the ticket already in the cache.
    #[serde(default)]
    pub kerberos_keytab: String,
}

impl WarehouseConfig {
    /// A warehouse at `root` with the default bucket size and no Kerberos settings.
    pub fn at(root: &str) -> WarehouseConfig {
        WarehouseConfig {
            root: root.to_string(),
            clients_per_bucket: 500_000,
            kerberos_principal: String::new(),
            kerberos_keytab: String::new(),
        }
    }
}

/// How queries run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Partitions per query; 0 = number of CPU cores.
    pub target_partitions: usize,
    /// Memory budget of the query engine, with a unit (`512MiB`, `2GiB`).
    pub memory_limit: String,
    /// Spill directory; empty = system temporary directory.
    pub spill_dir: String,
    /// Rows per record batch.
    pub batch_size: usize,
}

/// Where queries run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Empty for in-process, or `df://host:port` of a Ballista scheduler.
    pub url: String,
    /// Upper bound on one cluster query, in seconds; 0 = none.
    pub query_timeout_secs: u64,
}

impl ClusterConfig {
    /// The scheduler's REST API base (`http://host:port`), when a cluster is configured.
    pub fn rest_base(&self) -> Option<String> {
        self.url
            .strip_prefix("df://")
            .map(|hostport| format!("http://{}", hostport.trim_end_matches('/')))
    }
}

/// Defaults of the synthetic generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    pub clients: u64,
    pub seed: u64,
    pub dirty: f64,
}

/// How the DAG runner behaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// Seconds without a heartbeat after which another process takes over a date's lease
    /// (docs/DESIGN.md, "One writer per date"); the holder renews it every third of that.
    pub lease_seconds: u64,
}

/// Where SQL overrides live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    pub dir: String,
}

impl SqlConfig {
    /// The directory whose files override the built-in SQL, if one is configured.
    pub fn override_dir(&self) -> Option<PathBuf> {
        (!self.dir.is_empty()).then(|| PathBuf::from(&self.dir))
    }
}

/// The Kafka cluster the seven topics live on (SPEC §2, §3 produce and ingest).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`; empty = Kafka is not used.
    pub brokers: String,
    /// Prefix of the seven topic names (`HA_` gives `HA_clients`, ...).
    pub topic_prefix: String,
    /// Consumer group whose committed offsets mark what ingest has dumped.
    pub group_id: String,
    /// Partitions of the topics `produce` creates when they do not exist.
    pub partitions: i32,
    /// Replication factor of the topics `produce` creates.
    pub replication_factor: i32,
    /// Timeout of metadata, watermark and commit requests, in milliseconds.
    pub request_timeout_ms: u64,
    /// Extra librdkafka properties for every client (security.protocol, sasl.*, ssl.*).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Whether a Kafka cluster is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    fn validate(&self) -> Result<()> {
        let prefix_ok = self
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !prefix_ok || self.topic_prefix.len() > 200 {
            return Err(Error::Config(format!(
                "kafka.topic_prefix = {:?} may hold only letters, digits, '.', '_' and '-' (e.g. \"HA_\")",
                self.topic_prefix
            )));
        }
        if self.group_id.trim().is_empty() {
            return Err(Error::Config(
                "kafka.group_id is empty; name the consumer group, e.g. \"ebroker-ingest\"".into(),
            ));
        }
        if self.partitions < 1 || self.replication_factor < 1 {
            return Err(Error::Config(format!(
                "kafka.partitions = {} and kafka.replication_factor = {} must both be at least 1",
                self.partitions, self.replication_factor
            )));
        }
        if self.request_timeout_ms == 0 {
            return Err(Error::Config("kafka.request_timeout_ms = 0; use e.g. 30000".into()));
        }
        Ok(())
    }
}

/// How `publish greenplum` loads the warehouse into Greenplum (or PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GreenplumFlavour {
    /// Greenplum with PXF: external tables over the Parquet, append-optimized tables.
    Greenplum,
    /// PostgreSQL protocol without PXF: plain tables loaded by binary COPY.
    Postgres,
}

/// The Greenplum (or PostgreSQL) target of SPEC §7.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreenplumConfig {
    /// Host; empty = no Greenplum target. Also read from GPHOST.
    pub host: String,
    /// Port (GPPORT).
    pub port: u16,
    /// User (GPUSER).
    pub user: String,
    /// Password (GPPASSWORD); never logged.
    pub password: String,
    /// A file holding the password (first line), read instead of `password` when set.
    pub password_file: String,
    /// Database (GPDATABASE).
    pub database: String,
    /// Schema the tables live in (a plain identifier).
    pub schema: String,
    /// `greenplum` (PXF external tables) or `postgres` (binary COPY).
    pub flavour: GreenplumFlavour,
    /// TLS: disable, prefer, require, verify-ca or verify-full.
    pub sslmode: String,
    /// PXF server name used in the external tables' LOCATION.
    pub pxf_server: String,
    /// The warehouse root as PXF sees it (a path on PXF's default filesystem); empty = the
    /// path of warehouse.root.
    pub pxf_root: String,
}

impl GreenplumConfig {
    /// Whether a Greenplum target is configured.
    pub fn enabled(&self) -> bool {
        !self.host.trim().is_empty()
    }

    fn validate(&self) -> Result<()> {
        if !is_plain_identifier(&self.schema) {
            return Err(Error::Config(format!(
                "greenplum.schema = {:?} is not a plain SQL identifier; use lower-case letters, digits and _ (starting with a letter or _), at most 63 characters",
                self.schema
            )));
        }
        if !["disable", "prefer", "require", "verify-ca", "verify-full"].contains(&self.sslmode.as_str()) {
            return Err(Error::Config(format!(
                "greenplum.sslmode = {:?} is not one of disable, prefer, require, verify-ca, verify-full",
                self.sslmode
            )));
        }
        if self.pxf_server.is_empty()
            || !self
                .pxf_server
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(Error::Config(format!(
                "greenplum.pxf_server = {:?} must be a PXF server name such as \"default\"",
                self.pxf_server
            )));
        }
        if self.pxf_root.contains(['\'', '?', '&']) {
            return Err(Error::Config(format!(
                "greenplum.pxf_root = {:?} may not contain quotes, '?' or '&'",
                self.pxf_root
            )));
        }
        Ok(())
    }
}

/// The ClickHouse target of SPEC §8 (marketing marts, daily analytics, reports).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint (`http://host:8123`, or `https://` for TLS); empty = no ClickHouse target.
    pub url: String,
    pub user: String,
    /// Never logged; masked by `ebroker config show`.
    pub password: String,
    /// A file holding the password (first line), read instead of `password` when set.
    pub password_file: String,
    /// Database of the tables (a plain identifier).
    pub database: String,
    /// Rows per INSERT (10,000 to 1,000,000).
    pub batch_rows: usize,
    /// Attempts per table before a publish gives up.
    pub retries: u32,
    /// Wait before the first retry, doubled on each further one.
    pub retry_backoff_ms: u64,
}

impl ClickHouseConfig {
    /// Whether a ClickHouse target is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    fn validate(&self) -> Result<()> {
        if url::Url::parse(&self.url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
            return Err(Error::Config(format!(
                "clickhouse.url = {:?} holds credentials, which would reach logs and process listings; remove them and set clickhouse.user and clickhouse.password_file (or EBROKER_CLICKHOUSE__PASSWORD)",
                crate::secrets::redact_urls(&self.url)
            )));
        }
        if self.enabled() && !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "clickhouse.url = {:?} is not an HTTP endpoint; use http://host:8123 (or https:// for TLS)",
                crate::secrets::redact_urls(&self.url)
            )));
        }
        if !is_plain_identifier(&self.database) {
            return Err(Error::Config(format!(
                "clickhouse.database = {:?} is not a plain identifier; use lower-case letters, digits and _",
                self.database
            )));
        }
        if !(10_000..=1_000_000).contains(&self.batch_rows) {
            return Err(Error::Config(format!(
                "clickhouse.batch_rows = {} is outside 10000..1000000",
                self.batch_rows
            )));
        }
        Ok(())
    }
}

/// Whether `name` is safe to use as an unquoted SQL identifier (and is then also quoted).
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// The existing deployment's connection variables, mapped onto `greenplum.*`.
const GREENPLUM_ENV: [(&str, &str); 5] = [
    ("GPHOST", "host"),
    ("GPPORT", "port"),
    ("GPUSER", "user"),
    ("GPPASSWORD", "password"),
    ("GPDATABASE", "database"),
];

impl Config {
    /// Loads the layered configuration. `file` is an explicit `--config` (which must exist);
    /// without it `./ebroker.toml` is read when present. `overrides` are `section.key=value`
    /// pairs from the command line, applied last.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, overrides)
    }

    /// [`Config::load`] with the environment given explicitly (for tests).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)], overrides: &[(String, String)]) -> Result<Config> {
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_TOML).map_err(|e| Error::Config(format!("embedded defaults do not parse: {e}")))?;
        if let Some(layer) = read_file_layer(file)? {
            merge(&mut merged, layer);
        }
        for (name, value) in env {
            if let Some((_, key)) = GREENPLUM_ENV.iter().find(|(var, _)| var == name) {
                let raw = if *key == "port" {
                    value.clone()
                } else {
                    format!("{value:?}")
                };
                set_dotted(
                    &mut merged,
                    &format!("greenplum.{key}"),
                    &raw,
                    &format!("environment variable {name}"),
                )?;
            }
        }
        for (name, value) in env {
            // Only EBROKER_<SECTION>__<KEY> names are settings; other EBROKER_* variables
            // belong to scripts and tests.
            if let Some(key) = name.strip_prefix(ENV_PREFIX).filter(|k| k.contains("__")) {
                let dotted = key.to_ascii_lowercase().replacen("__", ".", 1);
                set_dotted(&mut merged, &dotted, value, &format!("environment variable {name}"))?;
            }
        }
        for (key, value) in overrides {
            set_dotted(&mut merged, key, value, &format!("flag `{key}`"))?;
        }
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| Error::Config(format!("{e} (see `ebroker config show` for the known keys)")))?;
        config.read_password_files()?;
        config.validate()?;
        Ok(config)
    }

    fn read_password_files(&mut self) -> Result<()> {
        let gp = &mut self.greenplum;
        read_secret_file("greenplum.password_file", &gp.password_file, &mut gp.password)?;
        let ch = &mut self.clickhouse;
        read_secret_file("clickhouse.password_file", &ch.password_file, &mut ch.password)
    }

    /// Checks every value; the message names the key, the bad value and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.warehouse.root.trim().is_empty() {
            return Err(Error::Config(
                "warehouse.root is empty; set it to a path or URL such as ./warehouse".into(),
            ));
        }
        if url::Url::parse(&self.warehouse.root).is_ok_and(|u| u.password().is_some()) {
            return Err(Error::Config(format!(
                "warehouse.root = {:?} holds a password, which would reach logs; give the store's credentials in its environment (e.g. AWS_SECRET_ACCESS_KEY, a Kerberos ticket) instead",
                crate::secrets::redact_urls(&self.warehouse.root)
            )));
        }
        if !self.warehouse.kerberos_keytab.is_empty() && self.warehouse.kerberos_principal.is_empty() {
            return Err(Error::Config(format!(
                "warehouse.kerberos_keytab = {:?} is set without warehouse.kerberos_principal; set the principal the keytab holds, e.g. etl/host@BANK.RU",
                self.warehouse.kerberos_keytab
            )));
        }
        if self.warehouse.clients_per_bucket == 0 {
            return Err(Error::Config(
                "warehouse.clients_per_bucket = 0; use a positive number such as 500000".into(),
            ));
        }
        let cluster = &self.cluster.url;
        let valid_url = cluster
            .strip_prefix("df://")
            .is_some_and(|rest| rest.contains(':') && !rest.contains('/'));
        if !cluster.is_empty() && !valid_url {
            return Err(Error::Config(format!(
                "cluster.url = {cluster:?} is not a Ballista scheduler URL; use df://host:50050, or leave it empty to run in-process"
            )));
        }
        self.memory_limit_bytes()?;
        if self.run.lease_seconds < 3 {
            return Err(Error::Config(format!(
                "run.lease_seconds = {} is too short for a heartbeat; use at least 3, e.g. 60",
                self.run.lease_seconds
            )));
        }
        if self.engine.batch_size == 0 {
            return Err(Error::Config(
                "engine.batch_size = 0; use a positive number such as 8192".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.generate.dirty) {
            return Err(Error::Config(format!(
                "generate.dirty = {} is not a fraction; use a value between 0 and 1",
                self.generate.dirty
            )));
        }
        if self.generate.clients == 0 {
            return Err(Error::Config(
                "generate.clients = 0; generate at least one client".into(),
            ));
        }
        if !(1 << 10..=256 << 20).contains(&self.clean.max_record_bytes) {
            return Err(Error::Config(format!(
                "clean.max_record_bytes = {} is out of range; use 1024 to 268435456 (the default is 1048576, 1 MiB)",
                self.clean.max_record_bytes
            )));
        }
        if !(1 << 10..=1 << 40).contains(&self.clean.split_bytes) {
            return Err(Error::Config(format!(
                "clean.split_bytes = {} is out of range; use 1024 to 1099511627776 (the default is 67108864, 64 MiB)",
                self.clean.split_bytes
            )));
        }
        if self.clean.dedup_pass_rows < 1_000 {
            return Err(Error::Config(format!(
                "clean.dedup_pass_rows = {} is too small; use at least 1000 (the default is 1000000: a million ids hash in memory within engine.memory_limit = 512MiB)",
                self.clean.dedup_pass_rows
            )));
        }
        if self.clean.tables_at_once > 7 {
            return Err(Error::Config(format!(
                "clean.tables_at_once = {} is out of range; use 1 to 7, or 0 for two (the default)",
                self.clean.tables_at_once
            )));
        }
        self.kafka.validate()?;
        self.greenplum.validate()?;
        self.clickhouse.validate()?;
        self.serve.validate()?;
        Ok(())
    }

    /// The engine memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> Result<usize> {
        parse_byte_size(&self.engine.memory_limit).ok_or_else(|| {
            Error::Config(format!(
                "engine.memory_limit = {:?} is not a size; write it like 512MiB, 2GiB or 1073741824",
                self.engine.memory_limit
            ))
        })
    }

    /// The number of partitions queries use.
    pub fn target_partitions(&self) -> usize {
        match self.engine.target_partitions {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }

    /// The spill directory, if one was configured.
    pub fn spill_dir(&self) -> Option<PathBuf> {
        (!self.engine.spill_dir.is_empty()).then(|| PathBuf::from(&self.engine.spill_dir))
    }

    /// The effective configuration as TOML, with secrets replaced by `****`.
    pub fn to_masked_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("config serialises to TOML");
        crate::secrets::mask_toml(&mut value);
        toml::to_string_pretty(&value).expect("config serialises to TOML")
    }
}

/// Replaces `secret` by the first line of `file` (trimmed) when `file` (the value of `key`) is set, so
/// that secrets need not be in argv, the environment or a config file.
pub fn read_secret_file(key: &str, file: &str, secret: &mut String) -> Result<()> {
    if file.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::Config(format!(
            "{key} = {file:?} cannot be read ({e}); point it at a readable file holding only the secret"
        ))
    })?;
    let value = text.lines().next().unwrap_or_default().trim();
    if value.is_empty() {
        return Err(Error::Config(format!(
            "{key} = {file:?} is empty; write the secret on its first line"
        )));
    }
    *secret = value.to_string();
    Ok(())
}

/// `Debug` as the masked TOML of the value: configuration never prints a secret.
macro_rules! debug_as_masked_toml {
    ($($section:ty),*) => {$(
        impl std::fmt::Debug for $section {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&crate::secrets::masked_toml(self))
            }
        }
    )*};
}

debug_as_masked_toml!(Config, KafkaConfig, GreenplumConfig, ClickHouseConfig, ServeConfig);

fn read_file_layer(file: Option<&Path>) -> Result<Option<toml::Table>> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).exists() => PathBuf::from(DEFAULT_FILE),
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let table =
        toml::from_str(&text).map_err(|e| Error::Config(format!("{} is not valid TOML: {e}", path.display())))?;
    Ok(Some(table))
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Sets `section.key` to `raw`, typed like TOML (`2`, `true`, `0.5`) or else as a string.
/// A secret (a password or token, see [`crate::secrets`]) is always taken as the string it
/// is: `12345` stays `"12345"`, and its value never appears in a type error.
fn set_dotted(table: &mut toml::Table, dotted: &str, raw: &str, origin: &str) -> Result<()> {
    let (section, key) = dotted.split_once('.').ok_or_else(|| {
        Error::Config(format!(
            "{origin}: `{dotted}` is not section.key (e.g. engine.memory_limit)"
        ))
    })?;
    let typed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    let value = match crate::secrets::is_secret_key(key) {
        // A quoted secret is the string inside the quotes; anything else is taken as written.
        true => typed().filter(toml::Value::is_str),
        false => typed(),
    }
    .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let section_table = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match section_table {
        toml::Value::Table(t) => {
            t.insert(key.to_string(), value);
            Ok(())
        }
        _ => Err(Error::Config(format!("{origin}: `{section}` is not a section"))),
    }
}

/// Parses `512MiB`, `2GiB`, `100MB`, `1024` into bytes.
pub fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.toml");
        std::fs::write(&file, "[engine]\nmemory_limit = \"2GiB\"\nbatch_size = 100\n").unwrap();
        let env = vec![("EBROKER_ENGINE__BATCH_SIZE".to_string(), "200".to_string())];
        let flags = vec![("warehouse.root".to_string(), "/tmp/wh".to_string())];
        let c = Config::load_from(Some(&file), &env, &flags).unwrap();
        assert_eq!(c.engine.memory_limit, "2GiB");
        assert_eq!(c.engine.batch_size, 200);
        assert_eq!(c.warehouse.root, "/tmp/wh");
        assert_eq!(c.memory_limit_bytes().unwrap(), 2 << 30);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let env = vec![("EBROKER_ENGINE__MEMORY".to_string(), "1".to_string())];
        let err = Config::load_from(None, &env, &[]).unwrap_err().to_string();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn bad_values_name_the_fix() {
        let flags = vec![("engine.memory_limit".to_string(), "lots".to_string())];
        let err = Config::load_from(None, &[], &flags).unwrap_err().to_string();
        assert!(err.contains("\"lots\"") && err.contains("2GiB"), "{err}");
        let flags = vec![("cluster.url".to_string(), "http://x:1".to_string())];
        let err = Config::load_from(None, &[], &flags).unwrap_err().to_string();
        assert!(err.contains("df://host:50050"), "{err}");
        let flags = vec![("generate.dirty".to_string(), "1.5".to_string())];
        let err = Config::load_from(None, &[], &flags).unwrap_err().to_string();
        assert!(err.contains("1.5"), "{err}");
    }

    #[test]
    fn greenplum_reads_the_deployment_variables_and_rejects_unsafe_names() {
        let env = vec![
            ("GPHOST".to_string(), "gp.bank".to_string()),
            ("GPPORT".to_string(), "6432".to_string()),
            ("GPPASSWORD".to_string(), "12345".to_string()),
            ("EBROKER_GREENPLUM__USER".to_string(), "etl".to_string()),
        ];
        let c = Config::load_from(None, &env, &[]).unwrap();
        assert_eq!(
            (c.greenplum.host.as_str(), c.greenplum.port, c.greenplum.user.as_str()),
            ("gp.bank", 6432, "etl")
        );
        assert_eq!(c.greenplum.password, "12345", "a numeric password stays a string");
        assert!(!c.to_masked_toml().contains("12345"));
        let flags = vec![("greenplum.schema".to_string(), "\"x; DROP TABLE y\"".to_string())];
        let err = Config::load_from(None, &[], &flags).unwrap_err().to_string();
        assert!(err.contains("x; DROP TABLE y") && err.contains("identifier"), "{err}");
    }

    #[test]
    fn secrets_from_the_environment_stay_strings_and_never_print() {
        let env = vec![
            ("EBROKER_SERVE__TOKEN".to_string(), "12345".to_string()),
            ("EBROKER_CLICKHOUSE__PASSWORD".to_string(), "true".to_string()),
        ];
        let c = Config::load_from(None, &env, &[]).unwrap();
        assert_eq!(
            (c.serve.token.as_str(), c.clickhouse.password.as_str()),
            ("12345", "true")
        );
        let shown = format!("{}\n{c:?}", c.to_masked_toml());
        assert!(!shown.contains("12345") && !shown.contains("= true\n"), "{shown}");
    }

    #[test]
    fn passwords_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gp.pass");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let flags = vec![(
            "greenplum.password_file".to_string(),
            format!("{:?}", file.display().to_string()),
        )];
        let c = Config::load_from(None, &[], &flags).unwrap();
        assert_eq!(c.greenplum.password, "s3cr3t");
        let flags = vec![(
            "clickhouse.password_file".to_string(),
            "\"/nonexistent/ch.pass\"".to_string(),
        )];
        let err = Config::load_from(None, &[], &flags).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/ch.pass") && err.contains("clickhouse.password_file"),
            "{err}"
        );
    }
}
