//! The files a task reads and writes are URLs (the warehouse's, or an input's); a task opens
//! them through the object stores of the runtime it runs in — the executor's, or the local
//! engine's — so the same task runs anywhere. Every kind of work opens its files here.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use ebroker_core::error::{Error, Result};
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use url::Url;

/// The store and path of `url` in the task's runtime.
pub fn task_store(ctx: &TaskContext, url: &str) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    let parsed = Url::parse(url).map_err(|e| Error::Config(format!("bad task file URL {url}: {e}")))?;
    let store = ctx
        .runtime_env()
        .object_store_registry
        .get_store(&parsed)
        .map_err(Error::engine(format!("opening the store of {url}")))?;
    let path = StorePath::from_url_path(parsed.path()).map_err(|e| Error::Config(format!("bad path in {url}: {e}")))?;
    Ok((store, path))
}
