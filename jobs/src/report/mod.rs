//! The HTML run report (`ebroker report --html`): one self-contained page per date for the
//! marketing team and operators — segment and combined-segment distribution, offers by type
//! with their expected revenue, the top clients, data quality (records quarantined by table and
//! reason) and the stage timings and memory of the last runs — each as a chart ([`svg`]) with
//! its numbers in a table beneath. It reads the warehouse's marts with the SQL in
//! `sql/datafusion/page_*.sql` and the run history in `_runs/`; no network is needed to view it.

pub mod svg;

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::runner::history::{self, DayRecord};
use crate::schema::marts::{CLIENT_SEGMENTATION, MARKETING_CLIENTS, TARGETED_OFFERS};
use crate::sql::SqlLibrary;
use crate::tables::partitions::register_mart;
use crate::warehouse::Warehouse;
use crate::ProcessingDate;
use svg::{bar_chart, escape};

/// The runs the timing and memory charts cover.
const RECENT_RUNS: usize = 14;

/// The mart sections: chart id, title, SQL file; each query answers a `label` first and a
/// `value` that sizes the bars.
const MART_SECTIONS: &[(&str, &str, &str)] = &[
    ("segments", "Clients by segment", "datafusion/page_segments.sql"),
    (
        "combined_segments",
        "Clients by combined segment",
        "datafusion/page_combined_segments.sql",
    ),
    (
        "offers_by_type",
        "Expected revenue of the offers, by offer type",
        "datafusion/page_offers_by_type.sql",
    ),
];

/// One section of the page: a chart of `bars` and the table of `header` and `rows`.
struct Section {
    id: String,
    title: String,
    bars: Vec<(String, f64)>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The page of `date`: the marts of that date must exist (`ebroker run` or the stages).
pub async fn render(engine: &Engine, warehouse: &Warehouse, sql: &SqlLibrary, date: ProcessingDate) -> Result<String> {
    for mart in [CLIENT_SEGMENTATION.name, MARKETING_CLIENTS.name, TARGETED_OFFERS.name] {
        register_mart(engine, warehouse, mart, date).await?;
    }
    let mut sections = Vec::new();
    for (id, title, file) in MART_SECTIONS {
        let batches = engine.collect(&sql.render(file, &[])?, title).await?;
        sections.push(section_of(id, title, &batches, "value")?);
    }
    let top = engine
        .collect(&sql.render("datafusion/report_top_clients.sql", &[])?, "top clients")
        .await?;
    let title = "Top 10 clients by expected revenue";
    sections.push(section_of("top_clients", title, &top, "total_expected_revenue")?);
    let days = history::load(warehouse, None).await?;
    let day = days.iter().find(|d| d.state.processing_date == date);
    sections.push(quality_section(day));
    let recent = &days[days.len().saturating_sub(RECENT_RUNS)..];
    sections.extend(run_sections(recent));
    Ok(page(date, &sections))
}

/// A section from query results whose column 0 labels the bars and column `value` sizes them.
fn section_of(id: &str, title: &str, batches: &[RecordBatch], value: &str) -> Result<Section> {
    let rows = strings(batches)?;
    let mut bars = Vec::new();
    for batch in batches {
        let failed = |e: datafusion::arrow::error::ArrowError| Error::engine(format!("reading {title}"))(e.into());
        let column = batch.schema().index_of(value).map_err(failed)?;
        let values = datafusion::arrow::compute::cast(batch.column(column), &DataType::Float64).map_err(failed)?;
        let values = values.as_primitive::<Float64Type>();
        let labels = ArrayFormatter::try_new(batch.column(0).as_ref(), &FormatOptions::default()).map_err(failed)?;
        for i in 0..batch.num_rows() {
            let v = if values.is_null(i) { 0.0 } else { values.value(i) };
            bars.push((labels.value(i).to_string(), v));
        }
    }
    let header = batches.first().map_or_else(Vec::new, |b| {
        b.schema().fields().iter().map(|f| f.name().clone()).collect()
    });
    Ok(Section {
        id: id.into(),
        title: title.into(),
        bars,
        header,
        rows,
    })
}

/// Every cell of `batches` as text.
fn strings(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::engine("formatting the report")(e.into()))?;
        for i in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    Ok(rows)
}

/// Records quarantined by table and reason on the day.
fn quality_section(day: Option<&DayRecord>) -> Section {
    let counts = day.map(DayRecord::quarantine).unwrap_or_default();
    Section {
        id: "quarantine".into(),
        title: "Data quality: records quarantined, by table and reason".into(),
        bars: counts
            .iter()
            .map(|q| (format!("{}: {}", q.table, q.reason), q.records as f64))
            .collect(),
        header: vec!["table".into(), "reason".into(), "records".into()],
        rows: counts
            .iter()
            .map(|q| vec![q.table.clone(), q.reason.clone(), q.records.to_string()])
            .collect(),
    }
}

/// Seconds and peak memory of the recent runs, one bar per date.
fn run_sections(days: &[DayRecord]) -> [Section; 2] {
    let summaries: Vec<_> = days.iter().map(DayRecord::summary).collect();
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.processing_date.clone(),
                s.status.clone(),
                format!("{:.2}", s.seconds),
                s.peak_rss_mib.map_or(String::new(), |m| format!("{m:.0}")),
            ]
        })
        .collect();
    let header: Vec<String> = ["date", "status", "seconds", "peak MiB"].map(String::from).into();
    let bars = |value: &dyn Fn(&history::RunSummary) -> f64| {
        summaries
            .iter()
            .map(|s| (s.processing_date.clone(), value(s)))
            .collect()
    };
    [
        Section {
            id: "run_seconds".into(),
            title: format!("Stage time of the last {} runs, seconds", summaries.len()),
            bars: bars(&|s| (s.seconds * 100.0).round() / 100.0),
            header: header.clone(),
            rows: rows.clone(),
        },
        Section {
            id: "run_memory".into(),
            title: format!("Peak memory of the last {} runs, MiB", summaries.len()),
            bars: bars(&|s| s.peak_rss_mib.map_or(0.0, f64::round)),
            header,
            rows,
        },
    ]
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:900px}\
h1{font-size:22px}h2{font-size:17px;margin-top:2em}\
table{border-collapse:collapse;margin-top:.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
th{background:#f3f3f3}.chart rect{fill:#3b7dd8}.chart text{font-size:12px;fill:#222}";

/// The whole page.
fn page(date: ProcessingDate, sections: &[Section]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>ebroker run report {date}</title><style>{STYLE}</style></head><body>\n\
<h1>ebroker run report, processing date {date}</h1>\n"
    );
    for section in sections {
        let _ = write!(
            html,
            "<section id=\"{id}\"><h2>{title}</h2>\n{chart}{table}</section>\n",
            id = escape(&section.id),
            title = escape(&section.title),
            chart = bar_chart(&section.id, &section.title, &section.bars),
            table = table(&section.header, &section.rows),
        );
    }
    html.push_str("</body></html>\n");
    html
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for name in header {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out
}
