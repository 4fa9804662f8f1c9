//! Client buckets of the cleaned tables: a day cleaned in several buckets holds every client's
//! rows in the file of the bucket its id hashes to, every table has every bucket's file, and
//! the marts computed bucket by bucket equal those of a day in one bucket. A day deduplicated
//! in passes (split by a hash of the record id) cleans to the same rows as a day in one pass.

use chrono::NaiveDate;
use ebroker::schema::TABLES;
use ebroker::warehouse::buckets::{bucket_count, bucket_of, file_name};
use ebroker::warehouse::{Warehouse, Zone};
use ebroker_integration::day;
use ebroker_integration::TestWarehouse;
use ebroker_integration::{assert_completed, run, RunOptions};

const DATE: &str = "2024-06-01";

async fn run_on(wh: &TestWarehouse, input: &std::path::Path) {
    let options = RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input: Some(input.to_path_buf()),
        clients: 0,
        seed: 0,
        dirty: 0.0,
        resume: false,
    };
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options)
        .await
        .unwrap();
    assert_completed(&state);
}

/// The file names of one day of a cleaned table.
async fn cleaned_files(wh: &TestWarehouse, table: &str) -> Vec<String> {
    let files = wh
        .warehouse
        .list_files(&Warehouse::partition(Zone::Cleaned, table, day(DATE)))
        .await
        .unwrap();
    // The commit's `.commit-<id>` marker is hidden: every reader skips dot files.
    files
        .iter()
        .filter_map(|f| f.filename().filter(|name| !name.starts_with('.')).map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_days_give_the_same_marts_as_one_bucket() {
    let one = TestWarehouse::new();
    let many = TestWarehouse::with_settings(vec![("warehouse.clients_per_bucket".into(), "700".into())]);
    let input = one.input_dir("src");
    ebroker::stages::generate::generate(&ebroker::stages::generate::GenerateOptions {
        clients: 3000,
        seed: 3,
        dirty: 0.03,
        anchor: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        out: input.clone(),
    })
    .unwrap();
    // Buckets and deduplication passes at once: 3000 clients in 1000-row passes, read in
    // 64 KiB splits so that each file's rows are estimated from several splits.
    let passes = TestWarehouse::with_settings(vec![
        ("warehouse.clients_per_bucket".into(), "700".into()),
        ("clean.dedup_pass_rows".into(), "1000".into()),
        ("clean.split_bytes".into(), "65536".into()),
    ]);
    run_on(&one, &input).await;
    run_on(&many, &input).await;
    run_on(&passes, &input).await;

    let report: ebroker::stages::clean::CleanReport = many
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    let clients = report.table("clients").unwrap();
    let buckets = bucket_count(clients.written + clients.duplicates_removed, 700);
    assert!(buckets >= 4, "3000 clients at 700 per bucket: {buckets} buckets");
    for table in TABLES.iter().filter(|t| t.has_client_id()) {
        assert_eq!(
            cleaned_files(&one, table.name).await,
            vec![file_name(0, 1)],
            "{}",
            table.name
        );
        let expected: Vec<String> = (0..buckets).map(|b| file_name(b, buckets)).collect();
        assert_eq!(cleaned_files(&many, table.name).await, expected, "{}", table.name);
        let mut rows = 0;
        for bucket in 0..buckets {
            let file = many.warehouse.url(&format!(
                "{}{}",
                Warehouse::partition(Zone::Cleaned, table.name, day(DATE)),
                file_name(bucket, buckets)
            ));
            many.engine
                .register_parquet_dir("bucket_file", &file, None)
                .await
                .unwrap();
            let ids = many
                .rows("SELECT client_id, count(*) FROM bucket_file GROUP BY client_id")
                .await;
            for id in &ids {
                assert_eq!(
                    bucket_of(id[0].as_bytes(), buckets),
                    bucket,
                    "{} of {}: {} is in the wrong bucket",
                    table.name,
                    id[0],
                    bucket
                );
                rows += id[1].parse::<u64>().unwrap();
            }
        }
        assert_eq!(
            rows,
            report.table(table.name).unwrap().written,
            "{}: every cleaned row is in one bucket",
            table.name
        );
    }
    assert_eq!(
        cleaned_files(&many, "currency_rates").await.len(),
        cleaned_files(&one, "currency_rates").await.len(),
        "currency_rates has no client_id and is not bucketed"
    );

    let marts = [
        ("client_segmentation", "client_id"),
        ("marketing_clients", "client_id"),
        ("targeted_offers", "offer_id"),
        ("marketing_analytics_daily", "segment"),
    ];
    for (mart, key) in marts {
        let mut answers = Vec::new();
        for wh in [&one, &many, &passes] {
            ebroker::tables::partitions::register_mart(&wh.engine, &wh.warehouse, mart, day(DATE))
                .await
                .unwrap();
            answers.push(wh.rows(&format!("SELECT * FROM {mart} ORDER BY {key}")).await);
        }
        assert!(answers[0].len() >= 6, "{mart} has rows: {}", answers[0].len());
        assert_eq!(answers[0], answers[1], "{mart}: one bucket vs {buckets}");
        assert_eq!(answers[0], answers[2], "{mart}: one pass vs several");
    }
    same_cleaned_rows_in_passes(&one, &passes, &report).await;
}

/// The day cleaned in passes holds the same rows (and counts) as the day in one pass: every
/// copy of an id met its other copies in its pass, so each id is kept once, the same one.
async fn same_cleaned_rows_in_passes(
    one: &TestWarehouse,
    passes: &TestWarehouse,
    many_report: &ebroker::stages::clean::CleanReport,
) {
    let report: ebroker::stages::clean::CleanReport = passes
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&report, many_report, "the data-quality report of the day in passes");
    let transactions = report.table("bank_transactions").unwrap();
    assert!(
        transactions.read >= 5000 && transactions.duplicates_removed > 0,
        "several passes of transactions, with duplicates to remove: {transactions:?}"
    );
    for table in TABLES {
        let mut answers = Vec::new();
        for wh in [one, passes] {
            let dir = wh
                .warehouse
                .url(&Warehouse::partition(Zone::Cleaned, table.name, day(DATE)));
            wh.engine
                .register_parquet_dir("cleaned_day", &dir, Some(table.cleaned_schema()))
                .await
                .unwrap();
            answers.push(
                wh.rows(&format!("SELECT * FROM cleaned_day ORDER BY {}", table.id))
                    .await,
            );
        }
        assert_eq!(answers[0], answers[1], "{}: one pass vs several", table.name);
    }
}
