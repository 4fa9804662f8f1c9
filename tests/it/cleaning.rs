//! Cleaning (docs/SPEC.md §4) on hand-made rows with known answers: the as-of rate at its edges,
//! deduplication, quarantine with the raw text, reconciliation, and atomic reruns.

use ebroker::stages::clean::clean_csv_dir;
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
    let report = clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap();
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
    let report = clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap();
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
    let report = clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap();
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
    clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap();
    clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap();
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
    let err = clean_csv_dir(&wh.engine, &wh.warehouse, &wh.sql, &input, day(DATE))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("clients.csv") && text.contains("ebroker generate"),
        "{text}"
    );
    assert_eq!(err.exit_code(), 3);
}
