//! The warehouse and its zones (docs/DESIGN.md, "Storage"): every location is a URL resolved
//! through `object_store` (`file://`, `hdfs://`/`viewfs://` via hdfs-native, `s3://`), one
//! registry that the CLI, the scheduler and the executors all install, the layout of zones,
//! staging and run files, and the operations the commit protocol ([`commit`]) and the
//! date's lease ([`lease`]) are built from, per kind of store.

pub mod buckets;
pub mod commit;
pub mod lease;
mod local;
pub mod parquet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::config::WarehouseConfig;
use crate::date::ProcessingDate;
use crate::error::{Error, Result};

/// A zone of the warehouse (docs/DESIGN.md, "Zones").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Raw,
    Quarantine,
    Cleaned,
    Marts,
}

impl Zone {
    /// The zone's directory below the warehouse root.
    pub fn dir(self) -> &'static str {
        match self {
            Zone::Raw => "raw",
            Zone::Quarantine => "quarantine",
            Zone::Cleaned => "cleaned",
            Zone::Marts => "marts",
        }
    }
}

/// The object-store registry of ebroker: resolves `file`, `hdfs`, `viewfs` and `s3` URLs,
/// builds each store once per scheme and authority, and caches it.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.authority())
    }

    fn build(url: &Url) -> object_store::Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => Ok(Arc::new(LocalFileSystem::new())),
            "hdfs" | "viewfs" => {
                let base = format!("{}://{}", url.scheme(), url.authority());
                let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                    .with_url(base)
                    .build()?;
                Ok(Arc::new(store))
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()?;
                Ok(Arc::new(store))
            }
            other => Err(object_store::Error::Generic {
                store: "ebroker",
                source: format!("unsupported URL scheme `{other}` in {url}; use file://, hdfs://, viewfs:// or s3://")
                    .into(),
            }),
        }
    }

    fn stores(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ObjectStore>>> {
        // A panic while holding the lock cannot leave the map half-updated: take it anyway.
        self.stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.stores().insert(Self::key(url), store)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        let mut stores = self.stores();
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store = Self::build(url)?;
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }
}

/// Turns a path or URL into an absolute URL that ends with `/` (a directory) and whose
/// path segments every object store accepts (none empty, none `.` or `..`).
fn resolve_root(root: &str) -> Result<Url> {
    let url = if root.contains("://") {
        Url::parse(root).map_err(|e| {
            Error::Config(format!(
                "warehouse.root = {root:?} is not a valid URL ({e}); write e.g. file:///data/warehouse"
            ))
        })?
    } else {
        let path = Path::new(root);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(Error::io(path))?.join(path)
        };
        std::fs::create_dir_all(&absolute).map_err(Error::io(&absolute))?;
        let canonical = absolute.canonicalize().map_err(Error::io(&absolute))?;
        Url::from_directory_path(&canonical)
            .map_err(|_| Error::Config(format!("warehouse.root = {root:?} cannot be turned into a file URL")))?
    };
    let url = with_trailing_slash(url);
    check_segments(root, &url)?;
    Ok(url)
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

fn check_segments(root: &str, url: &Url) -> Result<()> {
    let path = url.path().trim_start_matches('/').trim_end_matches('/');
    // URL parsing folds `.` and `..` away silently; a root written with them is refused instead.
    let written = root.split_once("://").map_or("", |(_, rest)| rest);
    let dots = written.split('/').any(|segment| segment == "." || segment == "..");
    if !dots && (path.is_empty() || StorePath::from_url_path(path).is_ok()) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "warehouse.root = {root:?} has an empty, `.` or `..` path segment; write the directory without `//`, `/./` or `/../`, e.g. hdfs://namenode:8020/warehouse"
    )))
}

/// What a store can do beyond `object_store`'s calls, which decides how a commit moves data.
#[derive(Debug, Clone)]
enum Backend {
    /// A local disk: fsync and atomic directory exchange.
    Local,
    /// HDFS (or viewfs): atomic directory renames through the NameNode.
    Hdfs(hdfs_native::Client),
    /// Any other object store (S3): file by file.
    Objects,
}

/// The warehouse: a root URL and the store behind it.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: Url,
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    clients_per_bucket: u64,
    failures: Option<Arc<commit::FailPlan>>,
}

impl Warehouse {
    /// Opens the warehouse `config` describes through `registry`.
    pub fn open(config: &WarehouseConfig, registry: &dyn ObjectStoreRegistry) -> Result<Warehouse> {
        let root = resolve_root(&config.root)?;
        let store = registry
            .get_store(&root)
            .map_err(|e| Error::Config(format!("no object store for {root}: {e}")))?;
        let backend = match root.scheme() {
            "file" => Backend::Local,
            "hdfs" | "viewfs" => {
                crate::kerberos::login(&config.kerberos_principal, &config.kerberos_keytab).map_err(Error::Config)?;
                Backend::Hdfs(
                    hdfs_native::ClientBuilder::new()
                        .with_url(format!("{}://{}", root.scheme(), root.authority()))
                        .build()
                        .map_err(|e| Error::Config(format!("no HDFS client for {root}: {e}")))?,
                )
            }
            _ => Backend::Objects,
        };
        Ok(Warehouse {
            root,
            store,
            backend,
            clients_per_bucket: config.clients_per_bucket,
            failures: commit::FailPlan::from_env(),
        })
    }

    /// The same warehouse, whose commits fail as `plan` says (fault tests).
    pub fn with_failures(mut self, plan: Arc<commit::FailPlan>) -> Warehouse {
        self.failures = Some(plan);
        self
    }

    /// Clients per bucket of the cleaned tables (see [`buckets`]).
    pub fn clients_per_bucket(&self) -> u64 {
        self.clients_per_bucket
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL of `relative` (a `/`-separated path below the root, built by this module's
    /// layout functions from validated names and dates).
    pub fn url(&self, relative: &str) -> Url {
        self.root
            .join(relative)
            .expect("a relative path below a valid base URL joins")
    }

    /// The object-store path of `relative`.
    pub fn path(&self, relative: &str) -> StorePath {
        let url = self.url(relative);
        StorePath::from_url_path(url.path()).expect("the root's segments were checked when it was opened")
    }

    /// The local directory of `relative`, when the warehouse is on the local filesystem.
    pub fn local_dir(&self, relative: &str) -> Option<PathBuf> {
        (self.root.scheme() == "file")
            .then(|| self.url(relative).to_file_path().ok())
            .flatten()
    }

    /// `zone/table/processing_date=D/`: where readers look for one day of a table.
    pub fn partition(zone: Zone, table: &str, date: ProcessingDate) -> String {
        format!("{}/{table}/processing_date={date}/", zone.dir())
    }

    /// `_staging/<stage>/<date>/`: everything a stage has staged for a day.
    pub fn staging_root(stage: &str, date: ProcessingDate) -> String {
        format!("_staging/{stage}/{date}/")
    }

    /// `_staging/<stage>/<date>/<part>/<table>/`: where a stage writes before it commits
    /// (`part` is a zone's directory, or a stage-private name such as `parsed`).
    pub fn staging(stage: &str, date: ProcessingDate, part: &str, table: &str) -> String {
        format!("{}{part}/{table}/", Self::staging_root(stage, date))
    }

    /// `_runs/<date>/<file>`: run state, data-quality reports, offset manifests.
    pub fn run_file(date: ProcessingDate, file: &str) -> String {
        format!("_runs/{date}/{file}")
    }

    /// Deletes everything under `relative` (used to clear a stage's leftover staging).
    pub async fn remove_all(&self, relative: &str) -> Result<()> {
        match &self.backend {
            Backend::Local => local::remove_tree(&self.local_dir(relative).expect("a local warehouse has local paths")),
            Backend::Hdfs(client) => match client.delete(&self.hdfs_path(relative), true).await {
                Ok(_) | Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(()),
                Err(e) => Err(self.hdfs_error(relative)(e)),
            },
            Backend::Objects => {
                for file in self.list_files(relative).await? {
                    self.store
                        .delete(&file)
                        .await
                        .map_err(Error::storage(file.to_string()))?;
                }
                Ok(())
            }
        }
    }

    /// Deletes the file `relative`; a missing file is not an error.
    pub async fn remove_file(&self, relative: &str) -> Result<()> {
        if let Some(path) = self.local_dir(relative) {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path)(e)),
                _ => local::sync_parent(&path),
            };
        }
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(self.url(relative).to_string())(e)),
        }
    }

    /// The absolute HDFS path of `relative`, without a trailing `/`.
    fn hdfs_path(&self, relative: &str) -> String {
        let path = self.url(relative).path().trim_end_matches('/').to_string();
        percent_decode(&path)
    }

    /// Renames a file or directory on HDFS, creating the target's parent; never replaces.
    async fn hdfs_rename(&self, from: &str, to: &str) -> Result<()> {
        let Backend::Hdfs(client) = &self.backend else {
            unreachable!("hdfs_rename is only called on an HDFS warehouse")
        };
        let target = self.hdfs_path(to);
        if let Some((parent, _)) = target.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            client.mkdirs(parent, 0o755, true).await.map_err(self.hdfs_error(to))?;
        }
        client
            .rename(&self.hdfs_path(from), &target, false)
            .await
            .map_err(self.hdfs_error(to))
    }

    /// Wraps an HDFS client error with the URL it happened on.
    fn hdfs_error(&self, relative: &str) -> impl FnOnce(hdfs_native::HdfsError) -> Error {
        let url = self.url(relative).to_string();
        move |e| {
            Error::storage(url)(object_store::Error::Generic {
                store: "HDFS",
                source: Box::new(e),
            })
        }
    }

    /// Lists the files under `relative`, sorted.
    pub async fn list_files(&self, relative: &str) -> Result<Vec<StorePath>> {
        let prefix = self.path(relative);
        let mut files: Vec<StorePath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(Error::storage(self.url(relative).to_string()))?;
        files.sort();
        Ok(files)
    }

    /// Moves the file `from` to `to` (both relative to the root).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .rename(&self.path(from), &self.path(to))
            .await
            .map_err(Error::storage(self.url(from).to_string()))
    }

    /// Writes `value` as pretty JSON at `relative`: atomically on every store, and durably
    /// (fsynced with its directory) on a local disk.
    pub async fn write_json<T: serde::Serialize>(&self, relative: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
            path: relative.into(),
            source,
        })?;
        if let Some(path) = self.local_dir(relative) {
            return local::write_durably(&path, &bytes);
        }
        self.store
            .put(&self.path(relative), bytes.into())
            .await
            .map_err(Error::storage(self.url(relative).to_string()))?;
        Ok(())
    }

    /// Reads JSON at `relative`; `None` when the file does not exist.
    pub async fn read_json<T: serde::de::DeserializeOwned>(&self, relative: &str) -> Result<Option<T>> {
        let result = match self.store.get(&self.path(relative)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::storage(self.url(relative).to_string())(e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(Error::storage(self.url(relative).to_string()))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Json {
            path: relative.into(),
            source,
        })
    }
}

/// Undoes the percent-encoding of a URL path (HDFS paths are plain strings).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(root: &str) -> Result<Warehouse> {
        let config = WarehouseConfig::at(root);
        Warehouse::open(&config, &StoreRegistry::new())
    }

    #[test]
    fn roots_with_unusable_segments_are_config_errors_naming_the_value() {
        for root in ["hdfs://nn:8020/a//b/", "hdfs://nn:8020/a/../b", "s3://bucket/./x/"] {
            let err = open(root).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{root}: {err}");
            assert!(err.to_string().contains(root), "{err}");
        }
        let wh = open("hdfs://127.0.0.1:1/warehouse").unwrap();
        assert_eq!(wh.path("raw/x/").as_ref(), "warehouse/raw/x");
    }

    #[test]
    fn layout_paths_are_built_from_validated_dates() {
        let date = ProcessingDate::parse("2024-06-01").unwrap();
        assert_eq!(
            Warehouse::staging("clean", date, "parsed", "clients"),
            "_staging/clean/2024-06-01/parsed/clients/"
        );
        assert_eq!(Warehouse::run_file(date, "state.json"), "_runs/2024-06-01/state.json");
        assert_eq!(
            Warehouse::partition(Zone::Marts, "targeted_offers", date),
            "marts/targeted_offers/processing_date=2024-06-01/"
        );
    }

    #[tokio::test]
    async fn hdfs_urls_resolve_to_a_client_that_reaches_for_the_namenode() {
        let registry = StoreRegistry::new();
        let url = Url::parse("hdfs://127.0.0.1:1/warehouse/").unwrap();
        let store = registry.get_store(&url).expect("hdfs store builds without a server");
        let err = store
            .head(&StorePath::from("warehouse/x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty());
        let again = registry.get_store(&url).unwrap();
        assert!(Arc::ptr_eq(&store, &again), "stores are cached per authority");
    }

    #[test]
    fn unknown_schemes_name_the_fix() {
        let err = StoreRegistry::new()
            .get_store(&Url::parse("ftp://x/").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp") && err.contains("hdfs://"), "{err}");
    }
}
