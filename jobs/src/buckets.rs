//! Client buckets of the cleaned tables: every cleaned table with a `client_id` is written as
//! one Parquet file per bucket of clients (`bucket-00003-of-00010.parquet`, a hash of
//! client_id modulo the bucket count, as Hive and Spark bucketing do), so that per-client
//! work — segmentation's one GROUP BY over every source row — can run one bucket at a time
//! within the engine's memory budget instead of spilling the whole day. The day's directory
//! keeps the plain Hive layout (flat files under `processing_date=D/`) for every other reader.
//! The bucket count follows the day's size (`warehouse.clients_per_bucket`); a small day is
//! one bucket.

use std::collections::BTreeMap;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{col, lit, DataFrame};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::storage::{Warehouse, Zone};

/// Seed of the bucket hash; changing it moves every client to another bucket.
const BUCKET_SEED: u64 = 0x0eb0_b0c4_e75e_ed01;

/// The column the partitioned write splits on (never stored in the files).
const BUCKET_COLUMN: &str = "_bucket";

/// How many buckets a day of `clients` clients gets: one per `clients_per_bucket`, at least one.
pub fn bucket_count(clients: u64, clients_per_bucket: u64) -> u32 {
    let buckets = clients.div_ceil(clients_per_bucket.max(1)).max(1);
    u32::try_from(buckets).unwrap_or(u32::MAX)
}

/// The bucket of `client_id` among `buckets`: xxHash64 of its bytes, modulo the count.
pub fn bucket_of(client_id: &[u8], buckets: u32) -> u32 {
    (xxhash_rust::xxh64::xxh64(client_id, BUCKET_SEED) % u64::from(buckets.max(1))) as u32
}

/// The file name of `bucket` of `buckets`.
pub fn file_name(bucket: u32, buckets: u32) -> String {
    format!("bucket-{bucket:05}-of-{buckets:05}.parquet")
}

/// The (bucket, buckets) a file name stands for, if it is a bucket file.
pub fn parse_file_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("bucket-")?.strip_suffix(".parquet")?;
    let (bucket, buckets) = rest.split_once("-of-")?;
    let (bucket, buckets): (u32, u32) = (bucket.parse().ok()?, buckets.parse().ok()?);
    (bucket < buckets && name == file_name(bucket, buckets)).then_some((bucket, buckets))
}

/// Writes `df` (rows with a `client_id`) into the directory `staged` as one file per bucket,
/// every bucket present even when empty, so readers of a bucket always find its file.
/// `scratch` holds DataFusion's partitioned output until the files are renamed into place.
pub async fn write_bucketed(
    engine: &Engine,
    warehouse: &Warehouse,
    df: DataFrame,
    staged: &str,
    scratch: &str,
    buckets: u32,
    what: &str,
) -> Result<u64> {
    warehouse.remove_all(scratch).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let bucket = crate::functions::client_bucket_udf().call(vec![col("client_id"), lit(i64::from(buckets))]);
    let df = df
        .with_column(BUCKET_COLUMN, bucket)
        .map_err(Error::engine(format!("bucketing {what}")))?;
    let options = DataFrameWriteOptions::new().with_partition_by(vec![BUCKET_COLUMN.to_string()]);
    let rows = engine
        .write_parquet_dir_with(df, &warehouse.url(scratch), options, what)
        .await?;

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
        let writer =
            crate::clean::staging_writer(warehouse, &path, std::sync::Arc::clone(&schema), crate::clean::zstd())?;
        writer.close().await.map_err(crate::clean::parquet_error(&path))?;
    }
    warehouse.remove_all(scratch).await?;
    Ok(rows)
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
    pub async fn discover(warehouse: &Warehouse, tables: &[&'static Table], date: &str) -> Result<CleanedBuckets> {
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

    fn inconsistent(warehouse: &Warehouse, partition: &str, date: &str) -> Error {
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
                .register_parquet_dir(name, &files[bucket as usize], Some(crate::clean::cleaned_schema(table)))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_follow_the_day() {
        assert_eq!(bucket_count(0, 500_000), 1);
        assert_eq!(bucket_count(500_000, 500_000), 1);
        assert_eq!(bucket_count(500_001, 500_000), 2);
        assert_eq!(bucket_count(5_000_000, 500_000), 10);
        assert_eq!(bucket_count(10, 0), 10);
    }

    #[test]
    fn file_names_round_trip_and_reject_others() {
        assert_eq!(file_name(3, 10), "bucket-00003-of-00010.parquet");
        assert_eq!(parse_file_name("bucket-00003-of-00010.parquet"), Some((3, 10)));
        for other in [
            "part-0.parquet",
            "bucket-00010-of-00010.parquet",
            "bucket-3-of-10.parquet",
            "bucket-00003-of-00010.parquet.tmp",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn buckets_spread_clients_evenly_and_stably() {
        let mut sizes = [0u32; 10];
        for i in 0..100_000 {
            sizes[bucket_of(format!("CLIENT_{i:06}").as_bytes(), 10) as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (9_500..=10_500).contains(&n)), "{sizes:?}");
        assert_eq!(bucket_of(b"CLIENT_000001", 10), bucket_of(b"CLIENT_000001", 10));
        assert_eq!(bucket_of(b"CLIENT_000001", 1), 0);
    }
}
