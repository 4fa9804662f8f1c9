//! The commit protocol and the date's lease, through the `ebroker` binary as operators run it
//! (docs/DESIGN.md, "Storage and the commit protocol"), on local disk and on the real HDFS of
//! `deploy/local/hdfs.sh` (EBROKER_TEST_HDFS):
//! - a process aborted at every step of clean's commit: right after, each partition is the
//!   old or the new day, never a mix; the next command of any stage rolls the journal
//!   forward; the rerun equals an uninterrupted run;
//! - SIGKILL at random moments of `ebroker run`, then `run --resume`: the warehouse equals
//!   an uninterrupted run's (rows and a content checksum per partition);
//! - a second writer of the same date fails at once naming the holder, and the first
//!   writer's output is whole.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ebroker::schema::TABLES;
use ebroker_integration::{
    ebroker_command, generate_sources, service, succeeded, unique_name, warehouse_digest, PartitionDigest,
};

const DATE: &str = "2024-06-01";

type Digest = BTreeMap<String, PartitionDigest>;

fn clean(root: &str, input: &Path) -> Command {
    let mut cmd = ebroker_command(root);
    cmd.args(["clean", "--date", DATE, "--input"]).arg(input);
    cmd
}

/// The cleaned and quarantined days only (what clean's commit publishes).
fn cleaned(digest: &Digest) -> Digest {
    digest
        .iter()
        .filter(|(k, _)| k.starts_with("cleaned/") || k.starts_with("quarantine/"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

async fn cleaned_digest(root: &str) -> Digest {
    cleaned(&warehouse_digest(root).await)
}

/// Aborts `ebroker clean` at each commit step of `steps` (all of them when `None`) over a
/// warehouse holding an older day, and checks what readers see before and after recovery.
///
/// On HDFS a move is two renames (the old day aside, the new one in), so between them a day
/// can be absent — never partial, never mixed; `absent_allowed` says so.
async fn abort_clean_at_commit_steps(root_of: impl Fn(&str) -> String, steps: Option<Vec<u64>>, absent_allowed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (old_input, new_input) = (dir.path().join("old"), dir.path().join("new"));
    generate_sources(&old_input, 40, 1, 0.05);
    generate_sources(&new_input, 50, 2, 0.05);
    let old_root = root_of("old");
    succeeded(&mut clean(&old_root, &old_input));
    let old = cleaned_digest(&old_root).await;
    let new_root = root_of("new");
    succeeded(&mut clean(&new_root, &new_input));
    let new = cleaned_digest(&new_root).await;
    assert_eq!(old.len(), TABLES.len() * 2, "{old:?}");
    assert!(
        old.iter().all(|(k, v)| new.get(k) != Some(v) || v.rows == 0),
        "old and new days differ"
    );

    // Steps: a marker per directory, the journal, then the moves.
    let journal_step = (TABLES.len() * 2 + 1) as u64;
    let mut steps = steps.unwrap_or_else(|| (1..1000).collect()).into_iter();
    let mut aborted = 0;
    for k in steps.by_ref() {
        let root = root_of(&format!("k{k}"));
        succeeded(&mut clean(&root, &old_input));
        let out = clean(&root, &new_input)
            .env("EBROKER_FAIL_COMMIT_STEP", format!("{k}:abort"))
            .output()
            .unwrap();
        if out.status.success() {
            assert!(
                k > journal_step,
                "clean committed without the step {k} it was to abort at"
            );
            break; // past the last step
        }
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "step {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        aborted += 1;
        let seen = cleaned_digest(&root).await;
        for key in old.keys().chain(new.keys()) {
            let now = seen.get(key);
            assert!(
                now == old.get(key) || now == new.get(key) || (absent_allowed && now.is_none()),
                "step {k}: {key} is neither the old nor the new day before recovery: {now:?}"
            );
        }
        // Any stage's next command rolls the journal forward before it reads.
        succeeded(ebroker_command(&root).args(["segment", "--date", DATE]));
        let recovered = cleaned_digest(&root).await;
        if k <= journal_step {
            assert_eq!(recovered, old, "step {k}: no journal yet, the old day stays");
        } else {
            assert_eq!(recovered, new, "step {k}: the journaled commit was rolled forward");
        }
        succeeded(&mut clean(&root, &new_input));
        assert_eq!(
            cleaned_digest(&root).await,
            new,
            "step {k}: the rerun equals an uninterrupted run"
        );
    }
    assert!(aborted >= 3, "only {aborted} steps aborted");
    eprintln!("aborted clean's commit at {aborted} steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_aborted_at_every_commit_step_on_local_disk_recovers_whole() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    abort_clean_at_commit_steps(|name| base.join(name).display().to_string(), None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
async fn clean_aborted_at_commit_steps_on_hdfs_recovers_whole() {
    let base = format!("{}/{}", service("EBROKER_TEST_HDFS"), unique_name("abort"));
    let steps = vec![1, 14, 15, 16, 17, 30, 43, 44, 45, 46, 47];
    abort_clean_at_commit_steps(|name| format!("{base}/{name}"), Some(steps), true).await;
}

/// A small pseudo-random sequence (xorshift), so a failing trial can be replayed.
fn random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The stage `_runs/D/state.json` says was running, if any.
fn running_stage(root: &Path) -> String {
    let state = std::fs::read(root.join("_runs").join(DATE).join("state.json")).unwrap_or_default();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
    state["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["status"] == "running")
        .and_then(|s| s["stage"].as_str())
        .unwrap_or("none")
        .to_string()
}

/// The DAG's stages that write the date, each killed in turn.
const KILLED_STAGES: [&str; 4] = ["clean", "segment", "offers", "analytics"];

/// How long each stage of the run at `root` took, from its `_runs/D/state.json`.
fn stage_seconds(root: &Path) -> BTreeMap<String, f64> {
    let state = std::fs::read(root.join("_runs").join(DATE).join("state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    state["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["stage"].as_str()?.to_string(), s["seconds"].as_f64()?)))
        .collect()
}

/// SIGKILLs `ebroker run` at a random moment of each writing stage (`EBROKER_CRASH_TRIALS`
/// trials per stage, default 1; the benchmark-style run uses 20), then resumes it: every
/// time, the warehouse equals an uninterrupted run's (rows and content checksum per
/// partition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_killed_at_random_moments_of_every_stage_then_resumed_equals_an_uninterrupted_run() {
    let trials: u64 = std::env::var("EBROKER_CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    generate_sources(&input, 300, 5, 0.05);
    let run = |root: &Path, resume: bool| {
        let mut cmd = ebroker_command(root.to_str().unwrap());
        cmd.args(["run", "--date", DATE, "--input"]).arg(&input);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let baseline_root = dir.path().join("baseline");
    succeeded(&mut run(&baseline_root, false));
    let seconds = stage_seconds(&baseline_root);
    let baseline = warehouse_digest(baseline_root.to_str().unwrap()).await;
    assert!(
        baseline.keys().any(|k| k.starts_with("marts/targeted_offers")),
        "{baseline:?}"
    );

    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut killed_in: BTreeMap<String, u32> = BTreeMap::new();
    for (stage, trial) in KILLED_STAGES.iter().flat_map(|s| (0..trials).map(move |t| (*s, t))) {
        let root = dir.path().join(format!("{stage}{trial}"));
        let span_ms = (seconds.get(stage).copied().unwrap_or(0.0) * 1000.0) as u64 + 1;
        let wait = Duration::from_millis(random(&mut seed) % span_ms);
        let mut child = run(&root, false)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while running_stage(&root) != stage && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{stage} never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(wait);
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        *killed_in.entry(running_stage(&root)).or_default() += 1;
        succeeded(&mut run(&root, true));
        let digest = warehouse_digest(root.to_str().unwrap()).await;
        assert_eq!(digest, baseline, "{stage} trial {trial}: killed {wait:?} into it");
        std::fs::remove_dir_all(&root).unwrap();
    }
    eprintln!("SIGKILL trials by the stage running at the kill: {killed_in:?}");
}

/// While `ebroker run` holds a date, a second writer of that date fails at once with exit 1
/// naming the holder; the first run's output is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_a_date_fails_fast_and_the_first_finishes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    generate_sources(&input, 3000, 6, 0.05);
    let baseline_root = dir.path().join("baseline");
    succeeded(
        ebroker_command(baseline_root.to_str().unwrap())
            .args(["clean", "--date", DATE, "--input"])
            .arg(&input),
    );
    let baseline = warehouse_digest(baseline_root.to_str().unwrap()).await;

    let root = dir.path().join("contended");
    let root_text = root.to_str().unwrap().to_string();
    let mut first = ebroker_command(&root_text)
        .args(["run", "--date", DATE, "--input"])
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lease = root.join("_runs").join(DATE).join("lease.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lease.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(lease.exists(), "the run never took the date's lease");
    let started = Instant::now();
    let second = ebroker_command(&root_text)
        .args(["clean", "--date", DATE, "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ebroker run --date 2024-06-01") && stderr.contains(&first.id().to_string()),
        "the error names the holder: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
    assert!(first.wait().unwrap().success());
    let digest = cleaned(&warehouse_digest(&root_text).await);
    assert_eq!(digest, cleaned(&baseline));
    assert!(!lease.exists(), "the lease is released");
}
