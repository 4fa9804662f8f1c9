//! Client buckets of the cleaned tables: every cleaned table with a `client_id` is written as
//! one Parquet file per bucket of clients (`bucket-00003-of-00010.parquet`, a hash of
//! client_id modulo the bucket count, as Hive and Spark bucketing do), so that per-client
//! work — segmentation's one GROUP BY over every source row — can run one bucket at a time
//! within the engine's memory budget instead of spilling the whole day. The day's directory
//! keeps the plain Hive layout (flat files under `processing_date=D/`) for every other reader.
//! The bucket count follows the day's size (`warehouse.clients_per_bucket`); a small day is
//! one bucket.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{col, lit, DataFrame};

use crate::date::ProcessingDate;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::warehouse::buckets::{file_name, parse_file_name};
use crate::warehouse::parquet::{self, STAGING_ROW_GROUP_ROWS};
use crate::warehouse::{Warehouse, Zone};

/// The column the partitioned write splits on (never stored in the files).
const BUCKET_COLUMN: &str = "_bucket";

/// Writes `df` (rows with a `client_id`) into the directory `staged` as one file per bucket,
/// every bucket present even when empty, so readers of a bucket always find its file.
/// `scratch` holds DataFusion's partitioned output until the files are renamed into place.
pub async fn write_bucketed(
    engine: &Engine,
    warehouse: &Warehouse,
    df: DataFrame,
    (staged, scratch): (&str, &str),
    buckets: u32,
    what: &str,
) -> Result<u64> {
    warehouse.remove_all(scratch).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let rows = write_partitioned(engine, warehouse, df, (scratch, None), buckets, what).await?;
    let scratch_prefix = warehouse.path(scratch);
    let mut placed = vec![false; buckets as usize];
    for file in warehouse.list_files(scratch).await? {
        let parts: Vec<String> = file
            .prefix_match(&scratch_prefix)
            .into_iter()
            .flatten()
            .map(|p| p.as_ref().to_string())
            .collect();
        let bucket = parts
            .first()
            .and_then(|dir| dir.strip_prefix(&format!("{BUCKET_COLUMN}=")))
            .and_then(|b| b.parse::<u32>().ok())
            .filter(|b| *b < buckets && parts.len() == 2 && !placed[*b as usize])
            .ok_or_else(|| Error::Stage {
                stage: what.to_string(),
                message: format!("unexpected file {file} in the partitioned output of {what}"),
            })?;
        warehouse
            .rename(
                &format!("{scratch}{}", parts.join("/")),
                &format!("{staged}{}", file_name(bucket, buckets)),
            )
            .await?;
        placed[bucket as usize] = true;
    }
    for bucket in (0..buckets).filter(|b| !placed[*b as usize]) {
        let path = format!("{staged}{}", file_name(bucket, buckets));
        let writer = parquet::writer(
            warehouse,
            &path,
            Arc::clone(&schema),
            parquet::properties(parquet::zstd(), STAGING_ROW_GROUP_ROWS),
        )?;
        writer.close().await.map_err(parquet::parquet_error(&path))?;
    }
    warehouse.remove_all(scratch).await?;
    Ok(rows)
}

/// Writes `df` (rows with a `client_id`) under the directory `dir`, split by client bucket
/// into `_bucket=B/` directories (DataFusion's partitioned write), with `parquet` options
/// where given (else the session's); bucket B's directory is [`partition_dir`]. Returns the
/// rows written.
pub async fn write_partitioned(
    engine: &Engine,
    warehouse: &Warehouse,
    df: DataFrame,
    (dir, parquet): (&str, Option<TableParquetOptions>),
    buckets: u32,
    what: &str,
) -> Result<u64> {
    let bucket = crate::engine::functions::client_bucket_udf().call(vec![col("client_id"), lit(i64::from(buckets))]);
    let df = df
        .with_column(BUCKET_COLUMN, bucket)
        .map_err(Error::engine(format!("bucketing {what}")))?;
    let options = DataFrameWriteOptions::new().with_partition_by(vec![BUCKET_COLUMN.to_string()]);
    engine
        .write_parquet_dir_with(df, &warehouse.url(dir), (options, parquet), what)
        .await
}

/// The directory of `bucket`'s files in a [`write_partitioned`] output at `dir`.
pub fn partition_dir(dir: &str, bucket: u32) -> String {
    format!("{dir}{BUCKET_COLUMN}={bucket}/")
}

/// The bucket files of one day of the cleaned tables with a `client_id`.
#[derive(Debug)]
pub struct CleanedBuckets {
    buckets: u32,
    /// Per table, the URL of each bucket's file (index = bucket); one whole-directory entry
    /// for a day cleaned before tables were bucketed.
    files: BTreeMap<&'static str, Vec<url::Url>>,
}

impl CleanedBuckets {
    /// Finds the bucket files of `date`; every table must be bucketed alike.
    pub async fn discover(
        warehouse: &Warehouse,
        tables: &[&'static Table],
        date: ProcessingDate,
    ) -> Result<CleanedBuckets> {
        let mut layouts: BTreeMap<&'static str, (u32, Vec<url::Url>)> = BTreeMap::new();
        for table in tables {
            let partition = Warehouse::partition(Zone::Cleaned, table.name, date);
            let mut found: BTreeMap<u32, url::Url> = BTreeMap::new();
            let mut counts = Vec::new();
            for file in warehouse.list_files(&partition).await? {
                if let Some((bucket, buckets)) = file.filename().and_then(parse_file_name) {
                    found.insert(
                        bucket,
                        warehouse.url(&format!("{partition}{}", file_name(bucket, buckets))),
                    );
                    counts.push(buckets);
                }
            }
            counts.dedup();
            let layout = match counts.as_slice() {
                // Not bucketed (or no data): the whole directory is the one bucket.
                [] => (1, vec![warehouse.url(&partition)]),
                [buckets] if found.len() == *buckets as usize => (*buckets, found.into_values().collect()),
                _ => return Err(Self::inconsistent(warehouse, &partition, date)),
            };
            layouts.insert(table.name, layout);
        }
        let mut counts: Vec<u32> = layouts.values().map(|(n, _)| *n).collect();
        counts.sort_unstable();
        counts.dedup();
        match counts.as_slice() {
            [buckets] => Ok(CleanedBuckets {
                buckets: *buckets,
                files: layouts.into_iter().map(|(t, (_, f))| (t, f)).collect(),
            }),
            _ => Err(Self::inconsistent(
                warehouse,
                &Warehouse::partition(Zone::Cleaned, "*", date),
                date,
            )),
        }
    }

    fn inconsistent(warehouse: &Warehouse, partition: &str, date: ProcessingDate) -> Error {
        Error::Input {
            path: warehouse.url(partition).to_string(),
            message: format!("the cleaned tables of {date} are not bucketed alike (missing or mixed bucket files); rerun `ebroker clean --date {date}`"),
        }
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Registers every table as its part in `bucket`, under the table's plain name.
    pub async fn register(&self, engine: &Engine, bucket: u32) -> Result<()> {
        for (name, files) in &self.files {
            let table = Table::by_name(name).expect("bucketed tables are source tables");
            engine
                .register_parquet_dir(name, &files[bucket as usize], Some(table.cleaned_schema()))
                .await?;
        }
        Ok(())
    }
}
