//! The clean stage (docs/SPEC.md §4): source CSV files of a processing date -> typed, deduplicated,
//! enriched Parquet under `cleaned/<table>/processing_date=D/`, rejected records with their
//! reason under `quarantine/<table>/processing_date=D/`, and a data-quality report in
//! `_runs/D/clean.json`. Parsing is Rust (strict, per record); deduplication and enrichment
//! are SQL (`sql/datafusion/clean_*.sql`). Tables with a client_id are written in client
//! buckets ([`crate::tables::buckets`]), one file per bucket. Nothing is visible to readers until
//! every table has been written and reconciled: read = written + quarantined + duplicates
//! removed, with each term counted on its own (docs/SPEC.md §4, "nothing lost"): read and
//! quarantined by the parser, duplicates from the ids of the parsed rows, written from the
//! footers of the files written. A row lost anywhere between (deduplication, enrichment,
//! bucketing, an SQL override) fails the stage with exit code 4 instead of passing as a
//! duplicate.
//!
//! Parsing runs as tasks ([`ebroker_plans::parse`]): one per byte-range split of each source
//! CSV file ([`ebroker_plans::splits`]), or one per raw file of the Kafka path — on the executors with `--cluster`, in-process otherwise; the
//! client sums their counts and runs the deduplication SQL.

use std::collections::BTreeMap;
use std::path::Path;

use ebroker_plans::parse::{add_counts, CsvParseTask, ParseResult, RawParseTask};
use ebroker_plans::run::{run_tasks, Runner};
use ebroker_plans::splits::{self, CountResult, CountTask};
use ebroker_plans::work::Work;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Flag, Stage, StageContext, StageReport};
use crate::config::CleanConfig;
use crate::engine::{first_row_u64, scalar_u64, Engine};
use crate::error::{Error, Result};
use crate::formats::csv::Split;
use crate::formats::record::ParseCounts;
use crate::schema::{Table, TABLES};
use crate::sql::SqlLibrary;
use crate::tables::buckets::write_bucketed;
use crate::tables::partitions::footer_rows;
use crate::warehouse::commit::Commit;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;
use sources::SourceFile;

mod sources;

/// Name of the stage in run state and staging paths.
const STAGE: &str = "clean";

/// The clean stage: the sources of the date (CSV files, or the raw zone after `ingest`) ->
/// cleaned tables, quarantine and the data-quality report.
pub struct Clean;

#[async_trait::async_trait]
impl Stage for Clean {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn command(&self) -> &'static [&'static str] {
        &["clean"]
    }

    fn about(&self) -> &'static str {
        "Parse, quarantine, deduplicate and enrich the sources into cleaned/ (SPEC §4): the CSV files of --input, or else the raw zone of the date (after `ingest`)"
    }

    fn flags(&self) -> &'static [Flag] {
        &[Flag::Input, Flag::Date]
    }

    fn enabled(&self, _: &StageContext) -> bool {
        true
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let engine = ctx.engine().await?;
        let started = std::time::Instant::now();
        let config = &ctx.config.clean;
        let report = match ctx.input.as_deref().filter(|_| !ctx.via_kafka) {
            Some(input) => clean_csv_dir(engine, &ctx.warehouse, &ctx.sql, config, input, ctx.date).await?,
            None => clean_raw(engine, &ctx.warehouse, &ctx.sql, config, ctx.date).await?,
        };
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let summary = format!(
            "{}cleaned {} rows in {secs:.2} s ({:.0} rows/s), peak RSS {}, into {}\n",
            report.render(),
            report.rows_read(),
            report.rows_read() as f64 / secs,
            crate::resources::peak_rss_text(),
            ctx.warehouse.root()
        );
        Ok(StageReport {
            rows: report.rows_read(),
            summary,
            tables: Vec::new(),
        })
    }
}

/// Staging part holding the typed rows between parsing and deduplication.
const PARSED: &str = "parsed";

/// The data-quality summary of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableQuality {
    pub table: String,
    pub read: u64,
    pub written: u64,
    pub quarantined: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    pub duplicates_removed: u64,
    /// Optional fields that did not parse and became NULL, by column.
    pub nulled_unparsable: BTreeMap<String, u64>,
    /// Transactions whose currency has no rate (amount_rub NULL); bank_transactions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_rate: Option<u64>,
}

impl TableQuality {
    /// Whether every record read is accounted for.
    pub fn reconciles(&self) -> bool {
        self.read == self.written + self.quarantined + self.duplicates_removed
    }
}

/// The data-quality report of one clean run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanReport {
    pub processing_date: ProcessingDate,
    pub tables: Vec<TableQuality>,
}

impl CleanReport {
    pub fn table(&self, name: &str) -> Option<&TableQuality> {
        self.tables.iter().find(|t| t.table == name)
    }

    pub fn rows_read(&self) -> u64 {
        self.tables.iter().map(|t| t.read).sum()
    }

    /// The report as an aligned text table.
    pub fn render(&self) -> String {
        let rows = self.tables.iter().map(|t| {
            vec![
                t.table.clone(),
                t.read.to_string(),
                t.written.to_string(),
                t.quarantined.to_string(),
                t.duplicates_removed.to_string(),
                t.nulled_unparsable.values().sum::<u64>().to_string(),
                t.without_rate.map_or("-".to_string(), |n| n.to_string()),
            ]
        });
        let header = [
            "table",
            "read",
            "written",
            "quarantined",
            "duplicates",
            "nulled",
            "without rate",
        ];
        crate::text::aligned(&header, rows.collect())
    }
}

/// Cleans the seven CSV files in `input` (a local directory, or a directory URL every
/// executor reads: [`sources`]) as processing date `date`, in splits of
/// `config.split_bytes`; records over `config.max_record_bytes` are quarantined as too long.
pub async fn clean_csv_dir(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    config: &CleanConfig,
    input: &Path,
    date: ProcessingDate,
) -> Result<CleanReport> {
    warehouse.remove_all(&Warehouse::staging_root(STAGE, date)).await?;
    let files = sources::locate(engine, warehouse, input, date).await?;
    let tasks = csv_parse_tasks(engine, warehouse, files, config.split_bytes, date).await?;
    let bar = crate::progress::bar(tasks.len() as u64, "parse", "splits");
    let work = Work::ParseCsv {
        max_record_bytes: config.max_record_bytes,
    };
    let results: Vec<ParseResult> = run_tasks(&Runner::Engine(engine), work, &tasks, STAGE, &bar).await?;
    bar.finish_and_clear();
    let counts = TABLES
        .iter()
        .map(|table| {
            let mut counts = ParseCounts::default();
            for result in results.iter().filter(|r| r.table == table.name) {
                add_counts(&mut counts, &result.counts);
            }
            counts
        })
        .collect();
    finish(engine, warehouse, (sql, config), counts, date).await
}

/// One parse task per split of each file, largest first (so the last task to start is a short
/// one); the line breaks before each split are counted by tasks first.
async fn csv_parse_tasks(
    engine: &Engine,
    warehouse: &Warehouse,
    files: Vec<SourceFile>,
    split_bytes: u64,
    date: ProcessingDate,
) -> Result<Vec<CsvParseTask>> {
    let mut cuts: Vec<(SourceFile, Vec<Split>)> = files
        .into_iter()
        .map(|file| {
            let splits = splits::cut(file.size, split_bytes);
            (file, splits)
        })
        .collect();
    let count_tasks: Vec<CountTask> = cuts
        .iter()
        .flat_map(|(file, splits)| splits::count_tasks(file.url.as_str(), splits))
        .collect();
    if !count_tasks.is_empty() {
        let bar = crate::progress::bar(count_tasks.len() as u64, "count", "splits");
        let counts: Vec<CountResult> =
            run_tasks(&Runner::Engine(engine), Work::CountLines, &count_tasks, STAGE, &bar).await?;
        bar.finish_and_clear();
        for (file, splits) in &mut cuts {
            splits::number_splits(file.url.as_str(), splits, &counts)?;
        }
    }
    let mut tasks = Vec::new();
    for (file, splits) in cuts {
        for (index, split) in splits.into_iter().enumerate() {
            let bytes = split.end.min(file.size).saturating_sub(split.start);
            let task = CsvParseTask {
                table: file.table.name.to_string(),
                csv: file.url.to_string(),
                split,
                parsed: staged_file(warehouse, date, PARSED, file.table, index),
                quarantine: staged_file(warehouse, date, Zone::Quarantine.dir(), file.table, index),
            };
            tasks.push((bytes, task));
        }
    }
    tasks.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    Ok(tasks.into_iter().map(|(_, task)| task).collect())
}

/// The URL of the staged `part` file (parsed or quarantine) of split `index` of `table`.
fn staged_file(warehouse: &Warehouse, date: ProcessingDate, part: &str, table: &Table, index: usize) -> String {
    let dir = Warehouse::staging(STAGE, date, part, table.name);
    warehouse.url(&format!("{dir}part-{index:05}.parquet")).to_string()
}

/// Cleans the raw zone of `date` (the Kafka messages `ingest` dumped), checking that every
/// message the offset manifest says was consumed is read.
pub async fn clean_raw(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    config: &CleanConfig,
    date: ProcessingDate,
) -> Result<CleanReport> {
    use crate::sources::kafka::ingest::{IngestManifest, MANIFEST};
    let manifest_file = Warehouse::run_file(date, MANIFEST);
    let manifest: IngestManifest = warehouse.read_json(&manifest_file).await?.ok_or_else(|| Error::Input {
        path: warehouse.url(&manifest_file).to_string(),
        message: format!(
            "no ingest manifest: the raw zone of {date} is not complete; run `ebroker ingest --date {date}` first"
        ),
    })?;
    warehouse.remove_all(&Warehouse::staging_root(STAGE, date)).await?;
    let tasks = raw_parse_tasks(warehouse, date).await?;
    let bar = crate::progress::bar(tasks.len() as u64, "parse", "files");
    let results: Vec<ParseResult> = run_tasks(
        &Runner::Engine(engine),
        Work::ParseRaw {
            max_record_bytes: config.max_record_bytes,
        },
        &tasks,
        STAGE,
        &bar,
    )
    .await?;
    let mut counts = Vec::new();
    for table in TABLES {
        let mut parsed = ParseCounts::default();
        for result in results.iter().filter(|r| r.table == table.name) {
            add_counts(&mut parsed, &result.counts);
        }
        let consumed = manifest.topic(table.name).map_or(0, |t| t.records);
        if parsed.read != consumed {
            return Err(Error::Reconcile {
                table: table.name.into(),
                message: format!("the raw zone holds {} records but ingest consumed {consumed}; rerun `ebroker ingest --date {date} --force`", parsed.read),
            });
        }
        counts.push(parsed);
    }
    bar.finish_and_clear();
    finish(engine, warehouse, (sql, config), counts, date).await
}

/// One parse task per raw file of `date` (one per Kafka partition range ingest dumped), each
/// into its own staged typed and quarantine file.
async fn raw_parse_tasks(warehouse: &Warehouse, date: ProcessingDate) -> Result<Vec<RawParseTask>> {
    let mut tasks = Vec::new();
    for table in TABLES {
        let raw = Warehouse::partition(Zone::Raw, table.name, date);
        let files: Vec<String> = warehouse
            .list_files(&raw)
            .await?
            .iter()
            .filter_map(|p| {
                p.filename()
                    .filter(|name| name.ends_with(".parquet"))
                    .map(str::to_string)
            })
            .collect();
        if files.is_empty() {
            return Err(Error::Input {
                path: warehouse.url(&raw).to_string(),
                message: format!(
                    "{} has no raw data for {date}; run `ebroker ingest --date {date}` first",
                    table.name
                ),
            });
        }
        let staged = |part: &str, name: &str| {
            let dir = Warehouse::staging(STAGE, date, part, table.name);
            warehouse.url(&format!("{dir}{name}")).to_string()
        };
        for name in files {
            tasks.push(RawParseTask {
                table: table.name.to_string(),
                raw: warehouse.url(&format!("{raw}{name}")).to_string(),
                parsed: staged(PARSED, &name),
                quarantine: staged(Zone::Quarantine.dir(), &name),
            });
        }
    }
    Ok(tasks)
}

/// Deduplicates, reconciles and publishes the staged parse of every table, then writes the
/// data-quality report. The currency rates go first (the transactions' enrichment reads
/// them), then the other tables, largest first, `clean.tables_at_once` at a time: after its
/// sort one table's deduplication and Parquet encoding run on one core, so two at a time keep
/// both cores of a small machine (or two executors) busy (500k clients: the deduplication
/// phase took 5.9 s one table at a time, 4.6 s two at a time).
async fn finish(
    engine: &Engine,
    warehouse: &Warehouse,
    (sql, config): (&SqlLibrary, &CleanConfig),
    counts: Vec<ParseCounts>,
    date: ProcessingDate,
) -> Result<CleanReport> {
    let clients = TABLES
        .iter()
        .zip(&counts)
        .find(|(t, _)| t.name == crate::schema::CLIENTS.name)
        .map_or(0, |(_, c)| c.parsed);
    let buckets = crate::warehouse::buckets::bucket_count(clients, warehouse.clients_per_bucket());
    let mut plans = Vec::new();
    for (table, counts) in TABLES.iter().copied().zip(counts) {
        plans.push(plan_dedup(engine, warehouse, sql, table, counts, date).await?);
    }
    let (rates, mut others): (Vec<_>, Vec<_>) = plans
        .into_iter()
        .partition(|plan| plan.table.name == crate::schema::CURRENCY_RATES.name);
    others.sort_by_key(|plan| std::cmp::Reverse(plan.counts.parsed));
    let mut qualities = Vec::new();
    for plan in rates {
        qualities.push(dedup_table(engine, warehouse, plan, buckets).await?);
    }
    let rest: Vec<TableQuality> = futures::stream::iter(others)
        .map(|plan| dedup_table(engine, warehouse, plan, buckets))
        .buffer_unordered(config.tables_at_once(buckets))
        .try_collect()
        .await?;
    qualities.extend(rest);
    let tables = TABLES
        .iter()
        .filter_map(|table| qualities.iter().find(|q| q.table == table.name).cloned())
        .collect();
    let report = CleanReport {
        processing_date: date,
        tables,
    };
    // The fourteen days and the report are published in one commit (docs/DESIGN.md).
    let mut commit = Commit::new(STAGE, date);
    for table in TABLES {
        for zone in [Zone::Cleaned, Zone::Quarantine] {
            let staged = Warehouse::staging(STAGE, date, zone.dir(), table.name);
            commit.directory(&staged, &Warehouse::partition(zone, table.name, date));
        }
    }
    let staged_report = format!("{}clean.json", Warehouse::staging_root(STAGE, date));
    warehouse.write_json(&staged_report, &report).await?;
    commit.file(&staged_report, &Warehouse::run_file(date, "clean.json"));
    warehouse.publish(commit).await?;
    warehouse.remove_all(&Warehouse::staging_root(STAGE, date)).await?;
    Ok(report)
}

/// One table's deduplication, planned: its rule SQL bound to this table's staged parse (so
/// several tables' plans can run at once), and the name its staged parse is registered
/// under for the counting queries.
struct DedupPlan {
    table: &'static Table,
    counts: ParseCounts,
    date: ProcessingDate,
    df: datafusion::prelude::DataFrame,
    parsed_name: String,
}

/// Plans the deduplication (and for transactions the enrichment) of one staged table. The
/// rule SQL reads the tables `parsed` and `rates`; a plan keeps the table it was planned
/// against, so the next table may re-register those names.
async fn plan_dedup(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    table: &'static Table,
    counts: ParseCounts,
    date: ProcessingDate,
) -> Result<DedupPlan> {
    let staged_parsed = warehouse.url(&Warehouse::staging(STAGE, date, PARSED, table.name));
    let parsed_name = format!("parsed_{}", table.name);
    for name in ["parsed", parsed_name.as_str()] {
        engine
            .register_parquet_dir(name, &staged_parsed, Some(table.parsed_schema()))
            .await?;
    }
    // Enrichment reads this run's cleaned rates (cleaned before the tables that use them; the
    // files are listed when the plan runs, not now).
    let rates = &crate::schema::CURRENCY_RATES;
    let rates_url = warehouse.url(&Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), rates.name));
    engine
        .register_parquet_dir("rates", &rates_url, Some(rates.cleaned_schema()))
        .await?;
    let columns = table.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let query = sql.render(
        table.clean_sql,
        &[("columns", &columns), ("id", table.id), ("event", table.event)],
    )?;
    let df = engine.sql(&query, &format!("cleaning {}", table.name)).await?;
    Ok(DedupPlan {
        table,
        counts,
        date,
        df,
        parsed_name,
    })
}

/// Runs one table's planned deduplication into staged cleaned Parquet, in `buckets` client
/// buckets when the table has a client_id, and reconciles its counts.
async fn dedup_table(engine: &Engine, warehouse: &Warehouse, plan: DedupPlan, buckets: u32) -> Result<TableQuality> {
    let DedupPlan {
        table,
        counts,
        date,
        df,
        parsed_name,
    } = plan;
    let what = format!("cleaning {}", table.name);
    let staged = Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), table.name);
    let out = warehouse.url(&staged);
    let write = async {
        if table.has_client_id() {
            let scratch = Warehouse::staging(STAGE, date, "bucketing", table.name);
            write_bucketed(engine, warehouse, df, &staged, &scratch, buckets, &what).await
        } else {
            engine.write_parquet_dir(df, &out, &what).await
        }
    };
    // The ids are counted while the table is written: both only read the staged parse, and
    // the write's encoding leaves a core free.
    let ids = count_parsed_ids(engine, table, &parsed_name, buckets);
    let (_, ids) = futures::try_join!(write, ids)?;
    let counted = count_independently(warehouse, (table, &counts), ids, date, &staged).await?;
    let without_rate = match table.derived {
        [] => None,
        derived => {
            let cleaned_name = format!("cleaned_{}", table.name);
            engine
                .register_parquet_dir(&cleaned_name, &out, Some(table.cleaned_schema()))
                .await?;
            let column = derived[0].name;
            let count = format!("SELECT count(*) FROM {cleaned_name} WHERE {column} IS NULL");
            Some(scalar_u64(
                &engine
                    .collect(&count, &format!("counting rows without {column}"))
                    .await?,
            ))
        }
    };
    let quality = TableQuality {
        table: table.name.to_string(),
        read: counts.read,
        written: counted.written,
        quarantined: counts.quarantined_total(),
        quarantined_by_reason: counts.quarantined.clone(),
        duplicates_removed: counted.duplicates,
        nulled_unparsable: counts.nulled_unparsable.clone(),
        without_rate,
    };
    tracing::info!(
        table = table.name,
        read = quality.read,
        written = quality.written,
        quarantined = quality.quarantined,
        duplicates = quality.duplicates_removed,
        "cleaned"
    );
    if !quality.reconciles() {
        return Err(Error::Reconcile {
            table: table.name.into(),
            message: format!(
                "read {} != written {} + quarantined {} + duplicates {} (written counted in the files, duplicates from the parsed ids): rows were lost after parsing; check the SQL files overridden with sql.dir",
                quality.read, quality.written, quality.quarantined, quality.duplicates_removed
            ),
        });
    }
    Ok(quality)
}

/// What a table's clean wrote and dropped, each counted on its own.
struct IndependentCounts {
    /// Rows in the footers of the written (staged) cleaned files.
    written: u64,
    /// Parsed rows minus distinct parsed ids: the copies deduplication must remove.
    duplicates: u64,
}

/// (typed rows, distinct ids) of a table's staged parse, counted in `buckets` passes, each
/// over the ids of one hash bucket, so the distinct ids held at once stay within the memory
/// budget as the day grows (one pass per 500k clients by default: 20M transaction ids at 5M
/// clients do not fit 512 MiB at once).
async fn count_parsed_ids(
    engine: &Engine,
    table: &'static Table,
    parsed_table: &str,
    buckets: u32,
) -> Result<(u64, u64)> {
    let (mut parsed, mut distinct) = (0, 0);
    for bucket in 0..buckets.max(1) {
        let filter = if buckets > 1 {
            format!(" WHERE client_bucket({}, {buckets}) = {bucket}", table.id)
        } else {
            String::new()
        };
        let query = format!(
            "SELECT count(*), count(DISTINCT {}) FROM {parsed_table}{filter}",
            table.id
        );
        let batches = engine
            .collect(&query, &format!("counting the ids of {}", table.name))
            .await?;
        parsed += first_row_u64(&batches, 0);
        distinct += first_row_u64(&batches, 1);
    }
    Ok((parsed, distinct))
}

/// Counts the written rows from the files and the duplicates from the parsed ids (`parsed`
/// rows, `distinct` ids), and checks that the staged parse holds exactly what the parser
/// counted (typed rows and quarantine rows).
async fn count_independently(
    warehouse: &Warehouse,
    (table, counts): (&'static Table, &ParseCounts),
    (parsed, distinct): (u64, u64),
    date: ProcessingDate,
    staged: &str,
) -> Result<IndependentCounts> {
    let quarantine = Warehouse::staging(STAGE, date, Zone::Quarantine.dir(), table.name);
    let quarantined = footer_rows(warehouse, &quarantine).await?;
    if parsed != counts.parsed || quarantined != counts.quarantined_total() {
        return Err(Error::Reconcile {
            table: table.name.into(),
            message: format!(
                "the parser counted {} typed and {} quarantined rows, but staging holds {parsed} and {quarantined}",
                counts.parsed,
                counts.quarantined_total()
            ),
        });
    }
    Ok(IndependentCounts {
        written: footer_rows(warehouse, staged).await?,
        duplicates: parsed - distinct,
    })
}
