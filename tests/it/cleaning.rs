//! Cleaning (docs/SPEC.md §4) on hand-made rows with known answers: the as-of rate at its edges,
//! deduplication, quarantine with the raw text, reconciliation, and atomic reruns.

use ebroker_integration::day;
use ebroker_integration::{Sources, TestWarehouse};

const DATE: &str = "2024-06-01";

fn rate_sources() -> Sources {
    let mut s = Sources::new();
    s.client("C1");
    s.line("currency_rates", "RATE_000001,USD/RUB,2024-05-01 12:00:00,80.00,Close")
        .line("currency_rates", "RATE_000002,USD/RUB,2024-05-10 09:00:00,90.00,Close")
        .line("currency_rates", "RATE_000003,usd/rub ,2024-05-10 18:00:00,91.00,Close")
        .line("currency_rates", "RATE_000004,EUR/RUB,2024-05-05 00:00:00,100.00,Close")
        .line("currency_rates", "RATE_000005,EUR/RUB,2024-05-20 12:00:00,101.00,Close")
        .line("currency_rates", "RATE_000006,EUR/RUB,2024-05-20 12:00:00,102.00,Close");
    for (id, date, currency) in [
        ("TXN_SAMEDAY", "2024-05-10", "USD"),
        ("TXN_BEFORE", "2024-04-01", "USD"),
        ("TXN_BETWEEN", "2024-05-05", "usd"),
        ("TXN_TIE", "2024-05-20", "EUR"),
        ("TXN_NORATE", "2024-05-20", "GBP"),
        ("TXN_RUB", "2024-05-20", "RUB"),
    ] {
        s.line(
            "bank_transactions",
            format!("{id},C1,{date},100.00,{currency},Debit,ATM"),
        );
    }
    s
}

#[tokio::test]
async fn amount_rub_uses_the_rate_in_force_on_the_transaction_date() {
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    rate_sources().write(&input);
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    ebroker::tables::partitions::register_cleaned(&wh.engine, &wh.warehouse, day(DATE))
        .await
        .unwrap();
    let got = wh
        .keyed("SELECT transaction_id, currency, amount_rub FROM bank_transactions")
        .await;
    assert_eq!(
        got["TXN_SAMEDAY"],
        ["USD", "9100.0"],
        "a rate dated during the day counts; the day's latest wins"
    );
    assert_eq!(
        got["TXN_BEFORE"],
        ["USD", "8000.0"],
        "before the first rate: the pair's earliest rate"
    );
    assert_eq!(
        got["TXN_BETWEEN"],
        ["USD", "8000.0"],
        "latest rate on or before the date"
    );
    assert_eq!(got["TXN_TIE"], ["EUR", "10200.0"], "same rate_date: the larger rate_id");
    assert_eq!(got["TXN_NORATE"], ["GBP", "NULL"], "no rate at all: NULL");
    assert_eq!(got["TXN_RUB"], ["RUB", "100.0"]);
    assert_eq!(report.table("bank_transactions").unwrap().without_rate, Some(1));
}

#[tokio::test]
async fn duplicates_keep_the_latest_event_then_the_later_line() {
    let mut s = Sources::new();
    s.client("C1");
    s.line("payments", "PAY_1,C1,2024-05-02,10.00,RUB,Utility,Completed")
        .line("payments", "PAY_1,C1,2024-05-01,20.00,RUB,Utility,Completed")
        .line("payments", "PAY_2,C1,2024-05-01,30.00,RUB,Utility,Pending")
        .line("payments", "PAY_2,C1,2024-05-01,40.00,RUB,Utility,Completed");
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    s.write(&input);
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    ebroker::tables::partitions::register_cleaned(&wh.engine, &wh.warehouse, day(DATE))
        .await
        .unwrap();
    let got = wh.keyed("SELECT payment_id, amount, status FROM payments").await;
    assert_eq!(
        got["PAY_1"],
        ["10.0", "Completed"],
        "latest event date wins even from an earlier line"
    );
    assert_eq!(got["PAY_2"], ["40.0", "Completed"], "tie: the later line wins");
    let q = report.table("payments").unwrap();
    assert_eq!((q.read, q.written, q.duplicates_removed, q.quarantined), (4, 2, 2, 0));
}

#[tokio::test]
async fn quarantine_keeps_raw_text_and_reason_and_counts_reconcile() {
    let mut s = Sources::new();
    s.client("C1")
        .line("clients", "  ,Без Ид,1,e,1990-01-01,2020-01-01,Москва,Basic,Active")
        .line("clients", "C3,Name,1,e,1990-01-01,2024-02-30,Москва,Basic,Active")
        .line("clients", "C4,\"broken,1,e,1990-01-01,2020-01-01,Москва,Basic,Active")
        .line("clients", "C5,too,few");
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    s.write(&input);
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    let q = report.table("clients").unwrap();
    assert_eq!((q.read, q.written, q.quarantined), (5, 1, 4));
    assert!(q.reconciles());
    let url = wh.warehouse.url(&format!("quarantine/clients/processing_date={DATE}/"));
    wh.engine.register_parquet_dir("q", &url, None).await.unwrap();
    let rows = wh
        .rows("SELECT position, reason, record FROM q ORDER BY position")
        .await;
    assert_eq!(
        rows[0],
        [
            "3",
            "missing client_id",
            "  ,Без Ид,1,e,1990-01-01,2020-01-01,Москва,Basic,Active"
        ]
    );
    assert_eq!(rows[1][1], "unparsable registration_date");
    assert_eq!(rows[2][1], "malformed record");
    assert_eq!(rows[3], ["6", "malformed record", "C5,too,few"]);
    let stored: ebroker::stages::clean::CleanReport = wh
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&stored, &report);
}

#[tokio::test]
async fn a_rerun_replaces_the_day_exactly_once() {
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    rate_sources().write(&input);
    wh.clean_csv(&input, DATE).await.unwrap();
    wh.clean_csv(&input, DATE).await.unwrap();
    ebroker::tables::partitions::register_cleaned(&wh.engine, &wh.warehouse, day(DATE))
        .await
        .unwrap();
    assert_eq!(wh.rows("SELECT count(*) FROM bank_transactions").await, [["6"]]);
    let staging = wh.warehouse.local_dir("_staging/clean/").unwrap();
    assert!(!staging.join(DATE).exists(), "staging is cleared after commit");
}

#[tokio::test]
async fn missing_source_files_are_named() {
    let wh = TestWarehouse::new();
    let input = wh.input_dir("empty");
    let err = wh.clean_csv(&input, DATE).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("clients.csv") && text.contains("ebroker generate"),
        "{text}"
    );
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test]
async fn a_row_lost_after_parsing_fails_clean_with_exit_4_and_publishes_nothing() {
    // An SQL override that silently drops every id ending in 7: the rows are neither
    // written, quarantined nor duplicates, so clean must refuse the day (issue 15).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("datafusion")).unwrap();
    let dedup = include_str!("../../sql/datafusion/clean_dedup.sql");
    let keep = "RIGHT ANTI JOIN parsed p ON p.{{id}} = r.repeated_id AND p._arrival = r.replaced_arrival";
    assert!(dedup.contains(keep));
    let lossy = dedup.replace(keep, &format!("{keep}\nWHERE p.{{{{id}}}} NOT LIKE '%7'"));
    std::fs::write(dir.path().join("datafusion/clean_dedup.sql"), lossy).unwrap();
    let wh = TestWarehouse::with_sql_dir(Some(dir.path().to_path_buf()));
    let input = wh.input_dir("in");
    let mut s = Sources::new();
    s.client("CLIENT_000016")
        .client("CLIENT_000017")
        .client("CLIENT_000017");
    s.write(&input);
    let err = wh.clean_csv(&input, DATE).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 4, "{text}");
    assert!(
        text.contains("clients") && text.contains("read 3") && text.contains("written 1"),
        "{text}"
    );
    let cleaned = wh
        .warehouse
        .local_dir(&format!("cleaned/clients/processing_date={DATE}/"))
        .unwrap();
    assert!(!cleaned.exists(), "nothing of the day is published");
}

#[tokio::test]
async fn duplicates_are_counted_from_the_ids() {
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    let mut s = Sources::new();
    s.client("C1").client("C1").client("C1").client("C2");
    s.write(&input);
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    let clients = report.table("clients").unwrap();
    assert_eq!((clients.read, clients.written, clients.duplicates_removed), (4, 2, 2));
}

#[tokio::test]
async fn quoted_headers_with_a_byte_order_mark_are_accepted() {
    let wh = TestWarehouse::new();
    let input = wh.input_dir("in");
    let mut s = Sources::new();
    s.client("C1").client("C2");
    s.write(&input);
    let path = input.join("clients.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let quoted: Vec<String> = header.split(',').map(|n| format!(" \"{n}\" ")).collect();
    std::fs::write(&path, format!("\u{feff}{}\r\n{rest}", quoted.join(","))).unwrap();
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    assert_eq!(report.table("clients").unwrap().written, 2);
}

#[tokio::test]
async fn hostile_values_and_records_are_quarantined_with_their_reason() {
    let wh = TestWarehouse::with_settings(vec![("clean.max_record_bytes".into(), "4096".into())]);
    let input = wh.input_dir("in");
    let mut s = Sources::new();
    s.client("C1");
    let huge = "9".repeat(400);
    s.line(
        "bank_transactions",
        format!("TXN_HUGE,C1,2024-05-01,{huge}.00,RUB,Debit,ATM"),
    )
    .line("bank_transactions", "TXN_OK,C1,2024-05-01,100.00,RUB,Debit,ATM")
    .line(
        "bank_transactions",
        format!("TXN_LONG,C1,2024-05-01,1.00,RUB,Debit,{}", "A".repeat(5000)),
    )
    .line(
        "securities_portfolios",
        "PORT_000001,C1,Stock,X,3000000000,10.0,11.0,2024-01-01",
    )
    .line("client_activities", "ACT_1,C1,2024-05-01,Login,2147483648,3");
    s.write(&input);
    let report = wh.clean_csv(&input, DATE).await.unwrap();
    let transactions = report.table("bank_transactions").unwrap();
    assert_eq!(transactions.written, 1);
    assert_eq!(transactions.quarantined_by_reason.get("unparsable amount"), Some(&1));
    assert_eq!(transactions.quarantined_by_reason.get("record too long"), Some(&1));
    let portfolios = report.table("securities_portfolios").unwrap();
    assert_eq!(portfolios.quarantined_by_reason.get("unparsable quantity"), Some(&1));
    let activities = report.table("client_activities").unwrap();
    assert_eq!(
        (activities.written, activities.nulled_unparsable.get("duration_minutes")),
        (1, Some(&1))
    );
}

/// Splits of 4 KiB cut every file into dozens of byte ranges, most in the middle of a line:
/// the day must clean exactly as whole files do — every record once, the tie rule of
/// duplicates by line number, quarantine positions — also when the input is given as a
/// `file://` URL read in place.
#[tokio::test]
async fn files_cut_into_small_splits_clean_exactly_as_whole_files() {
    let whole = TestWarehouse::new();
    let input = whole.input_dir("src");
    let rows = ebroker_integration::generate_sources(&input, 300, 7, 0.2);
    let whole_report = whole.clean_csv(&input, DATE).await.unwrap();
    let split = TestWarehouse::with_settings(vec![("clean.split_bytes".into(), "4096".into())]);
    let input_url = url::Url::from_directory_path(&input).unwrap();
    let split_report = split
        .clean_csv(std::path::Path::new(input_url.as_str()), DATE)
        .await
        .unwrap();
    assert_eq!(split_report, whole_report);
    assert!(whole_report.rows_read() + 7 >= rows && whole_report.rows_read() > 0);
    assert!(
        whole_report
            .tables
            .iter()
            .any(|t| t.quarantined > 0 && t.duplicates_removed > 0),
        "the dirt reaches quarantine and deduplication: {whole_report:?}"
    );
    // Each split's quarantine file is published as it is: one file per split.
    let dir = format!("quarantine/clients/processing_date={DATE}/");
    let clients_bytes = std::fs::metadata(input.join("clients.csv")).unwrap().len();
    fn parquet_files<P: ToString>(files: &[P]) -> u64 {
        files.iter().filter(|f| f.to_string().ends_with(".parquet")).count() as u64
    }
    assert_eq!(parquet_files(&whole.warehouse.list_files(&dir).await.unwrap()), 1);
    let split_files = parquet_files(&split.warehouse.list_files(&dir).await.unwrap());
    assert_eq!(split_files, clients_bytes.div_ceil(4096), "one task per split");
    let a = ebroker_integration::warehouse_digest(whole.warehouse.root().as_str()).await;
    let b = ebroker_integration::warehouse_digest(split.warehouse.root().as_str()).await;
    assert!(a.keys().any(|k| k.starts_with("quarantine/")), "{a:?}");
    assert_eq!(a, b, "cleaned and quarantine partitions, row for row");
}

/// The cleaned files of a day are the same bytes on every run: the deduplication keeps the
/// rows in the order of the parse (the splits' staged files in name order), here with dozens
/// of 4 KiB splits per file whose rows two partitions would interleave differently each run.
#[tokio::test]
async fn cleaned_files_are_the_same_bytes_on_every_run() {
    let settings = || vec![("clean.split_bytes".to_string(), "4096".to_string())];
    let (first, second) = (
        TestWarehouse::with_settings(settings()),
        TestWarehouse::with_settings(settings()),
    );
    let input = first.input_dir("src");
    ebroker_integration::generate_sources(&input, 300, 11, 0.2);
    first.clean_csv(&input, DATE).await.unwrap();
    second.clean_csv(&input, DATE).await.unwrap();
    let (a, b) = (cleaned_bytes(&first).await, cleaned_bytes(&second).await);
    assert!(a.len() >= 7, "every cleaned table has files: {:?}", a.keys());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(b.get(name) == Some(bytes), "{name} differs between two runs");
    }
}

/// The bytes of the day's cleaned Parquet files, by table and bucket file name (the rates'
/// one file is named by the write that made it, so by its table alone).
async fn cleaned_bytes(wh: &TestWarehouse) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for table in ebroker::schema::TABLES {
        let dir = format!("cleaned/{}/processing_date={DATE}/", table.name);
        let local = wh.warehouse.local_dir(&dir).unwrap();
        for file in wh.warehouse.list_files(&dir).await.unwrap() {
            let Some(name) = file.filename().filter(|n| n.ends_with(".parquet")) else {
                continue;
            };
            let key = match name.starts_with("bucket-") {
                true => format!("{}/{name}", table.name),
                false => table.name.to_string(),
            };
            assert!(files.insert(key, std::fs::read(local.join(name)).unwrap()).is_none());
        }
    }
    files
}
