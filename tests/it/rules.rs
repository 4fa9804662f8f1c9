//! Segmentation, combined segments, expected revenue and NBA ranking (docs/SPEC.md §5, §6) on
//! hand-made clients at every threshold edge, through the real clean -> segment -> offers path.

use ebroker_integration::day;
use ebroker_integration::{Sources, TestWarehouse};

const DATE: &str = "2024-06-01";

async fn run(sources: &Sources, wh: &TestWarehouse) {
    let input = wh.input_dir("input");
    sources.write(&input);
    wh.clean_csv(&input, DATE).await.unwrap();
    ebroker::stages::segment::segment(&wh.engine, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    ebroker::stages::offers::offers(&wh.engine, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    ebroker::tables::partitions::register_mart(&wh.engine, &wh.warehouse, "targeted_offers", day(DATE))
        .await
        .unwrap();
}

/// client -> [segment, portfolio_segment, transaction_segment, combined_segment]
async fn segments(wh: &TestWarehouse) -> std::collections::BTreeMap<String, Vec<String>> {
    wh.keyed(
        "SELECT s.client_id, s.segment, s.portfolio_segment, s.transaction_segment, m.combined_segment \
         FROM client_segmentation s JOIN marketing_clients m ON m.client_id = s.client_id",
    )
    .await
}

#[tokio::test]
async fn segment_thresholds_at_their_edges() {
    let mut s = Sources::new();
    let cases: &[(&str, &str, usize, usize, Option<&str>)] = &[
        // (client, total transactions, logins, activities, portfolio price for quantity 1)
        ("T049999", "49999.99", 0, 0, None),
        ("T050000", "50000.00", 0, 0, None),
        ("T100000", "100000.00", 0, 0, None),
        ("T200000L4", "200000.00", 4, 0, None),
        ("T200000L5", "200000.00", 5, 0, None),
        ("P499999", "0", 0, 0, Some("499999.99")),
        ("P500000", "0", 0, 0, Some("500000.00")),
        ("L9A20", "0", 9, 20, None),
        ("L10A19", "0", 10, 19, None),
        ("L10A20", "0", 10, 20, None),
    ];
    for (client, amount, logins, activities, price) in cases {
        s.client(client);
        if *amount != "0" {
            s.transaction(client, amount);
        }
        s.logins(client, *logins).activities(client, *activities);
        if let Some(price) = price {
            s.position(client, 1, price);
        }
    }
    let wh = TestWarehouse::new();
    run(&s, &wh).await;
    let got = segments(&wh).await;
    let expect = |client: &str, segment: &str, portfolio: &str, transaction: &str| {
        let row = &got[client];
        assert_eq!(
            (row[0].as_str(), row[1].as_str(), row[2].as_str()),
            (segment, portfolio, transaction),
            "{client}"
        );
    };
    expect("T049999", "Basic", "Basic", "Basic");
    expect("T050000", "Standard", "Basic", "Standard");
    expect("T100000", "Premium", "Basic", "Premium");
    expect("T200000L4", "Premium", "Basic", "VIP");
    expect("T200000L5", "VIP", "Basic", "VIP");
    expect("P499999", "Basic", "Premium", "Basic");
    expect("P500000", "VIP", "VIP", "Basic");
    expect("L9A20", "Basic", "Basic", "Basic");
    expect("L10A19", "Basic", "Basic", "Basic");
    expect("L10A20", "Premium", "Basic", "Basic");
}

#[tokio::test]
async fn one_client_per_combined_segment() {
    let mut s = Sources::new();
    s.client("VA").transaction("VA", "250000").logins("VA", 5);
    s.client("VP").position("VP", 1, "600000");
    s.client("PA").transaction("PA", "150000").logins("PA", 10);
    s.client("PP").transaction("PP", "150000").logins("PP", 9);
    s.client("SA").transaction("SA", "60000").logins("SA", 5);
    s.client("SP").transaction("SP", "60000").logins("SP", 4);
    s.client("TO").transaction("TO", "100.50");
    s.client("LE").logins("LE", 3);
    let wh = TestWarehouse::new();
    run(&s, &wh).await;
    let got = segments(&wh).await;
    for (client, combined) in [
        ("VA", "VIP Active"),
        ("VP", "VIP Passive"),
        ("PA", "Premium Active"),
        ("PP", "Premium Passive"),
        ("SA", "Standard Active"),
        ("SP", "Standard Passive"),
        ("TO", "Transaction Only"),
        ("LE", "Low Engagement"),
    ] {
        assert_eq!(got[client][3], combined, "{client}");
    }
    let levels = wh
        .keyed("SELECT client_id, priority_level, activity_score FROM marketing_clients")
        .await;
    assert_eq!(levels["VA"], ["1", "5"]);
    assert_eq!(levels["PP"], ["2", "9"]);
    assert_eq!(levels["SA"], ["3", "5"]);
    assert_eq!(levels["LE"], ["4", "3"]);
    let offers = wh.rows("SELECT client_id, count(*), min(nba_rank), max(nba_rank), count(DISTINCT nba_rank) FROM targeted_offers GROUP BY client_id").await;
    assert_eq!(offers.len(), 8);
    for row in offers {
        assert_eq!(&row[1..], ["3", "1", "3", "3"], "{}", row[0]);
    }
}

#[tokio::test]
async fn expected_revenue_multipliers_days_valid_and_nba_rank() {
    let mut s = Sources::new();
    // total_value (= total transaction amount) around each multiplier edge.
    for (client, amount, logins) in [
        ("A", "49999.99", 0),
        ("B", "50000.00", 0),
        ("C", "500000.00", 5),
        ("D", "500000.01", 5),
        ("E", "1000000.00", 5),
        ("F", "1000000.01", 5),
    ] {
        s.client(client).transaction(client, amount).logins(client, logins);
    }
    let wh = TestWarehouse::new();
    run(&s, &wh).await;
    let nba = wh
        .keyed("SELECT client_id, offer_type, expected_revenue, days_valid, offer_priority FROM targeted_offers WHERE nba_rank = 1")
        .await;
    // A: Transaction Only (Basic, has a transaction), x0.7 of 3000, Basic -> 7 days.
    assert_eq!(nba["A"], ["Investment Starter Guide", "2100", "7", "4"]);
    // B: Standard Passive, x1.
    assert_eq!(nba["B"], ["Starter Investment Package", "5000", "14", "4"]);
    // C..F: VIP Active; ranks by priority then revenue: Premium Investment Advisory first.
    assert_eq!(nba["C"], ["Premium Investment Advisory", "50000", "30", "1"]);
    assert_eq!(nba["D"], ["Premium Investment Advisory", "60000", "30", "1"]);
    assert_eq!(nba["E"], ["Premium Investment Advisory", "60000", "30", "1"]);
    assert_eq!(nba["F"], ["Premium Investment Advisory", "75000", "30", "1"]);
    let ranks = wh
        .rows("SELECT offer_type FROM targeted_offers WHERE client_id = 'F' ORDER BY nba_rank")
        .await;
    assert_eq!(
        ranks,
        [
            ["Premium Investment Advisory"],
            ["Exclusive Private Banking"],
            ["Luxury Credit Card"]
        ]
    );
}

#[tokio::test]
async fn nba_ties_break_on_offer_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut templates = ebroker::sql::SqlLibrary::default()
        .get("offer_templates.csv")
        .unwrap()
        .into_owned();
    templates = templates.replace(
        "Low Engagement,Welcome Bonus,Приветственный бонус,1000,5",
        "Low Engagement,Zeta Offer,Z,500,5",
    );
    templates = templates.replace(
        "Low Engagement,Basic Banking Package,Базовый банковский пакет,500,5",
        "Low Engagement,Alpha Offer,A,500,5",
    );
    std::fs::write(dir.path().join("offer_templates.csv"), templates).unwrap();
    let wh = TestWarehouse::with_sql_dir(Some(dir.path().to_path_buf()));
    let mut s = Sources::new();
    s.client("X");
    run(&s, &wh).await;
    let ranks = wh
        .rows("SELECT offer_type, nba_rank FROM targeted_offers WHERE client_id = 'X' ORDER BY nba_rank")
        .await;
    assert_eq!(
        ranks,
        [["Alpha Offer", "1"], ["Zeta Offer", "2"], ["Mobile Banking App", "3"]]
    );
}

#[tokio::test]
async fn offer_ids_are_deterministic_across_reruns() {
    let mut s = Sources::new();
    s.client("A").transaction("A", "100");
    let wh = TestWarehouse::new();
    run(&s, &wh).await;
    let first = wh.rows("SELECT offer_id FROM targeted_offers ORDER BY offer_id").await;
    run(&s, &wh).await;
    let second = wh.rows("SELECT offer_id FROM targeted_offers ORDER BY offer_id").await;
    assert_eq!(first.len(), 3);
    assert_eq!(first, second);
    let expected = ebroker::engine::functions::offer_id("A", "Investment Starter Guide", DATE).to_string();
    assert!(first.iter().any(|r| r[0] == expected));
}
