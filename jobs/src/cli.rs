//! The `ebroker` command line: argument definitions (clap) and the one function the binary
//! calls, which loads the configuration and dispatches to the jobs.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::analytics::ReportFormat;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateOptions};
use crate::pipeline::RunOptions;
use crate::sql::SqlLibrary;
use crate::storage::Warehouse;

/// ebroker — the bank's client-segmentation pipeline without YARN or Spark.
///
/// Runs in-process by default (no services): `ebroker run` generates 5,000 clients and fills
/// ./warehouse with cleaned tables and marts. Each stage is also a subcommand.
#[derive(Debug, Parser)]
#[command(name = "ebroker", version, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "\
Configuration layers: embedded defaults < ebroker.toml (or --config) < EBROKER_<SECTION>__<KEY>
environment variables < flags. See the effective values with `ebroker config show`.

Examples:
  ebroker generate --clients 20000 --dirty 0.02 --out data/
  ebroker clean --input data/ --date 2024-06-01
  ebroker --set kafka.brokers=127.0.0.1:9092 produce --input data/
  ebroker --set kafka.brokers=127.0.0.1:9092 ingest --date 2024-06-01 && ebroker clean --date 2024-06-01
  ebroker --warehouse hdfs://nn:8020/bank clean --input data/";

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: ./ebroker.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Warehouse root: a path or file://, hdfs://, s3:// URL (default ./warehouse).
    #[arg(long, global = true, value_name = "URL")]
    pub warehouse: Option<String>,
    /// Override any configuration key, e.g. --set engine.memory_limit=2GiB (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Run queries on this Ballista scheduler (df://host:50050) instead of in-process.
    #[arg(long, global = true, value_name = "URL", env = "EBROKER_CLUSTER__URL")]
    pub cluster: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE; write e.g. engine.memory_limit=2GiB"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the seven synthetic CSV source files (SPEC §2), optionally with dirt.
    Generate(GenerateArgs),
    /// Send the seven CSV files (or N generated clients) to the Kafka topics (SPEC §3.2).
    ///
    /// One JSON message per record, keyed by its id; needs kafka.brokers.
    Produce(ProduceArgs),
    /// Dump the Kafka topics to raw/<table>/processing_date=D/ exactly once (SPEC §3.3).
    ///
    /// Reads each partition from the group's committed offset to the high-water mark seen at
    /// the start; commits offsets only after the dump and its manifest are durable. A date
    /// already ingested is a no-op unless --force.
    Ingest(IngestArgs),
    /// Parse, quarantine, deduplicate and enrich the sources into cleaned/ (SPEC §4).
    ///
    /// Reads CSV files with --input, or else the raw zone of the date (after `ingest`).
    Clean(CleanArgs),
    /// Compute client_segmentation from the cleaned tables of a date (SPEC §5).
    Segment(DateArgs),
    /// Compute marketing_clients and targeted_offers from the segmentation (SPEC §6).
    Offers(DateArgs),
    /// Write the daily analytics slice and print the standard reports (SPEC §8).
    Analytics(AnalyticsArgs),
    /// Run the whole DAG for a date: [generate ->] clean -> segment -> offers -> analytics.
    ///
    /// With no arguments it generates 5,000 dirty clients for today and fills ./warehouse.
    Run(RunArgs),
    /// Push a date's tables to a target system: greenplum (SPEC §7) or clickhouse (SPEC §8).
    #[command(subcommand)]
    Publish(PublishCommand),
    /// Run the standard reports (SPEC §8) and the segment distribution in ClickHouse.
    Report(AnalyticsArgs),
    /// Check a target against the warehouse.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Query the warehouse with SQL: `cleaned.clients`, `marts.targeted_offers`, ... (every
    /// zone is a schema, `processing_date` a column). An interactive shell without -e/-f.
    Sql(SqlArgs),
    /// Serve the warehouse over Arrow Flight SQL for JDBC/ADBC tools (DBeaver, Python ADBC).
    Serve(ServeArgs),
    /// Jobs on the Ballista scheduler (`--cluster` or cluster.url): list, status, cancel.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Show or check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// The generator's flags, shared by `generate`, `produce` and `run`.
#[derive(Debug, Args)]
pub struct GeneratorArgs {
    /// Number of clients (default generate.clients); the other tables follow SPEC §2's
    /// proportions (9.8 rows per client).
    #[arg(long)]
    pub clients: Option<u64>,
    /// Seed (default generate.seed): the same seed and date give byte-identical files.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of records with dirt (duplicates, bad values, broken lines), 0..1 (default
    /// generate.dirty).
    #[arg(long, value_name = "FRACTION")]
    pub dirty: Option<f64>,
}

impl GeneratorArgs {
    /// The generator's options: these flags over the configuration.
    pub fn options(&self, config: &Config, anchor: NaiveDate, out: PathBuf) -> GenerateOptions {
        GenerateOptions {
            clients: self.clients.unwrap_or(config.generate.clients),
            seed: self.seed.unwrap_or(config.generate.seed),
            dirty: self.dirty.unwrap_or(config.generate.dirty),
            anchor,
            out,
        }
    }
}

/// Runs the generator on a blocking thread.
async fn generate_files(options: GenerateOptions) -> Result<crate::generate::GenerateReport> {
    tokio::task::spawn_blocking(move || generate(&options))
        .await
        .map_err(|e| Error::Stage {
            stage: "generate".into(),
            message: e.to_string(),
        })?
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Directory to write the CSV files into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The day the data ends on ("today" of the data set); default: today.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Directory with the seven CSV files; without it, --clients are generated first.
    #[arg(long, value_name = "DIR", conflicts_with = "clients")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// The day generated data ends on; default: today.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub date: DateArgs,
    /// Re-read the date's recorded offset ranges even though it was ingested already.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Directory with the seven CSV files (clients.csv, bank_transactions.csv, ...);
    /// without it, the raw zone of the date is cleaned.
    #[arg(long, value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// Processing date the records belong to; default: today.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct DateArgs {
    /// Processing date; default: today.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pub date: DateArgs,
    /// How to print the reports.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub date: DateArgs,
    /// Directory with the seven source CSV files; without it, sources are generated.
    #[arg(long, value_name = "DIR", conflicts_with = "clients")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Skip the stages that already succeeded for this date.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Run these statements and exit (separate several with `;`).
    #[arg(short = 'e', long = "execute", value_name = "SQL", conflicts_with = "file")]
    pub execute: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::shell::OutputFormat::Table)]
    pub format: crate::shell::OutputFormat,
    /// Write results to this file instead of standard output (needed for parquet).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default serve.host, 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default serve.port, 50070).
    #[arg(long)]
    pub port: Option<u16>,
    /// Bearer token clients must send (default serve.token; empty = none).
    #[arg(long, env = "EBROKER_SERVE__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PublishCommand {
    /// Load the cleaned tables and client_segmentation into Greenplum (PXF external tables) or
    /// PostgreSQL (binary COPY), replacing the day in one transaction, and run the in-database
    /// segmentation (sql/greenplum/segmentation.sql). Connection: [greenplum] or GPHOST etc.
    Greenplum(DateArgs),
    /// Publish marketing_clients, targeted_offers and marketing_analytics_daily to ClickHouse
    /// (RowBinary, lz4); each table's month is rebuilt in a staging table and swapped in
    /// atomically, so a day published twice is there once. Connection: [clickhouse].
    Clickhouse(DateArgs),
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Compare the database's own segmentation with the DataFusion mart, client by client;
    /// exits 4 when any client differs.
    Greenplum(DateArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Every job the scheduler knows, with status and progress.
    List,
    /// One job with its stages (JSON).
    Status { id: String },
    /// Cancel a running job.
    Cancel { id: String },
    /// Print the scheduler's Prometheus metrics.
    Metrics,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets masked).
    Show,
}

/// Parses `YYYY-MM-DD` strictly.
pub fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 10)
        .ok_or_else(|| format!("`{s}` is not a date; write it as YYYY-MM-DD, e.g. 2024-06-01"))
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Loads the configuration the flags describe.
pub fn load_config(global: &GlobalArgs) -> Result<Config> {
    let mut overrides = global.set.clone();
    if let Some(url) = &global.cluster {
        overrides.push(("cluster.url".into(), format!("{url:?}")));
    }
    if let Some(root) = &global.warehouse {
        overrides.push(("warehouse.root".into(), format!("{root:?}")));
    }
    Config::load(global.config.as_deref(), &overrides)
}

/// Runs the command the user asked for.
pub async fn execute(cli: Cli) -> Result<()> {
    let config = load_config(&cli.global)?;
    match cli.command {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Jobs(command) => {
            let base = config.cluster.rest_base().ok_or_else(|| {
                Error::Usage(
                    "`ebroker jobs` needs a scheduler: pass --cluster df://host:50050 or set cluster.url".into(),
                )
            })?;
            let api = crate::operator::SchedulerApi::new(base);
            match command {
                JobsCommand::List => print!("{}", crate::operator::render_jobs(&api.jobs().await?)),
                JobsCommand::Status { id } => {
                    let (job, stages) = api.job(&id).await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "job": job, "stages": stages }))
                            .unwrap_or_default()
                    );
                }
                JobsCommand::Cancel { id } => {
                    api.cancel(&id).await?;
                    println!("cancel requested for job {id}");
                }
                JobsCommand::Metrics => print!("{}", api.metrics().await?),
            }
            Ok(())
        }
        Command::Generate(args) => {
            let report = generate_files(
                args.generator
                    .options(&config, args.date.unwrap_or_else(today), args.out),
            )
            .await?;
            let secs = report.elapsed.as_secs_f64().max(1e-9);
            for f in &report.files {
                println!(
                    "{:<24} {:>10} rows {:>12} bytes  {}",
                    f.table,
                    f.rows,
                    f.bytes,
                    f.path.display()
                );
            }
            println!(
                "generated {} rows in {:.2} s ({:.0} rows/s), peak RSS {}",
                report.rows(),
                secs,
                report.rows() as f64 / secs,
                crate::resources::peak_rss_text()
            );
            Ok(())
        }
        Command::Produce(args) => {
            let generated;
            let input = match args.input {
                Some(dir) => dir,
                None => {
                    generated = tempfile_dir()?;
                    let out = generated.path().to_path_buf();
                    generate_files(
                        args.generator
                            .options(&config, args.date.unwrap_or_else(today), out.clone()),
                    )
                    .await?;
                    out
                }
            };
            let report = crate::kafka::produce::produce_csv_dir(&config.kafka, &input).await?;
            print!("{}", report.render());
            println!("peak RSS {}", crate::resources::peak_rss_text());
            report.check()
        }
        Command::Ingest(args) => {
            let date = date_or_today(&args.date);
            let warehouse = Warehouse::open(&config.warehouse, &crate::storage::StoreRegistry::new())?;
            let outcome = crate::kafka::ingest::ingest(&config.kafka, &warehouse, &date, args.force).await?;
            print!("{}", outcome.manifest.render());
            let records = outcome.manifest.records();
            if outcome.ingested {
                let secs = outcome.seconds.max(1e-9);
                println!(
                    "ingested {records} records for {date} in {secs:.2} s ({:.0} msg/s), peak RSS {}",
                    records as f64 / secs,
                    crate::resources::peak_rss_text()
                );
            } else {
                println!("{date} was already ingested ({records} records); nothing read. Use --force to read its offset ranges again.");
            }
            Ok(())
        }
        Command::Publish(PublishCommand::Greenplum(args)) => {
            let date = date_or_today(&args);
            let warehouse = Warehouse::open(&config.warehouse, &crate::storage::StoreRegistry::new())?;
            let sql = SqlLibrary::new(sql_dir(&config));
            let report = crate::greenplum::publish(&config.greenplum, &warehouse, &sql, &date).await?;
            print!("{}", report.render());
            Ok(())
        }
        Command::Publish(PublishCommand::Clickhouse(args)) => {
            let date = date_or_today(&args);
            let warehouse = Warehouse::open(&config.warehouse, &crate::storage::StoreRegistry::new())?;
            let sql = SqlLibrary::new(sql_dir(&config));
            let report = crate::clickhouse::publish(&config.clickhouse, &warehouse, &sql, &date).await?;
            print!("{}", report.render());
            Ok(())
        }
        Command::Report(args) => {
            let date = date_or_today(&args.date);
            let sql = SqlLibrary::new(sql_dir(&config));
            let report = crate::clickhouse::report(&config.clickhouse, &sql, &date).await?;
            print!("{}", report.render(args.format)?);
            Ok(())
        }
        Command::Verify(VerifyCommand::Greenplum(args)) => {
            let date = date_or_today(&args);
            let sql = SqlLibrary::new(sql_dir(&config));
            let (compared, differences) = crate::greenplum::verify(&config.greenplum, &sql, &date).await?;
            for d in &differences {
                println!("{}: {}", d.client_id, d.difference);
            }
            println!("{compared} clients compared, {} differ", differences.len());
            if differences.is_empty() {
                Ok(())
            } else {
                Err(Error::Reconcile {
                    table: "client_segmentation".into(),
                    message: format!("{} clients differ between the database and the mart", differences.len()),
                })
            }
        }
        Command::Sql(args) => {
            let (engine, warehouse, _) = open(&config).await?;
            let output = crate::shell::Output {
                format: args.format,
                path: args.output,
            };
            let mut shell = crate::shell::Shell::open(&engine, &warehouse, output).await?;
            match (args.execute, args.file) {
                (Some(sql), _) => shell.run_script(&sql).await,
                (None, Some(file)) => {
                    shell
                        .run_script(&std::fs::read_to_string(&file).map_err(Error::io(&file))?)
                        .await
                }
                (None, None) => shell.interactive().await,
            }
        }
        Command::Serve(args) => {
            let (engine, warehouse, _) = open(&config).await?;
            let host = args.host.unwrap_or(config.serve.host.clone());
            let address: std::net::SocketAddr = format!("{host}:{}", args.port.unwrap_or(config.serve.port))
                .parse()
                .map_err(|_| Error::Usage(format!("--host {host:?} is not an IP address")))?;
            let token = args.token.or(Some(config.serve.token.clone()));
            let service = crate::flight::WarehouseFlightSql::new(engine, &warehouse, token).await?;
            crate::flight::serve(service, address).await
        }
        Command::Clean(args) => {
            let date = args.date.unwrap_or_else(today).to_string();
            let (engine, warehouse, sql) = open(&config).await?;
            let started = std::time::Instant::now();
            let report = match &args.input {
                Some(input) => crate::clean::clean_csv_dir(&engine, &warehouse, &sql, input, &date).await?,
                None => crate::clean::clean_raw(&engine, &warehouse, &sql, &date).await?,
            };
            print!("{}", report.render());
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "cleaned {} rows in {:.2} s ({:.0} rows/s), peak RSS {}, into {}",
                report.rows_read(),
                secs,
                report.rows_read() as f64 / secs,
                crate::resources::peak_rss_text(),
                warehouse.root()
            );
            Ok(())
        }
        Command::Segment(args) => {
            let date = date_or_today(&args);
            let (engine, warehouse, sql) = open(&config).await?;
            let clients = crate::segment::segment(&engine, &warehouse, &sql, &date).await?;
            println!("client_segmentation {date}: {clients} clients");
            Ok(())
        }
        Command::Offers(args) => {
            let date = date_or_today(&args);
            let (engine, warehouse, sql) = open(&config).await?;
            let count = crate::offers::offers(&engine, &warehouse, &sql, &date).await?;
            println!(
                "marketing_clients {date}: {} clients; targeted_offers: {} offers",
                count.clients, count.offers
            );
            Ok(())
        }
        Command::Analytics(args) => {
            let date = date_or_today(&args.date);
            let (engine, warehouse, sql) = open(&config).await?;
            let report = crate::analytics::analytics(&engine, &warehouse, &sql, &date).await?;
            print!("{}", report.render(args.format)?);
            Ok(())
        }
        Command::Run(args) => {
            let (engine, warehouse, sql) = open(&config).await?;
            let options = RunOptions {
                date: args.date.date.unwrap_or_else(today),
                input: args.input,
                clients: args.generator.clients.unwrap_or(config.generate.clients),
                seed: args.generator.seed.unwrap_or(config.generate.seed),
                dirty: args.generator.dirty.unwrap_or(config.generate.dirty),
                resume: args.resume,
            };
            let started = std::time::Instant::now();
            let result = crate::pipeline::run(&config, &engine, &warehouse, &sql, &options).await;
            let date = options.date.to_string();
            if let Some(state) = warehouse
                .read_json::<crate::pipeline::RunState>(&crate::pipeline::state_file(&date))
                .await?
            {
                print!("{}", state.render());
            }
            result?;
            println!(
                "done in {:.2} s, peak RSS {}; warehouse: {}",
                started.elapsed().as_secs_f64(),
                crate::resources::peak_rss_text(),
                warehouse.root()
            );
            Ok(())
        }
    }
}

/// A temporary directory for generated sources, removed when dropped.
fn tempfile_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("ebroker-produce-")
        .tempdir()
        .map_err(Error::io(std::env::temp_dir()))
}

fn date_or_today(args: &DateArgs) -> String {
    args.date.unwrap_or_else(today).to_string()
}

/// The engine, warehouse and SQL library a job needs.
async fn open(config: &Config) -> Result<(Engine, Warehouse, SqlLibrary)> {
    let engine = Engine::connect(config).await?;
    let warehouse = Warehouse::open(&config.warehouse, engine.registry().as_ref())?;
    Ok((engine, warehouse, SqlLibrary::new(sql_dir(config))))
}

/// The SQL override directory, if configured.
pub fn sql_dir(config: &Config) -> Option<PathBuf> {
    (!config.sql.dir.is_empty()).then(|| PathBuf::from(&config.sql.dir))
}
