//! The `ebroker` binary as users run it: `--help`, exit codes, a clean killed with SIGKILL
//! part-way (the previous day stays whole and visible; the rerun is complete), and `run`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DATE: &str = "2024-06-01";

fn ebroker(warehouse: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebroker"));
    cmd.arg("--warehouse").arg(warehouse).env_remove("RUST_LOG");
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("ebroker starts");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` with its bytes, sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn help_teaches_and_bad_usage_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebroker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for word in ["run", "generate", "clean", "segment", "offers", "analytics", "EBROKER_"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ebroker"))
        .args(["clean", "--input", ".", "--date", "2024-02-30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
    let out = Command::new(env!("CARGO_BIN_EXE_ebroker"))
        .args(["--set", "engine.memory_limit=lots", "config", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("engine.memory_limit"));
}

#[test]
fn a_killed_clean_leaves_the_previous_day_whole_and_the_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large, wh) = (
        dir.path().join("small"),
        dir.path().join("large"),
        dir.path().join("wh"),
    );
    ok(ebroker(&wh)
        .args(["generate", "--clients", "2000", "--seed", "1", "--date", DATE, "--out"])
        .arg(&small));
    ok(ebroker(&wh)
        .args([
            "generate",
            "--clients",
            "150000",
            "--seed",
            "2",
            "--date",
            DATE,
            "--out",
        ])
        .arg(&large));
    ok(ebroker(&wh).args(["clean", "--date", DATE, "--input"]).arg(&small));
    let before = snapshot(&wh.join("cleaned"));
    let quarantine_before = snapshot(&wh.join("quarantine"));
    assert!(!before.is_empty());

    let mut child = ebroker(&wh)
        .args(["clean", "--date", DATE, "--input"])
        .arg(&large)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = wh.join("_staging/clean").join(DATE).join("cleaned");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !staging.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "clean finished before it could be killed; use more clients"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        snapshot(&wh.join("cleaned")),
        before,
        "the killed run changed what readers see"
    );
    assert_eq!(snapshot(&wh.join("quarantine")), quarantine_before);

    let out = ok(ebroker(&wh).args(["clean", "--date", DATE, "--input"]).arg(&large));
    assert!(out.contains("bank_transactions"), "{out}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wh.join("_runs").join(DATE).join("clean.json")).unwrap()).unwrap();
    let clients = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "clients")
        .unwrap();
    assert!(clients["read"].as_u64().unwrap() >= 150_000);
    for t in report["tables"].as_array().unwrap() {
        let sum = t["written"].as_u64().unwrap()
            + t["quarantined"].as_u64().unwrap()
            + t["duplicates_removed"].as_u64().unwrap();
        assert_eq!(t["read"].as_u64().unwrap(), sum, "{t}");
    }
    assert!(!wh.join("_staging/clean").join(DATE).exists());
}

#[test]
fn run_with_defaults_fills_the_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let out = ok(ebroker(&wh).args(["run", "--date", DATE, "--clients", "1000"]));
    assert!(out.contains("analytics") && out.contains("succeeded"), "{out}");
    for mart in [
        "client_segmentation",
        "marketing_clients",
        "targeted_offers",
        "marketing_analytics_daily",
    ] {
        assert!(
            wh.join("marts")
                .join(mart)
                .join(format!("processing_date={DATE}"))
                .is_dir(),
            "{mart} missing"
        );
    }
    let report = ok(ebroker(&wh).args(["analytics", "--date", DATE, "--format", "json"]));
    let first: serde_json::Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    assert!(first["rows"].as_array().unwrap().len() >= 4, "{first}");
}

#[test]
fn secrets_never_reach_output_errors_or_state_files() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let password_file = dir.path().join("ch.pass");
    std::fs::write(&password_file, "ch-file-s3cr3t\n").unwrap();
    let secrets = [
        "gp-env-s3cr3t",
        "ch-file-s3cr3t",
        "987654321",
        "url-s3cr3t",
        "pem-s3cr3t",
    ];
    let with_secrets = |cmd: &mut Command| {
        cmd.env("EBROKER_GREENPLUM__PASSWORD", "gp-env-s3cr3t")
            .env("EBROKER_CLICKHOUSE__PASSWORD_FILE", &password_file)
            .env("EBROKER_SERVE__TOKEN", "987654321")
            .args(["-vv", "--set", "kafka.properties={\"ssl.key.pem\" = \"pem-s3cr3t\"}"]);
    };
    let mut outputs = Vec::new();
    let mut run = ebroker(&wh);
    with_secrets(&mut run);
    let out = run.args(["run", "--date", DATE, "--clients", "300"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    outputs.push(out);
    let mut show = ebroker(&wh);
    with_secrets(&mut show);
    outputs.push(show.args(["config", "show"]).output().unwrap());
    // A publish to a URL with credentials in it is refused; the error names the URL without them.
    let mut publish = ebroker(&wh);
    with_secrets(&mut publish);
    let out = publish
        .args([
            "--set",
            "clickhouse.url=http://etl:url-s3cr3t@127.0.0.1:1",
            "--set",
            "clickhouse.retries=1",
        ])
        .args(["publish", "clickhouse", "--date", DATE])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "credentials in a URL are a configuration error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("clickhouse.password_file"),
        "{stderr}"
    );
    outputs.push(out);
    // A publish that fails at the server, with the password from its file, traced (-vv).
    let mut publish = ebroker(&wh);
    with_secrets(&mut publish);
    let out = publish
        .args([
            "--set",
            "clickhouse.url=http://127.0.0.1:1",
            "--set",
            "clickhouse.retries=1",
        ])
        .args(["publish", "clickhouse", "--date", DATE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    outputs.push(out);

    let mut texts: Vec<(String, Vec<u8>)> = snapshot(&wh);
    for (i, out) in outputs.iter().enumerate() {
        texts.push((format!("stdout of command {i}"), out.stdout.clone()));
        texts.push((format!("stderr of command {i}"), out.stderr.clone()));
    }
    for (what, bytes) in &texts {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaks in {what}");
        }
    }
}
