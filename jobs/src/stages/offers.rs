//! The offers stage (docs/SPEC.md §6): `marketing_clients` (combined segment, priority, activity
//! score, total value) and `targeted_offers` (three offers per client from the marketing-owned
//! template file `sql/offer_templates.csv`, expected revenue, days valid, deterministic
//! offer ids, next-best-action rank), both as marts of the processing date.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use ebroker_plans::run::write_partitions;
use serde::Serialize;

use super::{Stage, StageContext, StageReport};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::formats::fields::{parse_int, split_csv_line, trim};
use crate::schema::marts::{CLIENT_SEGMENTATION, MARKETING_CLIENTS, OFFER_TEMPLATES, TARGETED_OFFERS};
use crate::sql::SqlLibrary;
use crate::tables::partitions::{register_mart, stage_batch, PartitionWriter};
use crate::warehouse::commit::Commit;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

const STAGE: &str = "offers";

pub struct Offers;

#[async_trait::async_trait]
impl Stage for Offers {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn command(&self) -> &'static [&'static str] {
        &["offers"]
    }

    fn about(&self) -> &'static str {
        "Compute marketing_clients and targeted_offers from the segmentation (SPEC §6)"
    }

    fn enabled(&self, _: &StageContext) -> bool {
        true
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let count = offers(ctx.engine().await?, &ctx.warehouse, &ctx.sql, ctx.date).await?;
        let summary = format!(
            "{} {}: {} clients; {}: {} offers\n",
            MARKETING_CLIENTS.name, ctx.date, count.clients, TARGETED_OFFERS.name, count.offers
        );
        Ok(StageReport {
            rows: count.offers,
            summary,
            tables: Vec::new(),
        })
    }
}

/// The template file, relative to `sql/`.
pub const TEMPLATES: &str = OFFER_TEMPLATES.sql;

/// The combined segments of SPEC §6; every one needs templates.
pub const COMBINED_SEGMENTS: [&str; 8] = [
    "VIP Active",
    "VIP Passive",
    "Premium Active",
    "Premium Passive",
    "Standard Active",
    "Standard Passive",
    "Transaction Only",
    "Low Engagement",
];

const HEADER: &str = "combined_segment,offer_type,offer_description,base_revenue,offer_priority";

/// Rows written by the offers stage.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OffersCount {
    pub clients: u64,
    pub offers: u64,
}

/// Parses and checks the offer templates: the header, whole numbers, a priority in 1..=255,
/// and templates for every combined segment. Errors name the line and the fix.
pub fn load_templates(sql: &SqlLibrary) -> Result<RecordBatch> {
    let text = sql.get(TEMPLATES)?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    if header != HEADER {
        return Err(template_error(
            1,
            &format!("header is {header:?}; it must be {HEADER:?}"),
        ));
    }
    let mut columns: [Vec<String>; 3] = Default::default();
    let (mut revenue, mut priority) = (Vec::new(), Vec::new());
    let mut per_segment: BTreeMap<String, usize> = BTreeMap::new();
    for (index, line) in lines {
        let number = index + 1;
        let mut fields = Vec::new();
        if !split_csv_line(line, &mut fields) || fields.len() != 5 {
            return Err(template_error(
                number,
                "needs 5 comma-separated fields (quote text that contains commas)",
            ));
        }
        let segment = trim(&fields[0]).to_string();
        if !COMBINED_SEGMENTS.contains(&segment.as_str()) {
            return Err(template_error(
                number,
                &format!("unknown combined segment {segment:?}; use one of {COMBINED_SEGMENTS:?}"),
            ));
        }
        let base = parse_int(trim(&fields[3])).filter(|v| *v >= 0);
        let prio = parse_int(trim(&fields[4])).filter(|v| (1..=255).contains(v));
        let (Some(base), Some(prio)) = (base, prio) else {
            return Err(template_error(
                number,
                "base_revenue must be a whole number >= 0 and offer_priority a whole number 1..255",
            ));
        };
        *per_segment.entry(segment.clone()).or_default() += 1;
        columns[0].push(segment);
        columns[1].push(trim(&fields[1]).to_string());
        columns[2].push(trim(&fields[2]).to_string());
        revenue.push(base);
        priority.push(prio);
    }
    if let Some(missing) = COMBINED_SEGMENTS.iter().find(|s| !per_segment.contains_key(**s)) {
        return Err(template_error(
            0,
            &format!("no offers for combined segment {missing:?}; every segment needs its offers"),
        ));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("combined_segment", DataType::Utf8, false),
        Field::new("offer_type", DataType::Utf8, false),
        Field::new("offer_description", DataType::Utf8, false),
        Field::new("base_revenue", DataType::Int64, false),
        Field::new("offer_priority", DataType::Int64, false),
    ]));
    let [segments, types, descriptions] = columns;
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(segments)),
        Arc::new(StringArray::from(types)),
        Arc::new(StringArray::from(descriptions)),
        Arc::new(Int64Array::from(revenue)),
        Arc::new(Int64Array::from(priority)),
    ];
    Ok(RecordBatch::try_new(schema, arrays).expect("template columns match their schema"))
}

fn template_error(line: usize, message: &str) -> Error {
    let place = if line == 0 {
        String::new()
    } else {
        format!(" line {line}")
    };
    Error::Config(format!("{TEMPLATES}{place}: {message}"))
}

/// Stages the checked templates as `marts/offer_templates/processing_date=D/` (a record
/// of which templates made the day's offers, readable by cluster nodes), adds them to
/// `commit` and registers them as table `offer_templates`.
async fn stage_templates(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    commit: &mut Commit,
    date: ProcessingDate,
) -> Result<()> {
    let batch = load_templates(sql)?;
    let staged = stage_batch(
        warehouse,
        commit,
        STAGE,
        (Zone::Marts, OFFER_TEMPLATES.name),
        date,
        &batch,
    )
    .await?;
    engine.register_parquet_dir(OFFER_TEMPLATES.name, &staged, None).await
}

/// Computes `marketing_clients` and `targeted_offers` for `date` from its segmentation and
/// publishes them with the day's templates in one commit: a reader never sees the offers of
/// one run beside the clients of another.
pub async fn offers(
    engine: &Engine,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<OffersCount> {
    let mut commit = Commit::new(STAGE, date);
    stage_templates(engine, warehouse, sql, &mut commit, date).await?;
    register_mart(engine, warehouse, CLIENT_SEGMENTATION.name, date).await?;
    let params = [("processing_date", date.as_str())];
    let mut output = PartitionWriter::begin(warehouse, STAGE, Zone::Marts, MARKETING_CLIENTS.name, date).await?;
    write_mart(
        engine,
        &mut output,
        &sql.render(MARKETING_CLIENTS.sql, &params)?,
        "marketing clients",
    )
    .await?;
    engine
        .register_parquet_dir(MARKETING_CLIENTS.name, &output.staged_url(), None)
        .await?;
    let clients = output.add_to(&mut commit);
    let mut output = PartitionWriter::begin(warehouse, STAGE, Zone::Marts, TARGETED_OFFERS.name, date).await?;
    write_mart(
        engine,
        &mut output,
        &sql.render(TARGETED_OFFERS.sql, &params)?,
        "targeted offers",
    )
    .await?;
    let offers = output.add_to(&mut commit);
    warehouse.publish(commit).await?;
    for table in [OFFER_TEMPLATES.name, MARKETING_CLIENTS.name] {
        register_mart(engine, warehouse, table, date).await?;
    }
    tracing::info!(%date, clients, offers, "published the day's offers");
    Ok(OffersCount { clients, offers })
}

/// Runs `sql` and adds its result to `output`, each partition written where it is computed (on
/// a cluster, by the task that computed it: no stage that gathers every row into one writer).
async fn write_mart(engine: &Engine, output: &mut PartitionWriter<'_>, sql: &str, what: &str) -> Result<u64> {
    let df = engine.sql(sql, what).await?;
    output
        .write_with(|dir, prefix| write_partitions(engine, df, dir, prefix, what))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_cover_every_segment_three_times() {
        let batch = load_templates(&SqlLibrary::default()).unwrap();
        assert_eq!(batch.num_rows(), 24);
    }

    #[test]
    fn bad_templates_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TEMPLATES), format!("{HEADER}\nVIP Active,X,Y,lots,1\n")).unwrap();
        let err = load_templates(&SqlLibrary::new(Some(dir.path().to_path_buf())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("base_revenue"), "{err}");
        std::fs::write(dir.path().join(TEMPLATES), format!("{HEADER}\nVIP Active,X,Y,1,1\n")).unwrap();
        let err = load_templates(&SqlLibrary::new(Some(dir.path().to_path_buf())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("VIP Passive"), "{err}");
    }
}
