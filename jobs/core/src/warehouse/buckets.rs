//! The layout of client buckets, as pure functions: which bucket a client falls in, how many
//! buckets a day gets, and how bucket files are named (`bucket-00003-of-00010.parquet`, a hash
//! of client_id modulo the bucket count, as Hive and Spark bucketing do). Writing and reading
//! bucketed days through the engine is [`crate::tables::buckets`]; the engine's
//! `ebroker_client_bucket` function calls [`bucket_of`] so both agree on every client.
//! Deduplication passes ([`pass_of`]) split a table by a hash of its record id instead, with
//! their own seed: a pass must hold every copy of its ids, whatever their clients.

/// Seed of the bucket hash; changing it moves every client to another bucket.
const BUCKET_SEED: u64 = 0x0eb0_b0c4_e75e_ed01;

/// Seed of the deduplication pass hash (independent of the buckets').
const PASS_SEED: u64 = 0x0eb0_9a55_5eed_0002;

/// How many buckets a day of `clients` clients gets: one per `clients_per_bucket`, at least one.
pub fn bucket_count(clients: u64, clients_per_bucket: u64) -> u32 {
    let buckets = clients.div_ceil(clients_per_bucket.max(1)).max(1);
    u32::try_from(buckets).unwrap_or(u32::MAX)
}

/// The bucket of `client_id` among `buckets`: xxHash64 of its bytes, modulo the count.
pub fn bucket_of(client_id: &[u8], buckets: u32) -> u32 {
    (xxhash_rust::xxh64::xxh64(client_id, BUCKET_SEED) % u64::from(buckets.max(1))) as u32
}

/// The deduplication pass of record `id` among `passes`: xxHash64 of its bytes, modulo the
/// count.
pub fn pass_of(id: &[u8], passes: u32) -> u32 {
    (xxhash_rust::xxh64::xxh64(id, PASS_SEED) % u64::from(passes.max(1))) as u32
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

    #[test]
    fn passes_spread_ids_evenly_and_apart_from_buckets() {
        let mut sizes = [[0u32; 4]; 10];
        for i in 0..100_000 {
            let id = format!("CLIENT_{i:06}");
            sizes[bucket_of(id.as_bytes(), 10) as usize][pass_of(id.as_bytes(), 4) as usize] += 1;
        }
        // every bucket meets every pass about equally: the two hashes are independent
        assert!(
            sizes.iter().flatten().all(|&n| (2_250..=2_750).contains(&n)),
            "{sizes:?}"
        );
        assert_eq!(pass_of(b"TX_1", 1), 0);
    }
}
