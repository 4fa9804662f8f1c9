//! The whole batch DAG on 20,000 generated dirty clients: counts reconcile per table, cleaned
//! ids are unique, one segmentation row per clean client, three ranked offers per client,
//! analytics totals equal sums over the marts; and `--resume` after a failure.

use chrono::NaiveDate;
use ebroker::runner::Status;
use ebroker::schema::TABLES;
use ebroker_integration::{assert_completed, day, TestWarehouse};
use ebroker_integration::{run, RunOptions};

fn options(input: Option<std::path::PathBuf>, clients: u64) -> RunOptions {
    RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input,
        clients,
        seed: 11,
        dirty: 0.03,
        resume: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_dirty_clients_reconcile_end_to_end() {
    let wh = TestWarehouse::new();
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options(None, 20_000))
        .await
        .unwrap();
    assert_completed(&state);
    for stage in ["generate", "clean", "segment", "offers", "analytics"] {
        assert_eq!(
            state.stage(stage).unwrap().status,
            Status::Succeeded,
            "{}",
            state.render()
        );
        let peak = state
            .stage(stage)
            .unwrap()
            .peak_rss_mib
            .expect("Linux reports a peak per stage");
        assert!(
            peak > 1.0 && peak < 4096.0,
            "{stage:?} peak {peak} MiB\n{}",
            state.render()
        );
    }
    let date = "2024-06-01";
    let report: ebroker::stages::clean::CleanReport = wh
        .warehouse
        .read_json(&format!("_runs/{date}/clean.json"))
        .await
        .unwrap()
        .unwrap();
    let generated = state.stage("generate").unwrap().rows.unwrap();
    assert_eq!(report.rows_read(), generated, "every generated line is read");
    ebroker::tables::partitions::register_cleaned(&wh.engine, &wh.warehouse, day(date))
        .await
        .unwrap();
    for table in TABLES {
        let q = report.table(table.name).unwrap();
        assert!(q.reconciles(), "{}: {q:?}", table.name);
        assert!(
            q.quarantined > 0 && q.duplicates_removed > 0,
            "dirt reached {}: {q:?}",
            table.name
        );
        let counts = wh
            .rows(&format!(
                "SELECT count(*), count(DISTINCT {}) FROM {}",
                table.id, table.name
            ))
            .await;
        assert_eq!(counts[0][0], counts[0][1], "{} has duplicate ids", table.name);
        assert_eq!(counts[0][0], q.written.to_string());
    }
    for mart in [
        "client_segmentation",
        "marketing_clients",
        "targeted_offers",
        "marketing_analytics_daily",
    ] {
        ebroker::tables::partitions::register_mart(&wh.engine, &wh.warehouse, mart, day(date))
            .await
            .unwrap();
    }
    let one_per_client = wh
        .rows("SELECT (SELECT count(*) FROM clients) AS a, (SELECT count(*) FROM client_segmentation) AS b, (SELECT count(DISTINCT client_id) FROM client_segmentation) AS c")
        .await;
    assert_eq!(one_per_client[0][0], one_per_client[0][1]);
    assert_eq!(one_per_client[0][0], one_per_client[0][2]);
    let bad_offers = wh
        .rows("SELECT client_id FROM targeted_offers GROUP BY client_id HAVING count(*) <> 3 OR min(nba_rank) <> 1 OR max(nba_rank) <> 3 OR count(DISTINCT nba_rank) <> 3")
        .await;
    assert!(
        bad_offers.is_empty(),
        "clients without exactly three ranked offers: {bad_offers:?}"
    );
    let offered = wh
        .rows("SELECT count(DISTINCT client_id) * 3, count(*) FROM targeted_offers")
        .await;
    assert_eq!(offered[0][1], offered[0][0]);
    assert_eq!(
        wh.rows("SELECT count(*) FROM targeted_offers").await[0][0],
        (one_per_client[0][0].parse::<u64>().unwrap() * 3).to_string()
    );
    let reconcile = wh
        .rows(
            "SELECT (SELECT sum(clients_count) FROM marketing_analytics_daily) AS a, (SELECT count(*) FROM marketing_clients) AS b, \
                    (SELECT round(sum(total_revenue), 2) FROM marketing_analytics_daily) AS c, (SELECT round(sum(total_value), 2) FROM marketing_clients) AS d, \
                    (SELECT sum(active_clients) FROM marketing_analytics_daily) AS e, (SELECT count(*) FROM marketing_clients WHERE status = 'Active') AS f",
        )
        .await;
    let r = &reconcile[0];
    assert_eq!(r[0], r[1], "clients in analytics = marketing_clients");
    let (a, b): (f64, f64) = (r[2].parse().unwrap(), r[3].parse().unwrap());
    assert!((a - b).abs() < 0.5, "analytics revenue {a} vs marts {b}");
    assert_eq!(r[4], r[5], "active clients");
    let segments = wh
        .rows("SELECT count(DISTINCT combined_segment) FROM marketing_clients")
        .await;
    assert!(
        segments[0][0].parse::<u32>().unwrap() >= 6,
        "generated data spans the segments: {segments:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_runs_only_the_stages_that_did_not_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let wh = TestWarehouse::with_sql_dir(Some(dir.path().to_path_buf()));
    let input = wh.input_dir("src");
    ebroker::stages::generate::generate(&ebroker::stages::generate::GenerateOptions {
        clients: 300,
        seed: 5,
        dirty: 0.02,
        anchor: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        out: input.clone(),
    })
    .unwrap();
    // Break the offers stage: a template file marketing got wrong.
    std::fs::write(dir.path().join("offer_templates.csv"), "combined_segment,offer_type\n").unwrap();
    let mut opts = options(Some(input), 0);
    let err = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("offers") && err.to_string().contains("--resume"),
        "{err}"
    );
    let failed: ebroker::runner::RunState = wh
        .warehouse
        .read_json("_runs/2024-06-01/state.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.stage("clean").unwrap().status, Status::Succeeded);
    assert_eq!(failed.stage("offers").unwrap().status, Status::Failed);
    assert_eq!(
        failed.stage("offers").unwrap().attempts,
        1,
        "configuration errors are not retried"
    );
    assert_eq!(failed.stage("analytics").unwrap().status, Status::Pending);

    std::fs::remove_file(dir.path().join("offer_templates.csv")).unwrap();
    opts.resume = true;
    let resumed = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &opts)
        .await
        .unwrap();
    assert_eq!(
        resumed.stage("clean").unwrap().started_at,
        failed.stage("clean").unwrap().started_at,
        "clean was not rerun"
    );
    assert_eq!(
        resumed.stage("segment").unwrap().started_at,
        failed.stage("segment").unwrap().started_at,
        "segment was not rerun"
    );
    assert_eq!(resumed.stage("offers").unwrap().status, Status::Succeeded);
    assert_eq!(resumed.stage("analytics").unwrap().status, Status::Succeeded);
}
