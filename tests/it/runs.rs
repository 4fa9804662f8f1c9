//! The operators' view of past runs: `ebroker runs list/show` in every format, and the run
//! history in Prometheus' text format — the `_runs/metrics.prom` file `ebroker run` writes and
//! the `/metrics` endpoint of `ebroker serve` — parsed by the Prometheus Python client
//! (`EBROKER_TEST_PYTHON`, with prometheus-client) and checked against the runs' own state.

use std::collections::BTreeMap;
use std::process::Command;

use ebroker::runner::RunState;
use ebroker::stages::clean::CleanReport;
use ebroker_integration::{ebroker_command, free_port, service, start_server, succeeded, TestWarehouse};

const DAYS: [&str; 2] = ["2024-06-01", "2024-06-02"];

/// Two days run in-process by the binary, each on 2,000 generated dirty clients.
async fn two_days() -> TestWarehouse {
    let wh = TestWarehouse::new();
    for day in DAYS {
        succeeded(ebroker_command(&wh.config.warehouse.root).args([
            "run",
            "--date",
            day,
            "--clients",
            "2000",
            "--dirty",
            "0.05",
        ]));
    }
    wh
}

fn stdout(out: std::process::Output) -> String {
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn runs(wh: &TestWarehouse, args: &[&str]) -> String {
    stdout(succeeded(
        ebroker_command(&wh.config.warehouse.root).arg("runs").args(args),
    ))
}

async fn state(wh: &TestWarehouse, day: &str) -> RunState {
    wh.warehouse
        .read_json(&format!("_runs/{day}/state.json"))
        .await
        .unwrap()
        .unwrap()
}

async fn quality(wh: &TestWarehouse, day: &str) -> CleanReport {
    wh.warehouse
        .read_json(&format!("_runs/{day}/clean.json"))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_and_show_report_every_day_as_its_state_says() {
    let wh = two_days().await;
    let list: serde_json::Value = serde_json::from_str(&runs(&wh, &["list", "--format", "json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for (row, day) in list.iter().zip(DAYS) {
        let state = state(&wh, day).await;
        let quarantined: u64 = quality(&wh, day).await.tables.iter().map(|t| t.quarantined).sum();
        assert_eq!(row["processing_date"], day);
        assert_eq!(row["status"], "succeeded");
        assert_eq!(row["rows_read"], state.stage("clean").unwrap().rows.unwrap());
        assert_eq!(row["quarantined"], quarantined);
        assert!(quarantined > 0, "the dirt is quarantined");
    }
    let since: serde_json::Value =
        serde_json::from_str(&runs(&wh, &["list", "--since", DAYS[1], "--format", "json"])).unwrap();
    assert_eq!(since.as_array().unwrap().len(), 1);
    let csv = runs(&wh, &["list", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 3, "a header and two days:\n{csv}");
    assert!(runs(&wh, &["list"]).contains(DAYS[0]));

    let show: serde_json::Value = serde_json::from_str(&runs(&wh, &["show", DAYS[0], "--format", "json"])).unwrap();
    let report = quality(&wh, DAYS[0]).await;
    let shown: u64 = show["quarantine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let table = report.table(q["table"].as_str().unwrap()).unwrap();
            let reason = q["reason"].as_str().unwrap();
            assert_eq!(q["records"], table.quarantined_by_reason[reason], "{q}");
            q["records"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(shown, report.tables.iter().map(|t| t.quarantined).sum::<u64>());
    assert_eq!(
        show["run"]["stages"].as_array().unwrap().len(),
        state(&wh, DAYS[0]).await.stages.len()
    );
    let table = runs(&wh, &["show", DAYS[0]]);
    assert!(table.contains("clean") && table.contains("quarantined"), "{table}");

    let missing = ebroker_command(&wh.config.warehouse.root)
        .args(["runs", "show", "2030-01-01"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("runs list"));
}

/// Every sample of an exposition as the Prometheus client parses it: name{labels} -> value.
fn parse_with_prometheus_client(text: &str) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(samples))
"#;
    let mut child = Command::new(service("EBROKER_TEST_PYTHON"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python starts");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_the_runs_parse_and_carry_the_runs_numbers() {
    let wh = two_days().await;
    let file = std::fs::read_to_string(wh.warehouse.local_dir("_runs/metrics.prom").unwrap()).unwrap();
    let samples = parse_with_prometheus_client(&file);
    let latest = state(&wh, DAYS[1]).await;
    for stage in latest.stages.iter().filter(|s| s.rows.is_some()) {
        let key = format!("ebroker_stage_rows{{stage={}}}", stage.stage);
        assert_eq!(samples.get(&key), Some(&(stage.rows.unwrap() as f64)), "{key}");
        let key = format!("ebroker_stage_duration_seconds{{stage={}}}", stage.stage);
        assert_eq!(samples.get(&key), stage.seconds.as_ref(), "{key}");
    }
    let day_two = chrono::NaiveDate::parse_from_str(DAYS[1], "%Y-%m-%d").unwrap();
    let midnight = day_two.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() as f64;
    assert_eq!(
        samples.get("ebroker_stage_last_success_processing_date_seconds{stage=clean}"),
        Some(&midnight)
    );
    let report = quality(&wh, DAYS[1]).await;
    let mut compared = 0;
    for table in &report.tables {
        for (reason, records) in &table.quarantined_by_reason {
            let key = format!("ebroker_quarantined_records{{reason={reason},table={}}}", table.table);
            assert_eq!(samples.get(&key), Some(&(*records as f64)), "{key}");
            compared += 1;
        }
    }
    assert!(compared > 0, "the dirty days quarantined records");

    // The same exposition from `ebroker serve`, behind its token.
    let (port, metrics_port) = (free_port(), free_port());
    let metrics = format!("serve.metrics_port={metrics_port}");
    let _server = start_server(&wh, port, &["--token", "t0ken", "--set", &metrics]).await;
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let curl = |args: &[&str]| {
        stdout(succeeded(
            Command::new("curl").args(["-s", "--max-time", "10"]).args(args),
        ))
    };
    while curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]) == "000" {
        assert!(std::time::Instant::now() < deadline, "no /metrics on {metrics_port}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]),
        "401",
        "no token, no metrics"
    );
    let served = curl(&["-H", "Authorization: Bearer t0ken", &url]);
    assert_eq!(parse_with_prometheus_client(&served), samples);
}

/// The bars of the chart `id` in a page: (label, value) in drawing order.
fn bars(page: &str, id: &str) -> Vec<(String, f64)> {
    let start = page
        .find(&format!("data-chart=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id} in the page"));
    let chart = &page[start..start + page[start..].find("</svg>").expect("the chart ends")];
    let attribute = |rest: &str, name: &str| -> (String, usize) {
        let at = rest.find(&format!("{name}=\"")).expect("an attribute") + name.len() + 2;
        let end = at + rest[at..].find('"').unwrap();
        (rest[at..end].replace("&amp;", "&"), end)
    };
    let mut found = Vec::new();
    let mut rest = chart;
    while rest.contains("data-label=\"") {
        let (label, end) = attribute(rest, "data-label");
        let (value, end2) = attribute(&rest[end..], "data-value");
        found.push((label, value.parse().expect("a number")));
        rest = &rest[end + end2..];
    }
    found
}

/// `ebroker sql` of `query` as (first column, second column as a number) rows.
fn sql_pairs(wh: &TestWarehouse, query: &str) -> Vec<(String, f64)> {
    let out = ebroker_out(wh, &["sql", "--format", "csv", "-e", query]);
    out.lines()
        .skip(1)
        .map(|line| {
            let (label, value) = line.rsplit_once(',').expect("two columns");
            (label.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// The standard output of the `ebroker` command `args` on this warehouse; fails unless it succeeds.
fn ebroker_out(wh: &TestWarehouse, args: &[&str]) -> String {
    stdout(succeeded(ebroker_command(&wh.config.warehouse.root).args(args)))
}

fn assert_same_bars(mut page: Vec<(String, f64)>, mut expected: Vec<(String, f64)>, chart: &str) {
    page.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(page.len(), expected.len(), "{chart}: {page:?} vs {expected:?}");
    assert!(!page.is_empty(), "{chart} has bars");
    for ((a, x), (b, y)) in page.iter().zip(&expected) {
        assert_eq!(a, b, "{chart}");
        assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{chart} {a}: {x} vs {y}");
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_chromium_with_the_numbers_of_the_marts() {
    let chromium = service("EBROKER_TEST_CHROMIUM");
    let wh = two_days().await;
    let day = DAYS[1];
    let written = ebroker_out(&wh, &["report", "--html", "--date", day]);
    let file = wh.warehouse.local_dir(&format!("_runs/{day}/report.html")).unwrap();
    assert!(written.contains("report.html"), "{written}");
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("<script"),
        "self-contained"
    );
    let url = url::Url::from_file_path(&file).unwrap();
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--user-data-dir=/tmp/ebroker-chromium",
    ];
    let dom = stdout(succeeded(
        Command::new(&chromium)
            .args(headless)
            .args(["--dump-dom", url.as_str()]),
    ));
    for chart in [
        "segments",
        "combined_segments",
        "offers_by_type",
        "top_clients",
        "quarantine",
        "run_seconds",
        "run_memory",
    ] {
        assert!(
            dom.contains(&format!("data-chart=\"{chart}\"")),
            "chromium sees chart {chart}"
        );
    }
    let date = format!("processing_date = DATE '{day}'");
    assert_same_bars(
        bars(&dom, "segments"),
        sql_pairs(
            &wh,
            &format!("SELECT segment, count(*) FROM marts.client_segmentation WHERE {date} GROUP BY segment"),
        ),
        "segments",
    );
    assert_same_bars(
        bars(&dom, "combined_segments"),
        sql_pairs(
            &wh,
            &format!("SELECT combined_segment, count(*) FROM marts.marketing_clients WHERE {date} GROUP BY 1"),
        ),
        "combined_segments",
    );
    assert_same_bars(
        bars(&dom, "offers_by_type"),
        sql_pairs(
            &wh,
            &format!("SELECT offer_type, sum(expected_revenue) FROM marts.targeted_offers WHERE {date} GROUP BY 1"),
        ),
        "offers_by_type",
    );
    let report = quality(&wh, day).await;
    let quarantined: Vec<(String, f64)> = report
        .tables
        .iter()
        .flat_map(|t| {
            t.quarantined_by_reason
                .iter()
                .map(|(r, n)| (format!("{}: {r}", t.table), *n as f64))
        })
        .collect();
    assert_same_bars(bars(&dom, "quarantine"), quarantined, "quarantine");
    assert_eq!(bars(&dom, "run_seconds").len(), DAYS.len(), "one bar per run");

    let screenshot = wh.dir.path().join("report.png");
    let shot = format!("--screenshot={}", screenshot.display());
    succeeded(
        Command::new(&chromium)
            .args(headless)
            .args([shot.as_str(), "--window-size=1000,3000", url.as_str()]),
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of {} bytes",
        png.len()
    );
}
