//! One writer per date (docs/DESIGN.md, "One writer per date"): a lease in
//! `_runs/D/lease.json`, taken with a create-exclusive write (a hard link on local disk, a
//! non-replacing rename on HDFS, a conditional put on S3), holding its owner (host, pid,
//! command), start time and a heartbeat that the holder renews. A second writer of the date
//! fails at once naming the holder; a lease whose holder died on this host, or that was not
//! renewed for `run.lease_seconds`, is taken over, and said so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::{PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use super::Warehouse;
use crate::date::ProcessingDate;
use crate::error::{Error, Result};

/// `_runs/D/lease.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    pub host: String,
    pub pid: u32,
    /// What the holder is doing, e.g. `ebroker clean --date 2024-06-01`.
    pub command: String,
    /// This holding's id (a process may take the same date again later).
    pub token: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub expires_after_seconds: u64,
}

impl LeaseRecord {
    fn new(command: &str, seconds: u64) -> LeaseRecord {
        let now = Utc::now();
        LeaseRecord {
            host: host_name(),
            pid: std::process::id(),
            command: command.to_string(),
            token: format!(
                "{}-{}",
                now.timestamp_nanos_opt().unwrap_or_default(),
                std::process::id()
            ),
            started_at: now,
            heartbeat_at: now,
            expires_after_seconds: seconds,
        }
    }

    /// Why this lease may be taken over, if it may.
    fn stale(&self) -> Option<String> {
        if self.host == host_name() && !process_alive(self.pid) {
            return Some(format!("its process {} on {} is gone", self.pid, self.host));
        }
        let silent = (Utc::now() - self.heartbeat_at).num_seconds();
        (silent > self.expires_after_seconds as i64).then(|| {
            format!(
                "it was not renewed for {silent} s (run.lease_seconds = {})",
                self.expires_after_seconds
            )
        })
    }

    fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, since {}, last heartbeat {} s ago)",
            self.command,
            self.pid,
            self.host,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            (Utc::now() - self.heartbeat_at).num_seconds()
        )
    }
}

/// A held lease: renewed in the background until [`Lease::release`] or drop.
#[derive(Debug)]
pub struct Lease {
    warehouse: Warehouse,
    date: ProcessingDate,
    file: String,
    token: String,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Warehouse {
    /// `_runs/D/lease.json`.
    pub fn lease_file(date: ProcessingDate) -> String {
        Warehouse::run_file(date, "lease.json")
    }

    /// Takes the lease of `date` for `command`, or fails naming its holder.
    pub async fn acquire_lease(&self, date: ProcessingDate, command: &str, seconds: u64) -> Result<Lease> {
        let file = Warehouse::lease_file(date);
        let record = LeaseRecord::new(command, seconds);
        for _ in 0..3 {
            if self.create_exclusive(&file, &record).await? {
                return Ok(Lease::start(self.clone(), date, file, record));
            }
            let Some(holder) = self.read_json::<LeaseRecord>(&file).await? else {
                continue; // released meanwhile
            };
            let Some(reason) = holder.stale() else {
                return Err(Error::Locked {
                    date: date.to_string(),
                    message: format!(
                        "{} holds its lease ({}); wait for it to finish (the lease lapses {} s after its last heartbeat if that process hangs)",
                        holder.describe(),
                        self.url(&file),
                        holder.expires_after_seconds
                    ),
                });
            };
            tracing::warn!(%date, holder = %holder.describe(), %reason, "taking over the date's lease");
            eprintln!(
                "ebroker: taking over the lease of {date} from {}: {reason}",
                holder.describe()
            );
            self.remove_file(&file).await?;
        }
        Err(Error::Locked {
            date: date.to_string(),
            message: "other processes keep taking its lease; run one writer per date".into(),
        })
    }

    /// Writes `record` at `relative` unless a file is there; whether it was written.
    async fn create_exclusive(&self, relative: &str, record: &LeaseRecord) -> Result<bool> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
            path: relative.into(),
            source,
        })?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store().put_opts(&self.path(relative), bytes.into(), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            // Stores that report a lost race as a generic error still show the file.
            Err(_) if self.exists(relative).await? => Ok(false),
            Err(e) => Err(Error::storage(self.url(relative).to_string())(e)),
        }
    }
}

impl Lease {
    fn start(warehouse: Warehouse, date: ProcessingDate, file: String, record: LeaseRecord) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let token = record.token.clone();
        let heartbeat = tokio::spawn(renew(warehouse.clone(), file.clone(), record, Arc::clone(&lost)));
        Lease {
            warehouse,
            date,
            file,
            token,
            lost,
            heartbeat,
        }
    }

    /// Fails when another process took the lease over (this one hung past its expiry).
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Locked {
                date: self.date.to_string(),
                message: "this process lost its lease to another (it was not renewed in time); its work was not committed, rerun it".into(),
            });
        }
        Ok(())
    }

    /// Stops renewing and removes the lease, if it is still this process's.
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        let current = self.warehouse.read_json::<LeaseRecord>(&self.file).await?;
        if current.is_some_and(|c| c.token == self.token) {
            self.warehouse.remove_file(&self.file).await?;
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Renews the lease every third of its expiry while it is still this process's.
async fn renew(warehouse: Warehouse, file: String, mut record: LeaseRecord, lost: Arc<AtomicBool>) {
    let every = Duration::from_secs((record.expires_after_seconds / 3).max(1));
    loop {
        tokio::time::sleep(every).await;
        match warehouse.read_json::<LeaseRecord>(&file).await {
            Ok(Some(current)) if current.token == record.token => {}
            Ok(_) => {
                tracing::error!(lease = %file, "the date's lease was taken over by another process");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %file, error = %e, "could not read the lease to renew it; retrying");
                continue;
            }
        }
        record.heartbeat_at = Utc::now();
        if let Err(e) = warehouse.write_json(&file, &record).await {
            tracing::warn!(lease = %file, error = %e, "could not renew the lease; retrying");
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

#[allow(unsafe_code)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WarehouseConfig;
    use crate::warehouse::StoreRegistry;

    fn open(dir: &std::path::Path) -> Warehouse {
        let config = WarehouseConfig::at(dir.to_str().unwrap());
        Warehouse::open(&config, &StoreRegistry::new()).unwrap()
    }

    fn date() -> ProcessingDate {
        ProcessingDate::parse("2024-06-01").unwrap()
    }

    #[tokio::test]
    async fn a_second_writer_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let wh = open(dir.path());
        let lease = wh.acquire_lease(date(), "ebroker clean", 60).await.unwrap();
        let err = wh.acquire_lease(date(), "ebroker run", 60).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 1);
        assert!(
            text.contains("ebroker clean") && text.contains(&std::process::id().to_string()),
            "{text}"
        );
        let other_date = ProcessingDate::parse("2024-06-02").unwrap();
        wh.acquire_lease(other_date, "ebroker run", 60)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        lease.check().unwrap();
        lease.release().await.unwrap();
        wh.acquire_lease(date(), "ebroker run", 60)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dead_holder_or_an_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let wh = open(dir.path());
        let file = Warehouse::lease_file(date());
        let mut dead = LeaseRecord::new("ebroker ingest", 60);
        dead.pid = i32::MAX as u32; // no such process
        wh.write_json(&file, &dead).await.unwrap();
        wh.acquire_lease(date(), "ebroker run", 60)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();

        let mut silent = LeaseRecord::new("ebroker ingest", 5);
        silent.host = "another-host".into();
        silent.heartbeat_at = Utc::now() - chrono::Duration::seconds(30);
        wh.write_json(&file, &silent).await.unwrap();
        let lease = wh.acquire_lease(date(), "ebroker run", 60).await.unwrap();
        let holder: LeaseRecord = wh.read_json(&file).await.unwrap().unwrap();
        assert_eq!(holder.command, "ebroker run");
        lease.release().await.unwrap();

        silent.heartbeat_at = Utc::now();
        wh.write_json(&file, &silent).await.unwrap();
        let err = wh
            .acquire_lease(date(), "ebroker run", 60)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("another-host"), "{err}");
    }

    #[tokio::test]
    async fn the_holder_renews_and_notices_a_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let wh = open(dir.path());
        let file = Warehouse::lease_file(date());
        let lease = wh.acquire_lease(date(), "ebroker run", 3).await.unwrap();
        let first: LeaseRecord = wh.read_json(&file).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let renewed: LeaseRecord = wh.read_json(&file).await.unwrap().unwrap();
        assert!(renewed.heartbeat_at > first.heartbeat_at, "renewed every second");
        wh.write_json(&file, &LeaseRecord::new("intruder", 3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(lease.check().is_err());
        lease.release().await.unwrap();
        let left: LeaseRecord = wh.read_json(&file).await.unwrap().unwrap();
        assert_eq!(
            left.command, "intruder",
            "a lost lease is not removed by its old holder"
        );
    }
}
