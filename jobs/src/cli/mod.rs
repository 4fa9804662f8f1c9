//! The `ebroker` command line: the fixed commands (run, sql, serve, report, verify, jobs,
//! config) as clap derive types, the stages' subcommands made from the stage registry
//! ([`stage_commands`]), and [`execute`], the one function the binary calls.

pub mod catalog;
pub mod flight;
pub mod metrics_endpoint;
pub mod operator;
pub mod rule_tests;
pub mod runs;
pub mod shell;
pub mod stage_commands;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::runner::{RunOptions, RunState};
use crate::stages::{by_name, StageContext};
use crate::warehouse::Warehouse;
use crate::ProcessingDate;
use object_store::ObjectStoreExt;
use stage_commands::{parse_date, StageInvocation};

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

pub fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE; write e.g. engine.memory_limit=2GiB"))
}

/// The commands that are not a single stage (those come from the stage registry).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole DAG for a date: [generate ->] clean -> segment -> offers -> analytics.
    ///
    /// With no arguments it generates 5,000 dirty clients for today and fills ./warehouse.
    /// Kafka (produce, ingest) and the publishes join the DAG when they are configured.
    Run(RunArgs),
    /// Run the standard reports (SPEC §8) and the segment distribution in ClickHouse.
    Report(ReportArgs),
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
    /// The history of the daily runs in the warehouse (`_runs/`): every date, one date stage by
    /// stage, or the history as Prometheus metrics.
    #[command(subcommand)]
    Runs(RunsCommand),
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every date with a run: status, stages that succeeded, seconds, rows read, records
    /// quarantined, peak memory.
    List {
        /// Only dates on or after this one.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        since: Option<ProcessingDate>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// One date: each stage's status, attempts, seconds, rows, peak memory and error, and the
    /// records clean quarantined, by table and reason.
    Show {
        #[arg(value_name = "YYYY-MM-DD", value_parser = parse_date)]
        date: ProcessingDate,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// The history in Prometheus' text format: what `ebroker run` writes to
    /// `_runs/metrics.prom` and `ebroker serve` serves at /metrics.
    Metrics,
}

/// How result tables are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct DateArgs {
    /// Processing date; default: today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: Option<ProcessingDate>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub date: DateArgs,
    /// Directory with the seven source CSV files; without it, sources are generated.
    #[arg(long, value_name = "DIR", conflicts_with = "clients")]
    pub input: Option<PathBuf>,
    /// Number of clients to generate (default generate.clients).
    #[arg(long)]
    pub clients: Option<u64>,
    /// Seed of the generator (default generate.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of generated records with dirt, 0..1 (default generate.dirty).
    #[arg(long, value_name = "FRACTION")]
    pub dirty: Option<f64>,
    /// Skip the stages that already succeeded for this date.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub date: DateArgs,
    /// How to print the reports.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Instead, write the run report of the date as one self-contained HTML page with charts
    /// (segments, offers, top clients, data quality, recent runs), from the warehouse.
    #[arg(long)]
    pub html: bool,
    /// Where --html writes the page (default: _runs/D/report.html in the warehouse).
    #[arg(long, short = 'o', value_name = "FILE", requires = "html")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Run these statements and exit (separate several with `;`).
    #[arg(short = 'e', long = "execute", value_name = "SQL", conflicts_with = "file")]
    pub execute: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Check the SQL rules: run the sqllogictest files (.slt) in this file or directory, e.g.
    /// sql/tests/, against the rules (with sql.dir overrides); exits 1 when one fails.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["execute", "file"])]
    pub test: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::cli::shell::OutputFormat::Table)]
    pub format: crate::cli::shell::OutputFormat,
    /// Write results to this file instead of standard output (needed for parquet).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default serve.host, 127.0.0.1). Any other than a loopback address
    /// needs a token.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default serve.port, 50070).
    #[arg(long)]
    pub port: Option<u16>,
    /// Bearer token clients must send (default serve.token; empty = none). Every user of this
    /// machine sees it in `ps`: prefer --token-file or EBROKER_SERVE__TOKEN.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File whose content (trimmed) is the bearer token (default serve.token_file).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
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

/// What the command line asked for: a fixed command, or one stage.
#[derive(Debug)]
pub enum Invocation {
    Command(Command),
    Stage(StageInvocation),
}

/// Parses the process arguments (exits with clap's message and code 2 on a usage error).
pub fn parse() -> (GlobalArgs, Invocation) {
    let matches = stage_commands::add_to(Cli::command()).get_matches();
    let global = GlobalArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let invocation = match stage_commands::find(&matches) {
        Some(stage) => Invocation::Stage(stage),
        None => Invocation::Command(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()).command),
    };
    (global, invocation)
}

/// Loads the configuration the flags describe, with `extra` overrides (a stage's flags).
pub fn load_config(global: &GlobalArgs, extra: &[(String, String)]) -> Result<Config> {
    let mut overrides = global.set.clone();
    overrides.extend(extra.iter().cloned());
    if let Some(url) = &global.cluster {
        overrides.push(("cluster.url".into(), format!("{url:?}")));
    }
    if let Some(root) = &global.warehouse {
        overrides.push(("warehouse.root".into(), format!("{root:?}")));
    }
    Config::load(global.config.as_deref(), &overrides)
}

/// Runs what the user asked for.
pub async fn execute(global: GlobalArgs, invocation: Invocation) -> Result<()> {
    match invocation {
        Invocation::Stage(stage) => run_stage(&global, stage).await,
        Invocation::Command(command) => run_command(&global, command).await,
    }
}

/// One stage, alone: its report's summary and tables on standard output.
async fn run_stage(global: &GlobalArgs, invocation: StageInvocation) -> Result<()> {
    let stage = by_name(invocation.stage).ok_or_else(|| Error::Usage(format!("no stage {}", invocation.stage)))?;
    let config = load_config(global, &invocation.overrides)?;
    let mut ctx = StageContext::new(config, invocation.date.unwrap_or_else(ProcessingDate::today))?;
    ctx.input = invocation.input;
    ctx.force = invocation.force;
    let report = if stage.writes_date() {
        let command = format!("ebroker {} --date {}", stage.command().join(" "), ctx.date);
        let lease = ctx.take_date(&command).await?;
        let report = stage.run(&ctx).await;
        lease.release().await?;
        report?
    } else {
        stage.run(&ctx).await?
    };
    print!("{}", report.summary);
    print!("{}", render_tables(&report.tables, invocation.format)?);
    Ok(())
}

async fn run_command(global: &GlobalArgs, command: Command) -> Result<()> {
    let overrides = match &command {
        Command::Run(args) => generator_overrides(args),
        Command::Serve(args) => serve_overrides(args),
        _ => Vec::new(),
    };
    let config = load_config(global, &overrides)?;
    match command {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Jobs(command) => jobs(&config, command).await,
        Command::Runs(command) => runs::runs(&config, command).await,
        Command::Report(args) if args.html => html_report(&config, args).await,
        Command::Report(args) => {
            let date = args.date.date.unwrap_or_else(ProcessingDate::today);
            let sql = crate::sql::SqlLibrary::new(config.sql.override_dir());
            let sections = crate::sinks::clickhouse::report(&config.clickhouse, &sql, date).await?;
            print!("{}", render_tables(&sections, args.format)?);
            Ok(())
        }
        Command::Verify(VerifyCommand::Greenplum(args)) => {
            let date = args.date.unwrap_or_else(ProcessingDate::today);
            let sql = crate::sql::SqlLibrary::new(config.sql.override_dir());
            let (compared, differences) = crate::sinks::greenplum::verify(&config.greenplum, &sql, date).await?;
            for d in &differences {
                println!("{}: {}", d.client_id, d.difference);
            }
            println!("{compared} clients compared, {} differ", differences.len());
            if differences.is_empty() {
                Ok(())
            } else {
                Err(Error::Reconcile {
                    table: crate::schema::marts::CLIENT_SEGMENTATION.name.into(),
                    message: format!("{} clients differ between the database and the mart", differences.len()),
                })
            }
        }
        Command::Sql(args) => sql(&config, args).await,
        Command::Serve(_) => {
            let settings = flight::ServeSettings::from_config(&config.serve)?;
            let (engine, warehouse) = open(&config).await?;
            if config.serve.metrics_port != 0 {
                let address = std::net::SocketAddr::new(settings.address().ip(), config.serve.metrics_port);
                let token = settings.token().map(str::to_string);
                metrics_endpoint::start(address, warehouse.clone(), token).await?;
            }
            let service = flight::WarehouseFlightSql::new(engine, &warehouse, &settings).await?;
            flight::serve(service, settings).await
        }
        Command::Run(args) => run(config, args).await,
    }
}

/// `ebroker report --html`: the page of the date, into `-o FILE` or the warehouse.
async fn html_report(config: &Config, args: ReportArgs) -> Result<()> {
    let date = args.date.date.unwrap_or_else(ProcessingDate::today);
    let (engine, warehouse) = open(config).await?;
    let sql = crate::sql::SqlLibrary::new(config.sql.override_dir());
    let page = crate::report::render(&engine, &warehouse, &sql, date).await?;
    match args.output {
        Some(file) => {
            std::fs::write(&file, page).map_err(Error::io(&file))?;
            println!("wrote {}", file.display());
        }
        None => {
            let relative = Warehouse::run_file(date, "report.html");
            warehouse
                .store()
                .put(&warehouse.path(&relative), page.into_bytes().into())
                .await
                .map_err(Error::storage(warehouse.url(&relative).to_string()))?;
            println!("wrote {}", warehouse.url(&relative));
        }
    }
    Ok(())
}

/// `--clients/--seed/--dirty` of `ebroker run`, as configuration overrides.
fn generator_overrides(args: &RunArgs) -> Vec<(String, String)> {
    let mut overrides = Vec::new();
    if let Some(clients) = args.clients {
        overrides.push(("generate.clients".into(), clients.to_string()));
    }
    if let Some(seed) = args.seed {
        overrides.push(("generate.seed".into(), seed.to_string()));
    }
    if let Some(dirty) = args.dirty {
        overrides.push(("generate.dirty".into(), format!("{dirty:?}")));
    }
    overrides
}

/// `--host/--port/--token/--token-file` of `ebroker serve`, as configuration overrides. A
/// token is passed as it is (secrets are never typed); `--token` also clears serve.token_file,
/// which would otherwise replace it.
fn serve_overrides(args: &ServeArgs) -> Vec<(String, String)> {
    let mut overrides = Vec::new();
    if let Some(host) = &args.host {
        overrides.push(("serve.host".into(), format!("{host:?}")));
    }
    if let Some(port) = args.port {
        overrides.push(("serve.port".into(), port.to_string()));
    }
    if let Some(token) = &args.token {
        overrides.push(("serve.token".into(), token.clone()));
        overrides.push(("serve.token_file".into(), "\"\"".into()));
    }
    if let Some(file) = &args.token_file {
        overrides.push(("serve.token_file".into(), format!("{:?}", file.display().to_string())));
    }
    overrides
}

async fn run(config: Config, args: RunArgs) -> Result<()> {
    let mut ctx = StageContext::new(config, args.date.date.unwrap_or_else(ProcessingDate::today))?;
    let options = RunOptions {
        input: args.input,
        resume: args.resume,
    };
    let started = std::time::Instant::now();
    let lease = ctx.take_date(&format!("ebroker run --date {}", ctx.date)).await?;
    let result = crate::runner::run(&mut ctx, &options).await;
    lease.release().await?;
    if let Some(state) = ctx
        .warehouse
        .read_json::<RunState>(&crate::runner::state_file(ctx.date))
        .await?
    {
        print!("{}", state.render());
    }
    result?;
    println!(
        "done in {:.2} s, peak RSS {}; warehouse: {}",
        started.elapsed().as_secs_f64(),
        crate::resources::peak_rss_text(),
        ctx.warehouse.root()
    );
    Ok(())
}

async fn jobs(config: &Config, command: JobsCommand) -> Result<()> {
    let base = config.cluster.rest_base().ok_or_else(|| {
        Error::Usage("`ebroker jobs` needs a scheduler: pass --cluster df://host:50050 or set cluster.url".into())
    })?;
    let api = operator::SchedulerApi::new(base);
    match command {
        JobsCommand::List => print!("{}", operator::render_jobs(&api.jobs().await?)),
        JobsCommand::Status { id } => {
            let (job, stages) = api.job(&id).await?;
            let status = serde_json::json!({ "job": job, "stages": stages });
            println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
        }
        JobsCommand::Cancel { id } => {
            api.cancel(&id).await?;
            println!("cancel requested for job {id}");
        }
        JobsCommand::Metrics => print!("{}", api.metrics().await?),
    }
    Ok(())
}

async fn sql(config: &Config, args: SqlArgs) -> Result<()> {
    if let Some(path) = &args.test {
        let (text, result) = rule_tests::summarise(&rule_tests::run(config, path).await?);
        print!("{text}");
        return result;
    }
    let (engine, warehouse) = open(config).await?;
    let output = shell::Output {
        format: args.format,
        path: args.output,
    };
    let mut shell = shell::Shell::open(&engine, &warehouse, output).await?;
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

/// The engine and warehouse the SQL commands query.
async fn open(config: &Config) -> Result<(Engine, Warehouse)> {
    let engine = Engine::connect(config).await?;
    let warehouse = Warehouse::open(&config.warehouse, engine.registry().as_ref())?;
    Ok((engine, warehouse))
}

/// Result tables in `format`: aligned tables under their titles, CSV sections, or one JSON
/// object per table.
pub fn render_tables(tables: &[(String, Vec<RecordBatch>)], format: ReportFormat) -> Result<String> {
    let mut out = String::new();
    for (title, batches) in tables {
        let failed = |e: datafusion::arrow::error::ArrowError| Error::engine(format!("formatting {title}"))(e.into());
        match format {
            ReportFormat::Table => {
                let table = pretty_format_batches(batches).map_err(failed)?;
                out.push_str(&format!("{title}\n{table}\n\n"));
            }
            ReportFormat::Csv => {
                out.push_str(&format!("# {title}\n"));
                let mut writer = datafusion::arrow::csv::Writer::new(Vec::new());
                for batch in batches {
                    writer.write(batch).map_err(failed)?;
                }
                out.push_str(&String::from_utf8_lossy(&writer.into_inner()));
                out.push('\n');
            }
            ReportFormat::Json => {
                let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
                writer
                    .write_batches(&batches.iter().collect::<Vec<_>>())
                    .map_err(failed)?;
                writer.finish().map_err(failed)?;
                let rows = String::from_utf8_lossy(&writer.into_inner()).into_owned();
                let rows = if rows.is_empty() { "[]".to_string() } else { rows };
                out.push_str(&format!(
                    "{{\"report\":{},\"rows\":{rows}}}\n",
                    serde_json::Value::String(title.clone())
                ));
            }
        }
    }
    Ok(out)
}
