//! Source CSV files cut into byte-range splits, so one large file is parsed by many tasks at
//! once (Hadoop's TextInputFormat rule, [`Split`]). A split's records are numbered by the line
//! breaks before it, which [`Work::CountLines`](crate::work::Work) tasks count first — one
//! task per split but the last of each file, each reading only its own bytes — so the line
//! number, SPEC's arrival order and quarantine position, is exact on any number of executors.
//! Files are read through the object store of their URL (`hdfs://`, `s3://`), streamed in
//! chunks of at least [`READ_BUFFER_BYTES`], which [`StoreReader`] hands to the blocking
//! parser; a `file://` URL (a path every node sees) is read with the file system directly.

use std::io::{BufRead, Read, Seek, SeekFrom};

use datafusion::execution::TaskContext;
use ebroker_core::error::{Error, Result};
use ebroker_core::formats::csv::Split;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::task_files::task_store;

/// One count task: the line breaks in bytes `start..end` of the file `csv` (a URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTask {
    pub csv: String,
    pub start: u64,
    pub end: u64,
}

/// The answer of a [`CountTask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountResult {
    pub csv: String,
    pub start: u64,
    pub newlines: u64,
}

/// Counts the line breaks of the task's byte range.
pub async fn count_newlines(task: &CountTask, ctx: &TaskContext) -> Result<CountResult> {
    let length = task.end.saturating_sub(task.start);
    let reader = open_from(ctx, &task.csv, task.start).await?;
    let csv = task.csv.clone();
    let newlines = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut reader = reader.take(length);
        let mut newlines = 0u64;
        loop {
            let buffer = reader.fill_buf().map_err(Error::io(csv.as_str()))?;
            if buffer.is_empty() {
                return Ok(newlines);
            }
            newlines += memchr::memchr_iter(b'\n', buffer).count() as u64;
            let read = buffer.len();
            reader.consume(read);
        }
    })
    .await
    .map_err(|e| Error::Stage {
        stage: "clean".into(),
        message: format!("counting the lines of {} stopped: {e}", task.csv),
    })??;
    Ok(CountResult {
        csv: task.csv.clone(),
        start: task.start,
        newlines,
    })
}

/// The byte ranges of a file of `size` bytes cut every `split_bytes` (one split for an empty
/// file); `newlines_before` is left 0, for [`number_splits`] to fill in.
pub fn cut(size: u64, split_bytes: u64) -> Vec<Split> {
    let step = split_bytes.max(1);
    let starts: Vec<u64> = if size == 0 {
        vec![0]
    } else {
        (0..size).step_by(usize::try_from(step).unwrap_or(usize::MAX)).collect()
    };
    starts
        .iter()
        .map(|&start| Split {
            start,
            end: if start + step >= size { u64::MAX } else { start + step },
            newlines_before: 0,
        })
        .collect()
}

/// The count tasks `splits` of the file `csv` need: every split but the last.
pub fn count_tasks(csv: &str, splits: &[Split]) -> Vec<CountTask> {
    let counted = splits.len().saturating_sub(1);
    splits[..counted]
        .iter()
        .map(|split| CountTask {
            csv: csv.to_string(),
            start: split.start,
            end: split.end,
        })
        .collect()
}

/// Sets each split's `newlines_before` from the counts of the splits before it.
pub fn number_splits(csv: &str, splits: &mut [Split], counts: &[CountResult]) -> Result<()> {
    let mut before = 0u64;
    for split in splits.iter_mut() {
        split.newlines_before = before;
        if split.end == u64::MAX {
            break;
        }
        let count = counts
            .iter()
            .find(|c| c.csv == csv && c.start == split.start)
            .ok_or_else(|| Error::Stage {
                stage: "clean".into(),
                message: format!("no line count came back for bytes {} of {csv}", split.start),
            })?;
        before += count.newlines;
    }
    Ok(())
}

/// The local path of a `file://` URL; `None` for any other URL.
pub fn local_path(url: &str) -> Option<std::path::PathBuf> {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
}

/// Bytes the store's stream hands to a blocking reader at a time, at least. object_store's
/// local stream reads 8 KiB per blocking task; handed on one by one, the 3.6 GB of a 5M-client
/// day took half a million thread hand-offs and a fifth of the parse's CPU in the kernel.
pub const READ_BUFFER_BYTES: usize = 1 << 20;

/// A reader of the file `url` from byte `from`, for a parser or counter on a blocking thread:
/// a `file://` URL straight from the file system, any other through its object store.
pub async fn open_from(ctx: &TaskContext, url: &str, from: u64) -> Result<Box<dyn BufRead + Send>> {
    if let Some(path) = local_path(url) {
        let mut file = std::fs::File::open(&path).map_err(Error::io(&path))?;
        file.seek(SeekFrom::Start(from)).map_err(Error::io(&path))?;
        return Ok(Box::new(std::io::BufReader::with_capacity(READ_BUFFER_BYTES, file)));
    }
    let (store, path) = task_store(ctx, url)?;
    let options = GetOptions {
        range: (from > 0).then_some(GetRange::Offset(from)),
        ..GetOptions::default()
    };
    let mut stream = store
        .get_opts(&path, options)
        .await
        .map_err(Error::storage(url))?
        .into_stream();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            };
            pending.extend_from_slice(&chunk);
            if pending.len() >= READ_BUFFER_BYTES && tx.send(Ok(std::mem::take(&mut pending))).await.is_err() {
                return;
            }
        }
        if !pending.is_empty() {
            let _ = tx.send(Ok(pending)).await;
        }
    });
    Ok(Box::new(StoreReader {
        chunks: rx,
        chunk: None,
        used: 0,
    }))
}

/// Chunks of a file as a [`BufRead`], for a parser running on a blocking thread.
pub struct StoreReader<B> {
    chunks: mpsc::Receiver<std::io::Result<B>>,
    chunk: Option<B>,
    used: usize,
}

impl<B: AsRef<[u8]>> BufRead for StoreReader<B> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunk.as_ref().is_none_or(|c| self.used >= c.as_ref().len()) {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.chunk = Some(chunk?);
                    self.used = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(self.chunk.as_ref().map_or(&[][..], |c| &c.as_ref()[self.used..]))
    }

    fn consume(&mut self, n: usize) {
        self.used += n;
    }
}

impl<B: AsRef<[u8]>> Read for StoreReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The size of the file `url` in `store`, or an error naming it and the fix.
pub async fn file_size(store: &dyn ObjectStore, url: &url::Url) -> Result<Option<u64>> {
    let path = object_store::path::Path::from_url_path(url.path())
        .map_err(|e| Error::Config(format!("bad path in {url}: {e}")))?;
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::storage(url.as_str())(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_cut_into_ranges_whose_last_runs_to_the_end() {
        let ends = |size, step| cut(size, step).iter().map(|s| (s.start, s.end)).collect::<Vec<_>>();
        assert_eq!(ends(0, 10), [(0, u64::MAX)]);
        assert_eq!(ends(10, 10), [(0, u64::MAX)]);
        assert_eq!(ends(25, 10), [(0, 10), (10, 20), (20, u64::MAX)]);
        assert_eq!(count_tasks("f", &cut(25, 10)).len(), 2, "the last split is not counted");
    }

    #[test]
    fn splits_are_numbered_by_the_line_breaks_before_them() {
        let mut splits = cut(25, 10);
        let counts = [(0, 3), (10, 4)].map(|(start, newlines)| CountResult {
            csv: "f".into(),
            start,
            newlines,
        });
        number_splits("f", &mut splits, &counts).unwrap();
        let before: Vec<u64> = splits.iter().map(|s| s.newlines_before).collect();
        assert_eq!(before, [0, 3, 7]);
        assert!(
            number_splits("f", &mut cut(25, 10), &counts[..1]).is_err(),
            "a missing count fails"
        );
    }
}
