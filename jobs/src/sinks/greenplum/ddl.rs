//! The SQL statements of `publish greenplum`: the templates of `sql/greenplum/` filled from the
//! table definitions, for each flavour. Greenplum clauses (APPENDOPTIMIZED, DISTRIBUTED BY, EXTERNAL TABLE, pxf://) appear
//! only in the `greenplum` flavour; the `postgres` flavour is plain PostgreSQL. The schema is
//! validated as a plain identifier by the configuration and quoted everywhere.
//!
//! PXF cannot read Parquet INT64 timestamps (greenplum-db/pxf#918), so the external tables
//! declare timestamp columns as BIGINT (microseconds since the epoch, which is what the
//! Parquet files hold) and the load converts them with `to_timestamp(us / 1e6)` in UTC.
//! Likewise INTEGER columns are read as the BIGINT they are in Parquet and money columns as
//! the DOUBLE they are, and cast on insert. None of this can run here (no Greenplum or PXF
//! package is reachable): the statements are checked as golden text, and the PostgreSQL
//! flavour runs against a real PostgreSQL in the tests.

use super::tables::{distribution_key, PgTable, PgType, Source};
use crate::error::Result;
use crate::schema::marts::CLIENT_SEGMENTATION;
use crate::sql::SqlLibrary;
use crate::warehouse::Zone;
use crate::ProcessingDate;

/// The table holding the database's own segmentation (sql/greenplum/segmentation.sql).
pub const IN_DATABASE_SEGMENTATION: &str = "client_segmentation_gp";

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("\"{schema}\".\"{name}\"")
}

/// Schema, tables and indexes, created when missing.
pub fn create_statements(sql: &SqlLibrary, schema: &str, tables: &[PgTable], greenplum: bool) -> Result<Vec<String>> {
    let mut out = vec![format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")];
    for table in tables {
        out.push(create_table(sql, schema, &table.name, table, greenplum)?);
        if table.name == CLIENT_SEGMENTATION.name {
            out.push(create_table(sql, schema, IN_DATABASE_SEGMENTATION, table, greenplum)?);
        }
        for column in &table.indexes {
            out.push(format!(
                "CREATE INDEX IF NOT EXISTS \"{name}_{column}_idx\" ON {} ({column})",
                qualified(schema, &table.name),
                name = table.name
            ));
        }
    }
    Ok(out)
}

fn create_table(sql: &SqlLibrary, schema: &str, name: &str, table: &PgTable, greenplum: bool) -> Result<String> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            format!(
                "    {} {}{},",
                c.name,
                c.pg_type.sql(),
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    let storage = if greenplum {
        format!(
            "\n{}",
            sql.render(
                "greenplum/storage.sql",
                &[("distribution_key", distribution_key(table))]
            )?
        )
    } else {
        String::new()
    };
    let params = [
        ("table", qualified(schema, name)),
        ("columns", columns.join("\n")),
        ("storage", storage),
    ];
    sql.render("greenplum/create_table.sql", &pairs(&params))
}

/// Placeholder values as `SqlLibrary::render` takes them.
fn pairs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Removes one day of a table (the first half of a day's replacement).
pub fn delete_day(schema: &str, table: &str, date: ProcessingDate) -> String {
    format!(
        "DELETE FROM {} WHERE processing_date = DATE '{date}'",
        qualified(schema, table)
    )
}

/// The binary COPY of the postgres flavour.
pub fn copy_in(schema: &str, table: &PgTable) -> String {
    format!(
        "COPY {} ({}, processing_date) FROM STDIN (FORMAT binary)",
        qualified(schema, &table.name),
        table.column_names().join(", ")
    )
}

/// Where PXF finds one day of a table: `<pxf_root>/<zone>/<table>/processing_date=D`.
pub fn pxf_location(pxf_root: &str, table: &PgTable, date: ProcessingDate, server: &str) -> String {
    let zone = match table.source {
        Source::Cleaned => Zone::Cleaned,
        Source::Mart => Zone::Marts,
    };
    let root = pxf_root.trim_matches('/');
    format!(
        "pxf://{root}/{}/{}/processing_date={date}?PROFILE=hdfs:parquet&SERVER={server}",
        zone.dir(),
        table.name
    )
}

/// The greenplum flavour's load of one day of a table: the external table over that day's
/// Parquet, then the day's rows replaced from it, one row per key (the latest event).
pub fn pxf_load(
    sql: &SqlLibrary,
    schema: &str,
    table: &PgTable,
    date: ProcessingDate,
    pxf_root: &str,
    server: &str,
) -> Result<Vec<String>> {
    let external = qualified(schema, &format!("ext_{}", table.name));
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let pxf_type = match c.pg_type {
                // the Parquet physical types: INT64 (timestamps: micros), DOUBLE
                PgType::Timestamp | PgType::Int4 => PgType::Int8,
                PgType::Numeric { .. } => PgType::Float8,
                other => other,
            };
            format!("    {} {}", c.name, pxf_type.sql())
        })
        .collect();
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.pg_type {
            PgType::Timestamp => format!(
                "(to_timestamp({0} / 1000000.0) AT TIME ZONE 'UTC')::TIMESTAMP AS {0}",
                c.name
            ),
            PgType::Numeric { scale } => format!("round({0}::NUMERIC, {scale}) AS {0}", c.name),
            _ => c.name.clone(),
        })
        .collect();
    let order = match &table.latest_by {
        Some(event) => format!("{event} DESC"),
        None => table.key.clone(),
    };
    let external_table = [
        ("external", external.clone()),
        ("columns", columns.join(",\n")),
        ("location", pxf_location(pxf_root, table, date, server)),
    ];
    let load = [
        ("table", qualified(schema, &table.name)),
        ("external", external.clone()),
        ("names", table.column_names().join(", ")),
        ("select", select.join(",\n           ")),
        ("key", table.key.clone()),
        ("order", order),
        ("processing_date", date.to_string()),
    ];
    Ok(vec![
        format!("DROP EXTERNAL TABLE IF EXISTS {external}"),
        sql.render("greenplum/pxf_external_table.sql", &pairs(&external_table))?,
        delete_day(schema, &table.name, date),
        sql.render("greenplum/pxf_load.sql", &pairs(&load))?,
    ])
}

/// Statistics after a load.
pub fn analyze(schema: &str, table: &str) -> String {
    format!("ANALYZE {}", qualified(schema, table))
}
