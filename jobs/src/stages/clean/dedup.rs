//! Deduplication, the second step of cleaning (docs/SPEC.md §4): one table's staged parse into
//! its staged cleaned files, with the counts that reconcile it, each taken on its own. A table
//! expected to hold more than `clean.dedup_pass_rows` rows is deduplicated in passes
//! (docs/DESIGN.md, "Deduplication in passes"): the parse wrote each typed row into the pass of
//! a hash of its id ([`pass_of`](crate::warehouse::buckets::pass_of)), so a pass holds every
//! copy of its ids and hashes them in memory, where the whole table's ids would spill the day
//! to disk. Each pass writes its rows of every client bucket into a scratch file, and concat
//! tasks (on the executors with `--cluster`) join each bucket's scratch files into its one file.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ebroker_plans::concat::{ConcatResult, ConcatTask};
use ebroker_plans::run::{run_tasks, Runner};
use ebroker_plans::work::Work;

use super::{TableQuality, STAGE};
use crate::config::CleanConfig;
use crate::engine::{first_row_u64, scalar_u64, Engine};
use crate::error::{Error, Result};
use crate::formats::record::ParseCounts;
use crate::schema::Table;
use crate::sql::SqlLibrary;
use crate::tables::buckets::{partition_dir, write_bucketed, write_partitioned};
use crate::tables::partitions::footer_rows;
use crate::warehouse::buckets::file_name;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

/// Staging part holding the typed rows between parsing and deduplication.
const PARSED: &str = "parsed";

/// How many passes `table` is deduplicated in, for `rows` expected parsed rows on a day of
/// `buckets` client buckets (estimated, like the rows, before the parse). A day of one
/// bucket takes one pass per table: its tables are deduplicated at once, and several passes
/// would be joined into the one bucket file by copying the whole table (500k clients: clean
/// 7.5 s in one pass, 8.6 s with the transactions in two, measured when deduplication
/// sorted). A table without a client_id (reference data: the currency rates) takes one too:
/// its cleaned files are not bucketed, so its passes' files would have no bucket file to be
/// joined into.
pub fn passes(config: &CleanConfig, (table, rows): (&Table, u64), buckets: u32) -> u32 {
    if table.has_client_id() && buckets > 1 {
        config.dedup_passes(rows)
    } else {
        1
    }
}

/// The staged typed files (URLs) one parse task writes, one per pass: the file `name` in each
/// pass's directory of the table's staged parse.
pub fn parsed_files(
    warehouse: &Warehouse,
    date: ProcessingDate,
    table: &Table,
    passes: u32,
    name: &str,
) -> Vec<String> {
    (0..passes)
        .map(|pass| {
            let dir = parsed_dir(date, table, (pass, passes));
            warehouse.url(&format!("{dir}{name}")).to_string()
        })
        .collect()
}

/// The directory of `pass` of `passes` of a table's staged parse: the whole staged parse when
/// the table has one pass.
fn parsed_dir(date: ProcessingDate, table: &Table, (pass, passes): (u32, u32)) -> String {
    let dir = Warehouse::staging(STAGE, date, PARSED, table.name);
    if passes == 1 {
        dir
    } else {
        format!("{dir}{}", pass_dir(pass))
    }
}

/// The directory name of one pass, in the staged parse and in the bucketing scratch.
fn pass_dir(pass: u32) -> String {
    format!("pass-{pass:05}/")
}

/// The rule that turns the cleaned currency rates into the transactions' rate lookup.
const RATE_LOOKUP_SQL: &str = "datafusion/clean_rate_lookup.sql";

/// The staging part holding the rate lookup.
const RATE_LOOKUP: &str = "rate_lookup";

/// Registers this run's cleaned (staged) currency rates as `rates`, and the rate lookup the
/// transactions' enrichment reads as `rate_lookup` ([`write_rate_lookup`]); the files are
/// listed when a plan runs, after the rates are cleaned and the lookup written.
pub async fn register_rates(engine: &Engine, warehouse: &Warehouse, date: ProcessingDate) -> Result<()> {
    let rates = &crate::schema::CURRENCY_RATES;
    let url = warehouse.url(&Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), rates.name));
    engine
        .register_parquet_dir("rates", &url, Some(rates.cleaned_schema()))
        .await?;
    let lookup = warehouse.url(&Warehouse::staging(STAGE, date, RATE_LOOKUP, "all"));
    engine
        .register_parquet_dir(RATE_LOOKUP, &lookup, Some(rate_lookup_schema()))
        .await
}

/// The columns of the rate lookup (clean_rate_lookup.sql).
fn rate_lookup_schema() -> SchemaRef {
    let field = |name, kind| Field::new(name, kind, true);
    Arc::new(Schema::new(vec![
        field("currency_pair", DataType::Utf8),
        field("rate_day", DataType::Date32),
        field("rate_value", DataType::Float64),
        field("earliest_value", DataType::Float64),
    ]))
}

/// Writes the rate lookup from the cleaned rates, once per run: every pass of the
/// transactions reads it, where computing it from the rates in each pass cost each pass a
/// million-row sort at 5M clients.
pub async fn write_rate_lookup(
    engine: &Engine,
    (warehouse, sql): (&Warehouse, &SqlLibrary),
    date: ProcessingDate,
) -> Result<()> {
    let what = "computing the rate lookup";
    let df = engine.sql(&sql.render(RATE_LOOKUP_SQL, &[])?, what).await?;
    let lookup = warehouse.url(&Warehouse::staging(STAGE, date, RATE_LOOKUP, "all"));
    engine.write_parquet_dir(df, &lookup, what).await?;
    Ok(())
}

/// How a table's deduplication rule is planned (clean_dedup.sql): on one partition, so its
/// files hold the rows in the order of the parse (the staged files in name order) on every
/// run, and without join reordering, so the hash joins build on the few replaced copies (and
/// the transactions' rates) as the rule writes them while every parsed row streams through.
/// Two tables are deduplicated at once (`clean.tables_at_once`) to keep two cores busy.
const DEDUP_OPTIONS: &[(&str, &str)] = &[
    ("datafusion.execution.target_partitions", "1"),
    ("datafusion.optimizer.join_reordering", "false"),
];

/// One table's deduplication, planned: its rule SQL bound to each pass's staged parse (so
/// several tables' plans can run at once).
pub struct DedupPlan {
    pub table: &'static Table,
    pub counts: ParseCounts,
    date: ProcessingDate,
    passes: Vec<PassPlan>,
}

/// One pass of a table: its plan, and the name its staged parse is registered under for the
/// counting query.
struct PassPlan {
    df: datafusion::prelude::DataFrame,
    parsed_name: String,
}

/// Plans the deduplication (and for transactions the enrichment) of one staged table in
/// `passes` passes. The rule SQL reads the tables `parsed` and `rates`; a plan keeps the
/// table it was planned against, so the next pass or table may re-register `parsed`.
pub async fn plan_dedup(
    engine: &Engine,
    (warehouse, sql): (&Warehouse, &SqlLibrary),
    (table, counts, passes): (&'static Table, ParseCounts, u32),
    date: ProcessingDate,
) -> Result<DedupPlan> {
    let columns = table.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let query = sql.render(
        table.clean_sql,
        &[("columns", &columns), ("id", table.id), ("event", table.event)],
    )?;
    let mut plans = Vec::new();
    for pass in 0..passes {
        let staged_parsed = warehouse.url(&parsed_dir(date, table, (pass, passes)));
        let parsed_name = format!("parsed_{}_{pass}", table.name);
        for name in ["parsed", parsed_name.as_str()] {
            engine
                .register_parquet_dir(name, &staged_parsed, Some(table.parsed_schema()))
                .await?;
        }
        let df = engine
            .sql_with_options(&query, DEDUP_OPTIONS, &format!("cleaning {}", table.name))
            .await?;
        plans.push(PassPlan { df, parsed_name });
    }
    Ok(DedupPlan {
        table,
        counts,
        date,
        passes: plans,
    })
}

/// Runs one table's planned deduplication into staged cleaned Parquet, in `buckets` client
/// buckets when the table has a client_id, and reconciles its counts.
pub async fn dedup_table(
    engine: &Engine,
    warehouse: &Warehouse,
    plan: DedupPlan,
    buckets: u32,
) -> Result<TableQuality> {
    let DedupPlan {
        table,
        counts,
        date,
        mut passes,
    } = plan;
    let what = format!("cleaning {}", table.name);
    let staged = Warehouse::staging(STAGE, date, Zone::Cleaned.dir(), table.name);
    let scratch = Warehouse::staging(STAGE, date, "bucketing", table.name);
    let ids = match passes.len() {
        1 => {
            let pass = passes.remove(0);
            // The ids are counted while the table is written: both only read the staged
            // parse, and the write's encoding leaves a core free.
            let write = async {
                if table.has_client_id() {
                    write_bucketed(engine, warehouse, pass.df, (&staged, &scratch), buckets, &what).await
                } else {
                    engine.write_parquet_dir(pass.df, &warehouse.url(&staged), &what).await
                }
            };
            let ids = count_parsed_ids(engine, table, &pass.parsed_name);
            futures::try_join!(write, ids)?.1
        }
        _ => write_in_passes(engine, warehouse, (table, passes), (&staged, &scratch), buckets).await?,
    };
    let counted = count_independently(warehouse, (table, &counts), ids, date, &staged).await?;
    let without_rate = count_without_rate(engine, warehouse, table, &staged).await?;
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

/// Runs a table's passes one after another, each writing its rows split by client bucket
/// under `scratch` (zstd, as the cleaned zone keeps them) while the ids of its staged parse
/// are counted, then joins each bucket's files into its staged file by copying their column
/// chunks (`concat`). Returns the (typed rows, distinct ids) of
/// the staged parse: a sum over the passes, since every copy of an id is in one pass.
async fn write_in_passes(
    engine: &Engine,
    warehouse: &Warehouse,
    (table, passes): (&'static Table, Vec<PassPlan>),
    (staged, scratch): (&str, &str),
    buckets: u32,
) -> Result<(u64, u64)> {
    warehouse.remove_all(scratch).await?;
    let pass_count = passes.len() as u32;
    let (mut parsed, mut distinct) = (0, 0);
    for (pass, plan) in (0..).zip(passes) {
        let what = format!("cleaning {} (pass {} of {pass_count})", table.name, pass + 1);
        let dir = format!("{scratch}{}", pass_dir(pass));
        let write = write_partitioned(engine, warehouse, plan.df, (&dir, None), buckets, &what);
        let count = count_parsed_ids(engine, table, &plan.parsed_name);
        let (_, (pass_parsed, pass_distinct)) = futures::try_join!(write, count)?;
        parsed += pass_parsed;
        distinct += pass_distinct;
    }
    concat_buckets(engine, warehouse, table, (scratch, pass_count), (staged, buckets)).await?;
    warehouse.remove_all(scratch).await?;
    Ok((parsed, distinct))
}

/// One concat task per client bucket: its scratch files of every pass, in pass order, into
/// the bucket's staged file (an empty file for a bucket without rows).
async fn concat_buckets(
    engine: &Engine,
    warehouse: &Warehouse,
    table: &'static Table,
    (scratch, passes): (&str, u32),
    (staged, buckets): (&str, u32),
) -> Result<()> {
    let files = warehouse.list_files(scratch).await?;
    let scratch_prefix = warehouse.path(scratch);
    let mut tasks = Vec::new();
    for bucket in 0..buckets {
        let mut inputs = Vec::new();
        for pass in 0..passes {
            let dir = partition_dir(&pass_dir(pass), bucket);
            // the listing is sorted, so a bucket's files of a pass come in name order
            inputs.extend(files.iter().filter_map(|file| {
                let relative: Vec<String> = file
                    .prefix_match(&scratch_prefix)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let relative = relative.join("/");
                relative
                    .strip_prefix(&dir)
                    .filter(|name| !name.contains('/'))
                    .map(|_| warehouse.url(&format!("{scratch}{relative}")).to_string())
            }));
        }
        tasks.push(ConcatTask {
            table: table.name.to_string(),
            inputs,
            output: warehouse
                .url(&format!("{staged}{}", file_name(bucket, buckets)))
                .to_string(),
        });
    }
    let bar = crate::progress::bar(tasks.len() as u64, "join", "buckets");
    let joined: Vec<ConcatResult> = run_tasks(&Runner::Engine(engine), Work::Concat, &tasks, STAGE, &bar).await?;
    bar.finish_and_clear();
    tracing::info!(
        table = table.name,
        buckets = joined.len(),
        rows = joined.iter().map(|j| j.rows).sum::<u64>(),
        "joined the passes' files"
    );
    Ok(())
}

/// For a table with a derived column (the transactions' amount_rub), the cleaned rows where
/// it is NULL (no rate for the currency).
async fn count_without_rate(
    engine: &Engine,
    warehouse: &Warehouse,
    table: &'static Table,
    staged: &str,
) -> Result<Option<u64>> {
    let [derived, ..] = table.derived else {
        return Ok(None);
    };
    let cleaned_name = format!("cleaned_{}", table.name);
    engine
        .register_parquet_dir(&cleaned_name, &warehouse.url(staged), Some(table.cleaned_schema()))
        .await?;
    let column = derived.name;
    let count = format!("SELECT count(*) FROM {cleaned_name} WHERE {column} IS NULL");
    let batches = engine
        .collect(&count, &format!("counting rows without {column}"))
        .await?;
    Ok(Some(scalar_u64(&batches)))
}

/// What a table's clean wrote and dropped, each counted on its own.
struct IndependentCounts {
    /// Rows in the footers of the written (staged) cleaned files.
    written: u64,
    /// Parsed rows minus distinct parsed ids: the copies deduplication must remove.
    duplicates: u64,
}

/// (typed rows, distinct ids) of a staged parse (a whole table, or one pass of it: a pass
/// holds at most about `clean.dedup_pass_rows` ids, so the distinct ids held at once stay
/// within the memory budget as the day grows).
async fn count_parsed_ids(engine: &Engine, table: &'static Table, parsed_table: &str) -> Result<(u64, u64)> {
    let query = format!("SELECT count(*), count(DISTINCT {}) FROM {parsed_table}", table.id);
    let batches = engine
        .collect(&query, &format!("counting the ids of {}", table.name))
        .await?;
    Ok((first_row_u64(&batches, 0), first_row_u64(&batches, 1)))
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
