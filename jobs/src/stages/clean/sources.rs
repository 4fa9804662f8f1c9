//! Where clean reads the source CSV files from, as URLs every parse task can open (docs/DESIGN.md,
//! "Inputs on a cluster"). An `--input` URL (`file://` on a file system every node mounts,
//! `hdfs://`, `s3://`) is read in place. A plain local directory is read in place by an
//! in-process run; a cluster run cannot know its executors see this machine's disk, so it
//! uploads the files once to the warehouse's raw zone, `raw/<table>/processing_date=D/<table>.csv`
//! (streamed as bytes, not parsed, each file published whole by the store's atomic put), and the
//! executors parse them there.

use std::path::Path;

use datafusion::execution::object_store::ObjectStoreRegistry;
use ebroker_plans::splits::file_size;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::formats::csv::source_files;
use crate::schema::{Table, TABLES};
use crate::warehouse::{Warehouse, Zone};
use crate::ProcessingDate;

/// One source file to parse: its table, a URL every task can open, and its size in bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub table: &'static Table,
    pub url: Url,
    pub size: u64,
}

/// The seven source files of `input` for `date`, uploading a local directory first on a cluster.
pub async fn locate(
    engine: &Engine,
    warehouse: &Warehouse,
    input: &Path,
    date: ProcessingDate,
) -> Result<Vec<SourceFile>> {
    if let Some(dir) = input_url(input)? {
        return in_place(engine, &dir).await;
    }
    let files = source_files(input)?;
    let mut sources = Vec::with_capacity(files.len());
    for (table, path) in files {
        let source = match engine.scheduler_url() {
            Some(_) => upload(warehouse, table, &path, date).await?,
            None => local(table, &path)?,
        };
        sources.push(source);
    }
    Ok(sources)
}

/// `input` as a directory URL, when it is written as one (`scheme://...`).
fn input_url(input: &Path) -> Result<Option<Url>> {
    let Some(text) = input.to_str().filter(|t| t.contains("://")) else {
        return Ok(None);
    };
    let with_slash = if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    };
    Url::parse(&with_slash).map(Some).map_err(|e| {
        Error::Usage(format!(
            "--input {text} is not a valid URL ({e}); give a directory (a local path, or file:///dir, hdfs://namenode:port/dir, s3://bucket/dir)"
        ))
    })
}

/// The files of the directory URL `dir`, read where they are; the error lists missing ones.
async fn in_place(engine: &Engine, dir: &Url) -> Result<Vec<SourceFile>> {
    let store = engine
        .registry()
        .get_store(dir)
        .map_err(Error::engine(format!("opening the store of --input {dir}")))?;
    let (mut sources, mut missing) = (Vec::new(), Vec::new());
    for table in TABLES {
        let url = dir
            .join(&table.file_name())
            .map_err(|e| Error::Usage(format!("--input {dir}: {e}")))?;
        match file_size(store.as_ref(), &url).await? {
            Some(size) => sources.push(SourceFile { table, url, size }),
            None => missing.push(table.file_name()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::Input {
            path: dir.to_string(),
            message: format!(
                "missing {}; point --input at a directory with all seven files",
                missing.join(", ")
            ),
        });
    }
    Ok(sources)
}

/// A local file read in place by an in-process run.
fn local(table: &'static Table, path: &Path) -> Result<SourceFile> {
    let absolute = std::fs::canonicalize(path).map_err(Error::io(path))?;
    let size = std::fs::metadata(&absolute).map_err(Error::io(&absolute))?.len();
    let url = Url::from_file_path(&absolute).map_err(|()| Error::Input {
        path: absolute.display().to_string(),
        message: "not an absolute path".into(),
    })?;
    Ok(SourceFile { table, url, size })
}

/// Copies the local file `path` to the raw zone of `date`, streamed; published whole.
async fn upload(warehouse: &Warehouse, table: &'static Table, path: &Path, date: ProcessingDate) -> Result<SourceFile> {
    let relative = format!(
        "{}{}",
        Warehouse::partition(Zone::Raw, table.name, date),
        table.file_name()
    );
    let url = warehouse.url(&relative);
    let mut file = tokio::fs::File::open(path).await.map_err(Error::io(path))?;
    let mut writer = BufWriter::new(std::sync::Arc::clone(warehouse.store()), warehouse.path(&relative));
    let copied = tokio::io::copy(&mut file, &mut writer).await;
    let size = match copied {
        Ok(size) => size,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(Error::io(path)(e));
        }
    };
    writer.shutdown().await.map_err(Error::io(url.as_str()))?;
    tracing::info!(table = table.name, from = %path.display(), to = %url, bytes = size, "uploaded");
    Ok(SourceFile { table, url, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_written_as_urls_are_directories_and_plain_paths_are_local() {
        let url = input_url(Path::new("hdfs://nn:9000/in")).unwrap().unwrap();
        assert_eq!(url.as_str(), "hdfs://nn:9000/in/");
        assert!(input_url(Path::new("/data/in")).unwrap().is_none());
        assert!(input_url(Path::new("relative/dir")).unwrap().is_none());
        let err = input_url(Path::new("hdfs://nn:bad/in")).unwrap_err().to_string();
        assert!(err.contains("hdfs://nn:bad/in") && err.contains("file:///dir"), "{err}");
    }
}
