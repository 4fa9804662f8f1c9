//! What the commit protocol needs from a local disk that `object_store` does not give:
//! fsync of files and directories (a put is not durable until its data and the directory
//! entry that names it are on disk), an atomic exchange of two directories
//! (`renameat2(RENAME_EXCHANGE)`), and a durable replace of one small file.

use std::path::Path;

use crate::error::{Error, Result};

/// Flushes every file below `dir` and every directory in it (itself included) to disk.
pub fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(Error::io(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_path(&path)?;
        }
    }
    sync_path(dir)
}

/// Flushes one file or directory to disk.
pub fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(path))
}

/// Flushes the directory that holds `path`, so a rename or create there is durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if parent.exists() => sync_path(parent),
        _ => Ok(()),
    }
}

/// Writes `bytes` at `path` durably and atomically: a temporary file beside it, fsynced,
/// renamed over it, and the directory fsynced.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(Error::io(&temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(Error::io(path))?;
    sync_path(parent)
}

/// Swaps the directories `a` and `b` in one step: a reader sees one or the other, never
/// neither and never a mix.
#[allow(unsafe_code)]
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(|e| Error::io(a)(e.into()))?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(|e| Error::io(b)(e.into()))?;
    // SAFETY: both arguments are valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(b)(std::io::Error::last_os_error()))
    }
}

/// Removes `dir` and everything in it; a missing `dir` is not an error.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_two_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (d, content) in [(&a, "old"), (&b, "new")] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("f"), content).unwrap();
        }
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "old");
        sync_tree(dir.path()).unwrap();
    }

    #[test]
    fn durable_writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_durably(&path, b"first").unwrap();
        write_durably(&path, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
