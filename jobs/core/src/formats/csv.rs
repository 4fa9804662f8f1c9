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
    if input.to_str().is_some_and(|text| text.contains("://")) {
        return Err(Error::Input {
            path: input.display().to_string(),
            message: "this command reads its input on this machine: give a local directory, not a URL (only clean reads URLs, on the executors)".into(),
        });
    }
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

/// A byte range of a source CSV file, cut like Hadoop's TextInputFormat: it holds the lines
/// that start at or after `start` and before `end` — so a split begins at the first line
/// boundary at or after its offset and ends after the line that crosses its end — and
/// `newlines_before`, the line breaks before `start`, numbers its lines exactly (SPEC §4: the
/// line number is a record's arrival order and its quarantine position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    pub start: u64,
    pub end: u64,
    pub newlines_before: u64,
}

impl Split {
    /// The whole file as one split.
    pub fn whole() -> Split {
        Split {
            start: 0,
            end: u64::MAX,
            newlines_before: 0,
        }
    }

    /// The byte a reader of this split starts at: one before `start`, which tells whether
    /// `start` begins a line.
    pub fn read_from(&self) -> u64 {
        self.start.saturating_sub(1)
    }
}

/// The record lines of one source CSV file, or of one [`Split`] of it: the header is checked,
/// blank lines skipped, and every byte read is reported to the progress bar. A line is kept
/// up to the record size limit (plus its terminator) and the rest of it is skipped, so a file
/// without line breaks cannot exhaust memory: the record comes out longer than the limit,
/// truncated, and the parser quarantines it as too long.
pub struct CsvRecords<'a, R = std::io::BufReader<std::fs::File>> {
    table: &'static Table,
    source: String,
    reader: R,
    line: Vec<u8>,
    line_number: i64,
    /// Offset in the file of the next byte to read.
    position: u64,
    /// Lines starting at or after this offset belong to the next split.
    end: u64,
    kept_bytes: usize,
    bar: &'a ProgressBar,
}

impl<'a> CsvRecords<'a> {
    /// Opens the whole file `path`; lines longer than `max_record_bytes` are cut just past the
    /// limit.
    pub fn open(table: &'static Table, path: &Path, max_record_bytes: usize, bar: &'a ProgressBar) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let source = path.display().to_string();
        CsvRecords::split(table, (source, reader), Split::whole(), max_record_bytes, bar)
    }
}

impl<'a, R: BufRead> CsvRecords<'a, R> {
    /// The lines of `split` of the file called `source`, read by `reader` from
    /// [`Split::read_from`] on.
    pub fn split(
        table: &'static Table,
        (source, reader): (String, R),
        split: Split,
        max_record_bytes: usize,
        bar: &'a ProgressBar,
    ) -> Result<Self> {
        let mut records = CsvRecords {
            table,
            source,
            reader,
            line: Vec::with_capacity(256),
            line_number: i64::try_from(split.newlines_before).unwrap_or(i64::MAX),
            position: split.read_from(),
            end: split.end,
            kept_bytes: max_record_bytes.saturating_add(2),
            bar,
        };
        if split.start > 0 {
            records.skip_to_line_start()?;
        }
        Ok(records)
    }

    /// Moves from the byte before the split's start to its first line: past that byte if it
    /// ends a line, else past the rest of the line that crosses the start (the previous
    /// split's last line).
    fn skip_to_line_start(&mut self) -> Result<()> {
        let buffer = self.reader.fill_buf().map_err(Error::io(&self.source))?;
        match buffer.first() {
            None => Ok(()),
            Some(b'\n') => {
                self.reader.consume(1);
                self.bar.inc(1);
                self.position += 1;
                Ok(())
            }
            Some(_) => {
                self.read_line()?;
                self.line_number += 1;
                Ok(())
            }
        }
    }

    /// The next record line (without its terminator) and its line number.
    pub fn next_record(&mut self) -> Result<Option<(i64, &[u8])>> {
        loop {
            if self.position >= self.end || !self.read_line()? {
                return Ok(None);
            }
            self.line_number += 1;
            let record = strip_terminator(&self.line);
            if self.line_number == 1 {
                check_header(self.table, &self.source, record)?;
                continue;
            }
            if !record.is_empty() {
                return Ok(Some((self.line_number, strip_terminator(&self.line))));
            }
        }
    }

    /// Reads one line into `self.line`, keeping at most `kept_bytes` of it; `false` at the end.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        let mut consumed = 0usize;
        loop {
            let buffer = self.reader.fill_buf().map_err(Error::io(&self.source))?;
            if buffer.is_empty() {
                return Ok(consumed > 0);
            }
            let (chunk, ends) = match memchr::memchr(b'\n', buffer) {
                Some(i) => (&buffer[..=i], true),
                None => (buffer, false),
            };
            let room = self.kept_bytes.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let n = chunk.len();
            self.reader.consume(n);
            self.bar.inc(n as u64);
            self.position += n as u64;
            consumed += n;
            if ends {
                return Ok(true);
            }
        }
    }
}

fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks the header line as a CSV record (RFC 4180): a UTF-8 byte-order mark, quoted names
/// (`"client_id","client_name",...`, as pandas, pyarrow and Spark's quoteAll write them) and
/// whitespace around names are accepted; the names and their order must be the table's.
fn check_header(table: &Table, source: &str, line: &[u8]) -> Result<()> {
    let found = String::from_utf8_lossy(line);
    let record = found.strip_prefix('\u{feff}').unwrap_or(&found);
    // Column names hold no comma or quote, so a header is its comma-separated names, each
    // trimmed and then, if quoted, unquoted (whitespace outside the quotes is tolerated too).
    let names = record.split(',').map(|name| {
        let name = fields::trim(name);
        let unquoted = name.strip_prefix('"').and_then(|n| n.strip_suffix('"'));
        fields::trim(unquoted.unwrap_or(name))
    });
    if names.eq(table.header().split(',')) {
        return Ok(());
    }
    Err(Error::Input {
        path: source.to_string(),
        message: format!(
            "header is {found:?}; the {} table needs the columns {:?} in this order (quoted or not)",
            table.name,
            table.header()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CLIENTS;

    fn header(line: &str) -> Result<()> {
        check_header(&CLIENTS, "clients.csv", line.as_bytes())
    }

    #[test]
    fn long_lines_are_cut_past_the_limit_and_the_next_line_is_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.csv");
        let long = "x".repeat(5000);
        std::fs::write(&path, format!("{}\r\n{long}\nshort\r\n\n{long}", CLIENTS.header())).unwrap();
        let bar = ProgressBar::hidden();
        let mut records = CsvRecords::open(&CLIENTS, &path, 100, &bar).unwrap();
        let (n, record) = records.next_record().unwrap().unwrap();
        assert_eq!((n, record.len()), (2, 102), "cut past the limit");
        let (n, record) = records.next_record().unwrap().unwrap();
        assert_eq!((n, record), (3, &b"short"[..]));
        let (n, record) = records.next_record().unwrap().unwrap();
        assert_eq!((n, record.len()), (5, 102), "a last line without a terminator");
        assert!(records.next_record().unwrap().is_none());
        assert_eq!(bar.position(), std::fs::metadata(&path).unwrap().len());
    }

    /// Every record of `bytes` read through splits of `size` bytes, in order.
    fn read_in_splits(bytes: &[u8], size: usize) -> Vec<(i64, Vec<u8>)> {
        let bar = ProgressBar::hidden();
        let mut found = Vec::new();
        for start in (0..bytes.len()).step_by(size) {
            let split = Split {
                start: start as u64,
                end: (start + size) as u64,
                newlines_before: memchr::memchr_iter(b'\n', &bytes[..start]).count() as u64,
            };
            let reader = &bytes[split.read_from() as usize..];
            let mut records = CsvRecords::split(&CLIENTS, ("clients.csv".into(), reader), split, 100, &bar).unwrap();
            while let Some((n, record)) = records.next_record().unwrap() {
                found.push((n, record.to_vec()));
            }
        }
        found
    }

    #[test]
    fn splits_of_any_size_read_every_record_once_with_its_line_number() {
        let long = "y".repeat(300);
        let text = format!("{}\r\na,1\n\nb,2\r\n{long}\n\n\nc\nd,4", CLIENTS.header());
        let whole = read_in_splits(text.as_bytes(), text.len() + 1);
        let numbers: Vec<i64> = whole.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [2, 4, 5, 8, 9], "blank lines are numbered, not returned");
        for size in 1..=text.len() {
            assert_eq!(read_in_splits(text.as_bytes(), size), whole, "splits of {size} bytes");
        }
    }

    #[test]
    fn headers_are_read_as_csv_records() {
        let plain = CLIENTS.header();
        let quoted: Vec<String> = plain.split(',').map(|n| format!("\"{n}\"")).collect();
        let spaced: Vec<String> = plain.split(',').map(|n| format!(" {n}\t")).collect();
        let spaced_quoted: Vec<String> = plain.split(',').map(|n| format!(" \"{n}\" ")).collect();
        for line in [
            plain.to_string(),
            quoted.join(","),
            format!("\u{feff}{}", quoted.join(",")),
            format!("\u{feff}{plain}"),
            spaced.join(","),
            format!("\u{feff}{}", spaced_quoted.join(",")),
            format!("{plain}\r"),
        ] {
            assert!(header(&line).is_ok(), "{line:?} is a valid header");
        }
    }

    #[test]
    fn wrong_headers_name_the_table_and_the_columns() {
        let plain = CLIENTS.header();
        let reordered = plain.replacen("client_id,client_name", "client_name,client_id", 1);
        for line in [reordered.as_str(), "\"client_id,client_name\"", "\"client_id", ""] {
            let err = header(line).unwrap_err().to_string();
            assert!(err.contains("clients") && err.contains(&plain), "{err}");
        }
    }
}
