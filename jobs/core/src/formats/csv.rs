//! Source CSV files (docs/SPEC.md §2): the seven files a source directory must hold, and their record
//! lines — header checked, blank lines skipped, every byte counted for progress. The fields of
//! a line are split by [`super::fields::split_csv_line`]; this module only finds the lines.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::fields;
use crate::error::{Error, Result};
use crate::schema::{Table, TABLES};

/// Checks that every source file is present; the error lists the missing ones.
pub fn source_files(input: &Path) -> Result<Vec<(&'static Table, PathBuf)>> {
    let files: Vec<_> = TABLES.iter().map(|t| (*t, input.join(t.file_name()))).collect();
    let missing: Vec<String> = files
        .iter()
        .filter(|(_, p)| !p.is_file())
        .map(|(t, _)| t.file_name())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input {
            path: input.display().to_string(),
            message: format!(
                "missing {}; point --input at a directory with all seven files (create one with `ebroker generate --out DIR`)",
                missing.join(", ")
            ),
        });
    }
    Ok(files)
}

/// The record lines of one source CSV file: the header is checked, blank lines skipped,
/// and every byte read is reported to the progress bar.
pub struct CsvRecords<'a> {
    table: &'static Table,
    path: &'a Path,
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
    line_number: i64,
    bar: &'a ProgressBar,
}

impl<'a> CsvRecords<'a> {
    pub fn open(table: &'static Table, path: &'a Path, bar: &'a ProgressBar) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        Ok(CsvRecords {
            table,
            path,
            reader,
            line: Vec::with_capacity(256),
            line_number: 0,
            bar,
        })
    }

    /// The next record line (without its terminator) and its line number.
    pub fn next_record(&mut self) -> Result<Option<(i64, &[u8])>> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(Error::io(self.path))?;
            if n == 0 {
                return Ok(None);
            }
            self.bar.inc(n as u64);
            self.line_number += 1;
            let record = strip_terminator(&self.line);
            if self.line_number == 1 {
                check_header(self.table, self.path, record)?;
                continue;
            }
            if !record.is_empty() {
                return Ok(Some((self.line_number, strip_terminator(&self.line))));
            }
        }
    }
}

fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn check_header(table: &Table, path: &Path, line: &[u8]) -> Result<()> {
    let found = String::from_utf8_lossy(line);
    let found = found.trim_start_matches('\u{feff}');
    let normalised: Vec<&str> = found.split(',').map(fields::trim).collect();
    if normalised.join(",") != table.header() {
        return Err(Error::Input {
            path: path.display().to_string(),
            message: format!(
                "header is {found:?}; the {} table needs exactly {:?}",
                table.name,
                table.header()
            ),
        });
    }
    Ok(())
}
