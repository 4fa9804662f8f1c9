//! `ebroker publish greenplum` and `ebroker verify greenplum` (docs/SPEC.md §7): the cleaned tables
//! and `client_segmentation` of a date go to Greenplum — through PXF external tables over the
//! warehouse's Parquet (flavour `greenplum`) or by streaming the Parquet through binary COPY
//! (flavour `postgres`) — and the database computes its own segmentation with
//! `sql/greenplum/segmentation.sql`, which `verify` compares with the DataFusion mart.
//!
//! A day is replaced in one transaction (delete the date's rows, load, segment), so a
//! publish that fails part-way leaves the previous state, and publishing twice leaves one
//! copy. The password is only handed to the driver; it never appears in logs or errors.

pub mod copy;
pub mod ddl;
pub mod tables;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Row};

use crate::config::{is_plain_identifier, GreenplumConfig, GreenplumFlavour};
use crate::error::{Error, Result};
use crate::schema::marts::CLIENT_SEGMENTATION;
use crate::sql::SqlLibrary;
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;
use tables::{PgTable, Source};

/// COPY data is sent in chunks of about this many bytes.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Rows loaded per table.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub processing_date: ProcessingDate,
    pub tables: Vec<(String, u64)>,
    /// Clients the database's own segmentation produced.
    pub segmented_in_database: u64,
    pub seconds: f64,
}

impl PublishReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    pub fn render(&self) -> String {
        let in_database = (ddl::IN_DATABASE_SEGMENTATION.to_string(), self.segmented_in_database);
        let rows = self
            .tables
            .iter()
            .chain([&in_database])
            .map(|(table, rows)| vec![table.clone(), rows.to_string()]);
        let mut out = crate::text::aligned(&["table", "rows"], rows.collect());
        let secs = self.seconds.max(1e-9);
        out.push_str(&format!(
            "loaded {} rows in {secs:.2} s ({:.0} rows/s)\n",
            self.rows(),
            self.rows() as f64 / secs
        ));
        out
    }
}

/// Where the target is, for messages (never the password).
fn target(config: &GreenplumConfig) -> String {
    format!("{}@{}:{}/{}", config.user, config.host, config.port, config.database)
}

fn db_error(config: &GreenplumConfig, doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let (target, doing) = (target(config), doing.into());
    move |source| Error::Database {
        target,
        doing,
        source: Box::new(source),
    }
}

/// Opens one connection to the configured target.
pub async fn connect(config: &GreenplumConfig) -> Result<PgConnection> {
    if !config.enabled() {
        return Err(Error::Config(
            "greenplum.host is empty; set it (or GPHOST) to publish to Greenplum or PostgreSQL".into(),
        ));
    }
    let ssl = PgSslMode::from_str(&config.sslmode)
        .map_err(|_| Error::Config(format!("greenplum.sslmode = {:?} is not valid", config.sslmode)))?;
    let options = PgConnectOptions::new_without_pgpass()
        .host(&config.host)
        .port(config.port)
        .username(&config.user)
        .password(&config.password)
        .database(&config.database)
        .ssl_mode(ssl)
        .application_name("ebroker");
    PgConnection::connect_with(&options)
        .await
        .map_err(db_error(config, "connecting"))
}

/// The arrow schema of the day's client_segmentation mart (read from its Parquet footer).
async fn segmentation_schema(
    warehouse: &Warehouse,
    date: ProcessingDate,
) -> Result<datafusion::arrow::datatypes::SchemaRef> {
    let partition = Warehouse::partition(Zone::Marts, CLIENT_SEGMENTATION.name, date);
    let file = first_parquet(warehouse, &partition)
        .await?
        .ok_or_else(|| Error::Input {
            path: warehouse.url(&partition).to_string(),
            message: format!("no client_segmentation for {date}; run `ebroker segment --date {date}` first"),
        })?;
    #[allow(deprecated)]
    let reader =
        datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(Arc::clone(warehouse.store()), file.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|source| Error::Parquet {
            path: file.to_string(),
            source,
        })?;
    Ok(Arc::clone(builder.schema()))
}

async fn first_parquet(warehouse: &Warehouse, partition: &str) -> Result<Option<object_store::path::Path>> {
    Ok(warehouse
        .list_files(partition)
        .await?
        .into_iter()
        .find(|p| p.as_ref().ends_with(".parquet")))
}

/// The tables published for `date`. Every column name (the mart's are read from its Parquet
/// footer, i.e. from data) must be a plain SQL identifier before it reaches any statement.
pub async fn published_tables(warehouse: &Warehouse, date: ProcessingDate) -> Result<Vec<PgTable>> {
    let tables = tables::published_tables(&segmentation_schema(warehouse, date).await?);
    for table in &tables {
        if let Some(column) = table.columns.iter().find(|c| !is_plain_identifier(&c.name)) {
            let partition = Warehouse::partition(Zone::Marts, &table.name, date);
            return Err(Error::Input {
                path: warehouse.url(&partition).to_string(),
                message: format!(
                    "column {:?} of {} is not a plain SQL identifier (lower-case letters, digits, _); rename it in the SQL that writes the mart",
                    column.name, table.name
                ),
            });
        }
    }
    Ok(tables)
}

/// The path PXF reads the warehouse at: `greenplum.pxf_root`, or the warehouse URL's path.
/// It goes into a quoted `LOCATION`, so quotes and URL syntax are refused.
pub fn pxf_root(config: &GreenplumConfig, warehouse: &Warehouse) -> Result<String> {
    let root = if config.pxf_root.is_empty() {
        warehouse.root().path().trim_matches('/').to_string()
    } else {
        config.pxf_root.trim_matches('/').to_string()
    };
    if root.contains(['\'', '?', '&', '#', '\\']) || root.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "the PXF path of the warehouse, {root:?}, holds a quote, '?', '&', '#' or a control character; set greenplum.pxf_root to the path PXF reads it at"
        )));
    }
    Ok(root)
}

/// Publishes the cleaned tables and client_segmentation of `date`, then runs the
/// database's own segmentation — all in one transaction.
pub async fn publish(
    config: &GreenplumConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<PublishReport> {
    let started = Instant::now();
    let tables = published_tables(warehouse, date).await?;
    let greenplum = config.flavour == GreenplumFlavour::Greenplum;
    let mut conn = connect(config).await?;
    for statement in ddl::create_statements(sql, &config.schema, &tables, greenplum)? {
        sqlx::raw_sql(audited(&statement))
            .execute(&mut conn)
            .await
            .map_err(db_error(
                config,
                format!("creating tables ({})", first_line(&statement)),
            ))?;
    }
    let mut tx = conn
        .begin()
        .await
        .map_err(db_error(config, "starting the load transaction"))?;
    let mut loaded = Vec::new();
    for table in &tables {
        let rows = if greenplum {
            load_through_pxf(config, warehouse, sql, &mut tx, table, date).await?
        } else {
            sqlx::raw_sql(audited(&ddl::delete_day(&config.schema, &table.name, date)))
                .execute(&mut *tx)
                .await
                .map_err(db_error(config, format!("deleting {} of {date}", table.name)))?;
            copy_table(config, warehouse, &mut tx, table, date).await?
        };
        check_loaded(config, &mut tx, table, date, rows).await?;
        tracing::info!(table = table.name, rows, "loaded");
        loaded.push((table.name.clone(), rows));
    }
    let segmentation = sql.render(
        "greenplum/segmentation.sql",
        &[("schema", &config.schema), ("processing_date", date.as_str())],
    )?;
    sqlx::raw_sql(audited(&segmentation))
        .execute(&mut *tx)
        .await
        .map_err(db_error(config, "running sql/greenplum/segmentation.sql"))?;
    tx.commit()
        .await
        .map_err(db_error(config, format!("committing the load of {date}")))?;

    for table in tables
        .iter()
        .map(|t| t.name.as_str())
        .chain([ddl::IN_DATABASE_SEGMENTATION])
    {
        sqlx::raw_sql(audited(&ddl::analyze(&config.schema, table)))
            .execute(&mut conn)
            .await
            .map_err(db_error(config, format!("analyzing {table}")))?;
    }
    let count_sql = format!(
        "SELECT count(*) FROM {} WHERE processing_date = DATE '{date}'",
        ddl::qualified(&config.schema, ddl::IN_DATABASE_SEGMENTATION)
    );
    let segmented: i64 = sqlx::query(audited(&count_sql))
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db_error(config, "counting the database's segmentation"))?;
    Ok(PublishReport {
        processing_date: date,
        tables: loaded,
        segmented_in_database: segmented as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Marks generated SQL as reviewed for injection: every statement here is built from the
/// project's SQL files and table definitions, a schema that the configuration validated as a
/// plain identifier (and that is quoted), and dates parsed as YYYY-MM-DD.
fn audited(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_string())
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement)
}

async fn load_through_pxf(
    config: &GreenplumConfig,
    warehouse: &Warehouse,
    sql: &SqlLibrary,
    conn: &mut PgConnection,
    table: &PgTable,
    date: ProcessingDate,
) -> Result<u64> {
    let mut rows = 0;
    let root = pxf_root(config, warehouse)?;
    for statement in ddl::pxf_load(sql, &config.schema, table, date, &root, &config.pxf_server)? {
        rows = sqlx::raw_sql(audited(&statement))
            .execute(&mut *conn)
            .await
            .map_err(db_error(config, format!("loading {} through PXF", table.name)))?
            .rows_affected();
    }
    Ok(rows)
}

/// Checks that the database holds exactly the `sent` rows of the day (counted by the database,
/// inside the load's transaction, so a mismatch rolls the whole load back).
async fn check_loaded(
    config: &GreenplumConfig,
    tx: &mut PgConnection,
    table: &PgTable,
    date: ProcessingDate,
    sent: u64,
) -> Result<()> {
    let count_sql = format!(
        "SELECT count(*) FROM {} WHERE processing_date = DATE '{date}'",
        ddl::qualified(&config.schema, &table.name)
    );
    let held: i64 = sqlx::query(audited(&count_sql))
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db_error(config, format!("counting {} of {date}", table.name)))?;
    if u64::try_from(held).ok() != Some(sent) {
        return Err(Error::Reconcile {
            table: table.name.clone(),
            message: format!("sent {sent} rows of {date} to Greenplum but it holds {held}; the load was rolled back"),
        });
    }
    Ok(())
}

/// Streams one day of a table's Parquet into `COPY ... FROM STDIN (FORMAT binary)`.
async fn copy_table(
    config: &GreenplumConfig,
    warehouse: &Warehouse,
    conn: &mut PgConnection,
    table: &PgTable,
    date: ProcessingDate,
) -> Result<u64> {
    let zone = if table.source == Source::Cleaned {
        Zone::Cleaned
    } else {
        Zone::Marts
    };
    let mut batches = crate::tables::partitions::read_partition(warehouse, zone, &table.name, date, 8192).await?;
    let processing_date = crate::formats::fields::days_since_epoch(date.date());
    let mut copy = conn
        .copy_in_raw(&ddl::copy_in(&config.schema, table))
        .await
        .map_err(db_error(config, format!("starting COPY into {}", table.name)))?;
    let mut buffer = Vec::with_capacity(COPY_CHUNK_BYTES + (64 << 10));
    copy::header(&mut buffer);
    while let Some(batch) = batches.try_next().await? {
        copy::encode_batch(&table.columns, &batch, processing_date, &mut buffer).map_err(|message| Error::Input {
            path: format!("{}/{}/processing_date={date}", zone.dir(), table.name),
            message,
        })?;
        if buffer.len() >= COPY_CHUNK_BYTES {
            copy.send(std::mem::take(&mut buffer))
                .await
                .map_err(db_error(config, format!("sending COPY data to {}", table.name)))?;
            buffer.reserve(COPY_CHUNK_BYTES + (64 << 10));
        }
    }
    copy::trailer(&mut buffer);
    copy.send(buffer)
        .await
        .map_err(db_error(config, format!("sending COPY data to {}", table.name)))?;
    copy.finish()
        .await
        .map_err(db_error(config, format!("finishing COPY into {}", table.name)))
}

/// One client whose segmentation differs between the mart and the database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub client_id: String,
    pub difference: String,
}

/// Compares the database's segmentation of `date` with the loaded DataFusion mart, client by
/// client (`sql/greenplum/verify.sql`); returns (clients compared, differences).
pub async fn verify(
    config: &GreenplumConfig,
    sql: &SqlLibrary,
    date: ProcessingDate,
) -> Result<(u64, Vec<Difference>)> {
    let mut conn = connect(config).await?;
    let query = sql.render(
        "greenplum/verify.sql",
        &[("schema", &config.schema), ("processing_date", date.as_str())],
    )?;
    let rows = sqlx::query(audited(&query))
        .fetch_all(&mut conn)
        .await
        .map_err(db_error(config, "running sql/greenplum/verify.sql"))?;
    let differences = rows
        .iter()
        .map(|r| {
            Ok(Difference {
                client_id: r.try_get(0)?,
                difference: r.try_get(1)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        .map_err(db_error(config, "reading the differences"))?;
    let count_sql = format!(
        "SELECT count(*) FROM {} WHERE processing_date = DATE '{date}'",
        ddl::qualified(&config.schema, CLIENT_SEGMENTATION.name)
    );
    let compared: i64 = sqlx::query(audited(&count_sql))
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db_error(config, "counting client_segmentation"))?;
    Ok((compared as u64, differences))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::warehouse::StoreRegistry;

    #[test]
    fn a_quote_in_the_warehouse_path_never_reaches_a_pxf_location() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("it's");
        let flags = vec![(
            "warehouse.root".to_string(),
            format!("{:?}", root.display().to_string()),
        )];
        let config = Config::load_from(None, &[], &flags).unwrap();
        let warehouse = Warehouse::open(&config.warehouse, &StoreRegistry::new()).unwrap();
        let err = pxf_root(&config.greenplum, &warehouse).unwrap_err().to_string();
        assert!(err.contains("it's") && err.contains("greenplum.pxf_root"), "{err}");
        let mut config = config.greenplum.clone();
        config.pxf_root = "data/bank".into();
        assert_eq!(pxf_root(&config, &warehouse).unwrap(), "data/bank");
    }
}
