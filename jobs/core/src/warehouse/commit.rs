//! The commit protocol (docs/DESIGN.md, "Storage and the commit protocol"): how a stage's
//! staged output becomes visible so that no reader, after recovery, sees a day half old and
//! half new or a partial partition — whatever kills the process and wherever.
//!
//! A stage stages everything under `_staging/`, then publishes one [`Commit`]: every staged
//! directory gets a marker file `.commit-<id>` and is made durable (fsync on local disks);
//! the list of moves is written to `_runs/D/<stage>.commit.json` (the journal); the moves are
//! done — an atomic directory exchange on local disks, directory renames on HDFS, file by
//! file elsewhere — and the journal is removed. Every move is idempotent: the marker says
//! whether a target already holds the new data. [`Warehouse::recover`] rolls a leftover
//! journal forward, and every command that writes a date calls it first, under the date's
//! lease ([`super::lease`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::{local, Backend, Warehouse};
use crate::date::ProcessingDate;
use crate::error::{Error, Result};

/// The marker a committed directory carries: `.commit-<id>` (hidden from Spark, Hive, PXF
/// and DataFusion's `.parquet` listing alike).
const MARKER_PREFIX: &str = ".commit-";

/// Where replaced directories wait for deletion on stores without an exchange.
const REPLACED: &str = "_staging/_replaced/";

/// One move of a commit; paths are relative to the warehouse root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// Where the stage staged it.
    pub from: String,
    /// Where readers look.
    pub to: String,
    /// A directory (one day of a table) rather than one file (a report, a manifest).
    pub directory: bool,
    /// The directory's files, on stores that move file by file (they delete what is not
    /// listed here from the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// `_runs/D/<stage>.commit.json`: a commit that has started and not yet finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitJournal {
    pub id: String,
    pub stage: String,
    pub processing_date: ProcessingDate,
    pub written_at: String,
    pub moves: Vec<Move>,
}

/// The moves a stage publishes together.
#[derive(Debug, Clone)]
pub struct Commit {
    stage: String,
    date: ProcessingDate,
    moves: Vec<Move>,
}

impl Commit {
    pub fn new(stage: &str, date: ProcessingDate) -> Commit {
        Commit {
            stage: stage.to_string(),
            date,
            moves: Vec::new(),
        }
    }

    /// Replaces the directory `target` with the staged directory `staged`.
    pub fn directory(&mut self, staged: &str, target: &str) {
        self.add(staged, target, true);
    }

    /// Replaces the file `target` with the staged file `staged`.
    pub fn file(&mut self, staged: &str, target: &str) {
        self.add(staged, target, false);
    }

    fn add(&mut self, from: &str, to: &str, directory: bool) {
        let trim = |p: &str| p.trim_end_matches('/').to_string();
        self.moves.push(Move {
            from: trim(from),
            to: trim(to),
            directory,
            files: Vec::new(),
        });
    }
}

/// How a fault test makes a commit fail: at its `at`-th step (a put, rename, exchange or
/// delete), either with an error or by aborting the process. Set on a warehouse with
/// [`Warehouse::with_failures`], or for a whole process with
/// `EBROKER_FAIL_COMMIT_STEP=<k>[:abort]` (a test hook; nothing sets it in production).
#[derive(Debug)]
pub struct FailPlan {
    at: u64,
    abort: bool,
    steps: AtomicU64,
}

impl FailPlan {
    pub fn new(at: u64, abort: bool) -> Arc<FailPlan> {
        Arc::new(FailPlan {
            at,
            abort,
            steps: AtomicU64::new(0),
        })
    }

    /// The plan `EBROKER_FAIL_COMMIT_STEP` asks for, if any.
    pub fn from_env() -> Option<Arc<FailPlan>> {
        let value = std::env::var("EBROKER_FAIL_COMMIT_STEP").ok()?;
        let (at, mode) = value.split_once(':').unwrap_or((&value, "error"));
        Some(FailPlan::new(at.parse().ok()?, mode == "abort"))
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    fn step(&self, what: &str) -> Result<()> {
        let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if step != self.at {
            return Ok(());
        }
        if self.abort {
            eprintln!("EBROKER_FAIL_COMMIT_STEP: aborting at commit step {step} ({what})");
            std::process::abort();
        }
        Err(Error::Stage {
            stage: "commit".into(),
            message: format!("injected failure at commit step {step} ({what})"),
        })
    }
}

/// A commit id: unique per process and moment.
fn commit_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = chrono::Utc::now();
    format!(
        "{}-{}-{}",
        now.format("%Y%m%dT%H%M%S%.6f"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

impl Warehouse {
    /// `_runs/D/<stage>.commit.json`.
    pub fn journal_file(stage: &str, date: ProcessingDate) -> String {
        Warehouse::run_file(date, &format!("{stage}.commit.json"))
    }

    /// Publishes `commit`: seals and journals it, does its moves, removes the journal.
    pub async fn publish(&self, commit: Commit) -> Result<()> {
        let mut journal = CommitJournal {
            id: commit_id(),
            stage: commit.stage,
            processing_date: commit.date,
            written_at: chrono::Utc::now().to_rfc3339(),
            moves: commit.moves,
        };
        for index in 0..journal.moves.len() {
            let files = self.seal(&journal.moves[index], &journal.id).await?;
            journal.moves[index].files = files;
        }
        let file = Warehouse::journal_file(&journal.stage, journal.processing_date);
        self.step("write the journal")?;
        self.write_json(&file, &journal).await?;
        self.roll_forward(&journal).await?;
        self.step("remove the journal")?;
        self.remove_file(&file).await
    }

    /// Rolls forward every commit of `date` that a killed or failed process left journaled;
    /// returns the stages whose commits it finished.
    pub async fn recover(&self, date: ProcessingDate) -> Result<Vec<String>> {
        let mut finished = Vec::new();
        for path in self.list_files(&Warehouse::run_file(date, "")).await? {
            let Some(name) = path.filename().filter(|n| n.ends_with(".commit.json")) else {
                continue;
            };
            let file = Warehouse::run_file(date, name);
            let Some(journal) = self.read_json::<CommitJournal>(&file).await? else {
                continue;
            };
            tracing::warn!(
                stage = %journal.stage,
                %date,
                moves = journal.moves.len(),
                "rolling forward a commit an earlier run left unfinished"
            );
            self.roll_forward(&journal).await?;
            self.remove_file(&file).await?;
            finished.push(journal.stage);
        }
        Ok(finished)
    }

    /// Writes the marker into a staged directory and makes the staged data durable; returns
    /// the directory's files on stores that move file by file.
    async fn seal(&self, m: &Move, id: &str) -> Result<Vec<String>> {
        let marker = format!("{}/{MARKER_PREFIX}{id}", m.from);
        if m.directory {
            self.step("write a marker")?;
            self.put_empty(&marker).await?;
        }
        match &self.backend {
            Backend::Local => {
                let path = self.local_dir(&m.from).expect("a local warehouse has local paths");
                if m.directory {
                    local::sync_tree(&path)?;
                } else {
                    local::sync_path(&path)?;
                }
                local::sync_parent(&path)?;
                Ok(Vec::new())
            }
            Backend::Hdfs(_) => Ok(Vec::new()),
            Backend::Objects if m.directory => self.relative_files(&m.from).await,
            Backend::Objects => Ok(Vec::new()),
        }
    }

    async fn roll_forward(&self, journal: &CommitJournal) -> Result<()> {
        for (index, m) in journal.moves.iter().enumerate() {
            if m.directory {
                self.move_directory(m, &journal.id, index).await?;
            } else {
                self.move_file(m).await?;
            }
        }
        Ok(())
    }

    async fn move_directory(&self, m: &Move, id: &str, index: usize) -> Result<()> {
        let marker = format!("{MARKER_PREFIX}{id}");
        if self.exists(&format!("{}/{marker}", m.to)).await? {
            // Done before; what is left at `from` is the replaced day.
            self.step("remove the replaced directory")?;
            return self.remove_all(&m.from).await;
        }
        if !self.exists(&format!("{}/{marker}", m.from)).await? {
            return Err(Error::Stage {
                stage: "commit".into(),
                message: format!(
                    "the journaled commit {id} expects staged data at {} and it is gone, and {} does not hold it; rerun the stage for this date with --force",
                    self.url(&m.from),
                    self.url(&m.to)
                ),
            });
        }
        match &self.backend {
            Backend::Local => self.move_local_directory(m),
            Backend::Hdfs(_) => self.move_hdfs_directory(m, id, index).await,
            Backend::Objects => self.move_objects(m, &marker).await,
        }
    }

    fn move_local_directory(&self, m: &Move) -> Result<()> {
        let from = self.local_dir(&m.from).expect("a local warehouse has local paths");
        let to = self.local_dir(&m.to).expect("a local warehouse has local paths");
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        if to.exists() {
            self.step("exchange directories")?;
            local::exchange(&from, &to)?;
            local::sync_parent(&to)?;
            local::sync_parent(&from)?;
            self.step("remove the replaced directory")?;
            local::remove_tree(&from)
        } else {
            self.step("rename a directory")?;
            std::fs::rename(&from, &to).map_err(Error::io(&to))?;
            local::sync_parent(&to)?;
            local::sync_parent(&from)
        }
    }

    async fn move_hdfs_directory(&self, m: &Move, id: &str, index: usize) -> Result<()> {
        let replaced = format!("{REPLACED}{id}/{index}");
        if self.exists(&m.to).await? {
            self.step("rename the old directory aside")?;
            self.hdfs_rename(&m.to, &replaced).await?;
        }
        self.step("rename a directory")?;
        self.hdfs_rename(&m.from, &m.to).await?;
        self.step("remove the replaced directory")?;
        self.remove_all(&replaced).await
    }

    /// File by file, for stores without directory renames: the new files over the old, the
    /// old files that are not replaced deleted, the marker last.
    async fn move_objects(&self, m: &Move, marker: &str) -> Result<()> {
        for file in &m.files {
            let from = format!("{}/{file}", m.from);
            if file != marker && self.exists(&from).await? {
                self.step("rename a file")?;
                self.rename(&from, &format!("{}/{file}", m.to)).await?;
            }
        }
        for file in self.relative_files(&m.to).await? {
            if !m.files.contains(&file) {
                self.step("delete a replaced file")?;
                self.remove_file(&format!("{}/{file}", m.to)).await?;
            }
        }
        self.step("rename the marker")?;
        self.rename(&format!("{}/{marker}", m.from), &format!("{}/{marker}", m.to))
            .await
    }

    async fn move_file(&self, m: &Move) -> Result<()> {
        if !self.exists(&m.from).await? {
            return Ok(()); // moved before
        }
        self.step("rename a file")?;
        match &self.backend {
            Backend::Local => {
                let from = self.local_dir(&m.from).expect("a local warehouse has local paths");
                let to = self.local_dir(&m.to).expect("a local warehouse has local paths");
                std::fs::rename(&from, &to).map_err(Error::io(&to))?;
                local::sync_parent(&to)
            }
            Backend::Hdfs(client) => client
                .rename(&self.hdfs_path(&m.from), &self.hdfs_path(&m.to), true)
                .await
                .map_err(self.hdfs_error(&m.to)),
            Backend::Objects => self.rename(&m.from, &m.to).await,
        }
    }

    fn step(&self, what: &str) -> Result<()> {
        self.failures.as_ref().map_or(Ok(()), |plan| plan.step(what))
    }

    /// The files below `dir`, relative to it.
    async fn relative_files(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.path(dir);
        Ok(self
            .list_files(dir)
            .await?
            .iter()
            .filter_map(|p| p.prefix_match(&prefix))
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))
            .collect())
    }

    async fn put_empty(&self, relative: &str) -> Result<()> {
        self.store
            .put(&self.path(relative), object_store::PutPayload::new())
            .await
            .map_err(Error::storage(self.url(relative).to_string()))?;
        Ok(())
    }

    /// Whether a file or directory exists at `relative`.
    pub async fn exists(&self, relative: &str) -> Result<bool> {
        match &self.backend {
            Backend::Local => Ok(self.local_dir(relative).is_some_and(|p| p.exists())),
            Backend::Hdfs(client) => match client.get_file_info(&self.hdfs_path(relative)).await {
                Ok(_) => Ok(true),
                Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(false),
                Err(e) => Err(self.hdfs_error(relative)(e)),
            },
            Backend::Objects => {
                let path: StorePath = self.path(relative);
                match self.store.head(&path).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(!self.list_files(relative).await?.is_empty()),
                    Err(e) => Err(Error::storage(self.url(relative).to_string())(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::execution::object_store::ObjectStoreRegistry;
    use object_store::memory::InMemory;
    use url::Url;

    use super::*;
    use crate::config::WarehouseConfig;
    use crate::warehouse::StoreRegistry;

    type Day = BTreeMap<String, String>;

    fn date() -> ProcessingDate {
        ProcessingDate::parse("2024-06-01").unwrap()
    }

    /// A warehouse on local disk (`None`) or on an in-memory object store.
    fn open(root: &str, memory: Option<&Arc<InMemory>>) -> Warehouse {
        let registry = StoreRegistry::new();
        if let Some(store) = memory {
            registry.register_store(&Url::parse("memory://test/").unwrap(), Arc::clone(store) as _);
        }
        let config = WarehouseConfig::at(root);
        Warehouse::open(&config, &registry).unwrap()
    }

    async fn put(wh: &Warehouse, relative: &str, content: &str) {
        wh.store()
            .put(&wh.path(relative), content.to_string().into_bytes().into())
            .await
            .unwrap();
    }

    async fn stage(wh: &Warehouse, tables: &[(&str, &[(&str, &str)])], report: &str) -> Commit {
        let mut commit = Commit::new("clean", date());
        for (table, files) in tables {
            let staged = format!("_staging/clean/{}/cleaned/{table}", date());
            for (name, content) in *files {
                put(wh, &format!("{staged}/{name}"), content).await;
            }
            commit.directory(
                &staged,
                &Warehouse::partition(super::super::Zone::Cleaned, table, date()),
            );
        }
        put(wh, "_staging/clean/report.json", report).await;
        commit.file("_staging/clean/report.json", "_runs/2024-06-01/clean.json");
        commit
    }

    async fn day(wh: &Warehouse, table: &str) -> Day {
        let dir = Warehouse::partition(super::super::Zone::Cleaned, table, date());
        let mut files = Day::new();
        for name in wh.relative_files(&dir).await.unwrap() {
            if name.starts_with(MARKER_PREFIX) {
                continue;
            }
            let bytes = wh.store().get(&wh.path(&format!("{dir}{name}"))).await.unwrap();
            files.insert(name, String::from_utf8(bytes.bytes().await.unwrap().to_vec()).unwrap());
        }
        files
    }

    fn old() -> [(&'static str, &'static [(&'static str, &'static str)]); 2] {
        [
            ("a", &[("part-0.parquet", "old a0"), ("part-1.parquet", "old a1")]),
            ("b", &[("part-0.parquet", "old b0")]),
        ]
    }

    fn new() -> [(&'static str, &'static [(&'static str, &'static str)]); 2] {
        [
            ("a", &[("part-0.parquet", "new a0")]),
            ("b", &[("part-0.parquet", "new b0"), ("part-2.parquet", "new b2")]),
        ]
    }

    fn as_day(files: &[(&str, &str)]) -> Day {
        files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect()
    }

    /// A warehouse holding the old day, committed, and the new day staged.
    async fn old_day_and_new_staged(root: &str, memory: Option<&Arc<InMemory>>) -> (Warehouse, Commit) {
        let wh = open(root, memory);
        let commit = stage(&wh, &old(), "old report").await;
        wh.publish(commit).await.unwrap();
        let commit = stage(&wh, &new(), "new report").await;
        (wh, commit)
    }

    async fn report(wh: &Warehouse) -> String {
        let bytes = wh.store().get(&wh.path("_runs/2024-06-01/clean.json")).await.unwrap();
        String::from_utf8(bytes.bytes().await.unwrap().to_vec()).unwrap()
    }

    /// Fails every step of a commit in turn (the marker writes, the journal, each exchange,
    /// rename and delete, the journal's removal): right after the failure each table is
    /// wholly old or wholly new where moves are atomic (local disk; an object store moving file
    /// by file shows a mix until recovery), and after recovery the whole day is old (the
    /// journal was not written: the stage reruns) or wholly new — never a mix or a partial
    /// table.
    async fn every_failed_step_recovers_whole(backend: &str) {
        let dir = tempfile::tempdir().unwrap();
        let memory = (backend == "memory").then(|| Arc::new(InMemory::new()));
        let root = |k: u64| match &memory {
            Some(_) => format!("memory://test/wh{k}"),
            None => dir.path().join(format!("wh{k}")).to_str().unwrap().to_string(),
        };
        let counting = FailPlan::new(u64::MAX, false);
        let (wh, commit) = old_day_and_new_staged(&root(0), memory.as_ref()).await;
        wh.with_failures(Arc::clone(&counting)).publish(commit).await.unwrap();
        let steps = counting.steps();
        assert!(steps >= 6, "{backend}: {steps} steps");
        let journal_step = 3; // two markers, then the journal
        for k in 1..=steps {
            let (wh, commit) = old_day_and_new_staged(&root(k), memory.as_ref()).await;
            let failing = wh.clone().with_failures(FailPlan::new(k, false));
            let err = failing.publish(commit).await.unwrap_err().to_string();
            assert!(err.contains(&format!("step {k}")), "{backend} step {k}: {err}");
            let atomic_moves = backend == "local";
            for (table, files) in old().iter().zip(new()).map(|((t, o), (_, n))| (t, (o, n))) {
                if !atomic_moves {
                    break;
                }
                let seen = day(&wh, table).await;
                assert!(
                    seen == as_day(files.0) || seen == as_day(files.1),
                    "{backend} step {k}: {table} is neither the old nor the new day: {seen:?}"
                );
            }
            let recovered = wh.recover(date()).await.unwrap();
            let expected = if k <= journal_step { old() } else { new() };
            assert_eq!(recovered.is_empty(), k <= journal_step, "{backend} step {k}");
            for (table, files) in expected {
                assert_eq!(day(&wh, table).await, as_day(files), "{backend} step {k}: {table}");
            }
            let expected_report = if k <= journal_step { "old report" } else { "new report" };
            assert_eq!(report(&wh).await, expected_report, "{backend} step {k}");
            assert!(!wh.exists(&Warehouse::journal_file("clean", date())).await.unwrap());
            assert!(wh.list_files(REPLACED).await.unwrap().is_empty(), "{backend} step {k}");
        }
    }

    #[tokio::test]
    async fn every_failed_step_on_local_disk_recovers_whole() {
        every_failed_step_recovers_whole("local").await;
    }

    #[tokio::test]
    async fn every_failed_step_on_an_object_store_recovers_whole() {
        every_failed_step_recovers_whole("memory").await;
    }

    #[tokio::test]
    async fn a_journal_whose_staged_data_is_gone_is_an_error_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (wh, commit) = old_day_and_new_staged(dir.path().to_str().unwrap(), None).await;
        let err = wh.clone().with_failures(FailPlan::new(4, false)).publish(commit).await;
        assert!(err.is_err());
        wh.remove_all("_staging/clean/").await.unwrap();
        let err = wh.recover(date()).await.unwrap_err().to_string();
        assert!(err.contains("--force") && err.contains("_staging/clean"), "{err}");
    }

    #[test]
    fn fail_plans_come_from_the_environment_variable_format() {
        assert!(FailPlan::from_env().is_none());
        let plan = FailPlan::new(2, false);
        assert!(plan.step("one").is_ok());
        assert!(plan.step("two").is_err());
        assert!(plan.step("three").is_ok());
    }
}
