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

use dedup::{dedup_table, parsed_files, plan_dedup, register_rates, write_rate_lookup};

use ebroker_plans::parse::{add_counts, CsvParseTask, ParseResult, RawParseTask};
use ebroker_plans::run::{run_tasks, Runner};
use ebroker_plans::splits::{self, CountResult, CountTask};
use ebroker_plans::work::Work;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Flag, Stage, StageContext, StageReport};
use crate::config::CleanConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::formats::csv::Split;
use crate::formats::record::ParseCounts;
use crate::schema::TABLES;
use crate::sql::SqlLibrary;
use crate::warehouse::buckets::bucket_count;
use crate::warehouse::commit::Commit;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;
use sources::SourceFile;

mod dedup;
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
    let (tasks, passes) = csv_parse_tasks(engine, warehouse, files, config, date).await?;
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
    finish(engine, warehouse, (sql, config), (counts, passes), date).await
}

/// The deduplication passes of each table of a day (by table name).
type Passes = BTreeMap<&'static str, u32>;

/// One parse task per split of each file, largest first (so the last task to start is a short
/// one); the line breaks before each split are counted by tasks first. Also the passes each
/// table is deduplicated in, from the rows the file is expected to hold.
async fn csv_parse_tasks(
    engine: &Engine,
    warehouse: &Warehouse,
    files: Vec<SourceFile>,
    config: &CleanConfig,
    date: ProcessingDate,
) -> Result<(Vec<CsvParseTask>, Passes)> {
    let mut cuts: Vec<(SourceFile, Vec<Split>)> = files
        .into_iter()
        .map(|file| {
            let splits = splits::cut(file.size, config.split_bytes);
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
    let expected_clients = cuts
        .iter()
        .find(|(file, _)| file.table.name == crate::schema::CLIENTS.name)
        .map_or(0, |(file, splits)| expected_lines(file.size, splits));
    let buckets = bucket_count(expected_clients, warehouse.clients_per_bucket());
    let mut tasks = Vec::new();
    let mut passes = Passes::new();
    for (file, splits) in cuts {
        let rows = expected_lines(file.size, &splits);
        let table_passes = dedup::passes(config, (file.table, rows), buckets);
        passes.insert(file.table.name, table_passes);
        for (index, split) in splits.into_iter().enumerate() {
            let bytes = split.end.min(file.size).saturating_sub(split.start);
            let name = format!("part-{index:05}.parquet");
            let quarantine = Warehouse::staging(STAGE, date, Zone::Quarantine.dir(), file.table.name);
            let task = CsvParseTask {
                table: file.table.name.to_string(),
                csv: file.url.to_string(),
                split,
                parsed: parsed_files(warehouse, date, file.table, table_passes, &name),
                quarantine: warehouse.url(&format!("{quarantine}{name}")).to_string(),
            };
            tasks.push((bytes, task));
        }
    }
    tasks.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    Ok((tasks.into_iter().map(|(_, task)| task).collect(), passes))
}

/// The lines a file of `size` bytes cut into `splits` (numbered) is expected to hold: the
/// line breaks counted before its last split, scaled to the whole file; for a file of one
/// split, one line per 64 bytes. An estimate that sizes the deduplication passes only.
fn expected_lines(size: u64, splits: &[Split]) -> u64 {
    match splits.last() {
        Some(last) if last.start > 0 => {
            (u128::from(last.newlines_before) * u128::from(size) / u128::from(last.start)) as u64
        }
        _ => size / 64,
    }
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
    let records = |table: &str| manifest.topic(table).map_or(0, |t| t.records);
    let buckets = bucket_count(records(crate::schema::CLIENTS.name), warehouse.clients_per_bucket());
    let passes: Passes = TABLES
        .iter()
        .map(|table| (table.name, dedup::passes(config, (table, records(table.name)), buckets)))
        .collect();
    let tasks = raw_parse_tasks(warehouse, &passes, date).await?;
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
    finish(engine, warehouse, (sql, config), (counts, passes), date).await
}

/// One parse task per raw file of `date` (one per Kafka partition range ingest dumped), each
/// into its own staged typed files (one per deduplication pass) and quarantine file.
async fn raw_parse_tasks(warehouse: &Warehouse, passes: &Passes, date: ProcessingDate) -> Result<Vec<RawParseTask>> {
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
        let quarantine = Warehouse::staging(STAGE, date, Zone::Quarantine.dir(), table.name);
        let table_passes = passes.get(table.name).copied().unwrap_or(1);
        for name in files {
            tasks.push(RawParseTask {
                table: table.name.to_string(),
                raw: warehouse.url(&format!("{raw}{name}")).to_string(),
                parsed: parsed_files(warehouse, date, table, table_passes, &name),
                quarantine: warehouse.url(&format!("{quarantine}{name}")).to_string(),
            });
        }
    }
    Ok(tasks)
}

/// Deduplicates, reconciles and publishes the staged parse of every table, then writes the
/// data-quality report. The currency rates go first, and the rate lookup the transactions'
/// enrichment reads is computed from them, then the other tables, largest first,
/// `clean.tables_at_once` at a time: one table's deduplication runs on one partition (dedup.rs),
/// so two at a time keep both cores of a small machine (or two executors) busy.
async fn finish(
    engine: &Engine,
    warehouse: &Warehouse,
    (sql, config): (&SqlLibrary, &CleanConfig),
    (counts, passes): (Vec<ParseCounts>, Passes),
    date: ProcessingDate,
) -> Result<CleanReport> {
    let clients = TABLES
        .iter()
        .zip(&counts)
        .find(|(t, _)| t.name == crate::schema::CLIENTS.name)
        .map_or(0, |(_, c)| c.parsed);
    let buckets = bucket_count(clients, warehouse.clients_per_bucket());
    register_rates(engine, warehouse, date).await?;
    let mut plans = Vec::new();
    for (table, counts) in TABLES.iter().copied().zip(counts) {
        let table_passes = passes.get(table.name).copied().unwrap_or(1);
        plans.push(plan_dedup(engine, (warehouse, sql), (table, counts, table_passes), date).await?);
    }
    let (rates, mut others): (Vec<_>, Vec<_>) = plans
        .into_iter()
        .partition(|plan| plan.table.name == crate::schema::CURRENCY_RATES.name);
    others.sort_by_key(|plan| std::cmp::Reverse(plan.counts.parsed));
    let mut qualities = Vec::new();
    for plan in rates {
        qualities.push(dedup_table(engine, warehouse, plan, buckets).await?);
    }
    write_rate_lookup(engine, (warehouse, sql), date).await?;
    let rest: Vec<TableQuality> = futures::stream::iter(others)
        .map(|plan| dedup_table(engine, warehouse, plan, buckets))
        .buffer_unordered(config.tables_at_once())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(start: u64, newlines_before: u64) -> Split {
        Split {
            start,
            end: start + 100,
            newlines_before,
        }
    }

    #[test]
    fn expected_lines_scale_the_counted_splits_to_the_file() {
        // 300 bytes counted before the last split held 30 lines: 400 bytes hold about 40
        let splits = [split(0, 0), split(100, 10), split(200, 20), split(300, 30)];
        assert_eq!(expected_lines(400, &splits), 40);
        // one split: nothing counted, one line per 64 bytes
        assert_eq!(expected_lines(6400, &[split(0, 0)]), 100);
    }

    #[test]
    fn one_bucket_days_and_reference_tables_take_one_pass_and_bucketed_tables_follow_their_rows() {
        let config = crate::config::Config::load_from(None, &[], &[]).unwrap().clean;
        let (rates, transactions) = (&crate::schema::CURRENCY_RATES, &crate::schema::BANK_TRANSACTIONS);
        assert_eq!(dedup::passes(&config, (rates, 50_000_000), 10), 1);
        assert_eq!(dedup::passes(&config, (transactions, 15_000_000), 1), 1);
        assert_eq!(dedup::passes(&config, (transactions, 900_000), 10), 1);
        assert_eq!(dedup::passes(&config, (transactions, 15_000_000), 10), 15);
    }
}
