//! The synthetic generator (docs/SPEC.md §2, §3.1): the seven CSV files for N clients with the
//! reference proportions, date ranges and Russian-locale values, deterministic for a seed and
//! an anchor date, written one table per thread straight to disk (memory flat in N), with
//! optional realistic dirt: duplicates, stray whitespace and case, punctuated phones, and
//! malformed rows (bad numbers, impossible dates, missing ids, broken quoting, wrong field
//! counts, invalid UTF-8).

mod random;
mod words;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use indicatif::ProgressBar;
use serde::Serialize;

use super::{Flag, Stage, StageContext, StageReport};
use crate::error::{Error, Result};
use crate::formats::fields::days_since_epoch;
use crate::schema::{Normalise, Table, TABLES};
use random::Random;

/// The generate stage: writes the sources of a run that was given none.
pub struct Generate;

#[async_trait::async_trait]
impl Stage for Generate {
    fn name(&self) -> &'static str {
        "generate"
    }

    fn command(&self) -> &'static [&'static str] {
        &["generate"]
    }

    fn about(&self) -> &'static str {
        "Write the seven synthetic CSV source files (SPEC §2), optionally with dirt"
    }

    fn flags(&self) -> &'static [Flag] {
        &[Flag::Out, Flag::Generator, Flag::Date]
    }

    fn enabled(&self, ctx: &StageContext) -> bool {
        ctx.input_generated
    }

    fn writes_date(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let out = ctx
            .input
            .clone()
            .ok_or_else(|| Error::Usage("generate needs a directory to write to: pass --out DIR".into()))?;
        let report = generate_files(GenerateOptions::from_config(ctx, out)).await?;
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        let rows = report.files.iter().map(|f| {
            vec![
                f.table.clone(),
                f.rows.to_string(),
                f.bytes.to_string(),
                f.path.display().to_string(),
            ]
        });
        let mut summary = crate::text::aligned(&["table", "rows", "bytes", "file"], rows.collect());
        summary.push_str(&format!(
            "generated {} rows in {secs:.2} s ({:.0} rows/s), peak RSS {}\n",
            report.rows(),
            report.rows() as f64 / secs,
            crate::resources::peak_rss_text()
        ));
        Ok(StageReport {
            rows: report.rows(),
            summary,
            tables: Vec::new(),
        })
    }
}

impl GenerateOptions {
    /// The generator's settings (`[generate]`, which `--clients/--seed/--dirty` override) for
    /// the context's date, writing into `out`.
    pub fn from_config(ctx: &StageContext, out: PathBuf) -> GenerateOptions {
        let settings = &ctx.config.generate;
        GenerateOptions {
            clients: settings.clients,
            seed: settings.seed,
            dirty: settings.dirty,
            anchor: ctx.date.date(),
            out,
        }
    }
}

/// Runs the generator on a blocking thread.
pub async fn generate_files(options: GenerateOptions) -> Result<GenerateReport> {
    tokio::task::spawn_blocking(move || generate(&options))
        .await
        .map_err(|e| Error::Stage {
            stage: "generate".into(),
            message: e.to_string(),
        })?
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub clients: u64,
    pub seed: u64,
    /// Fraction of records that get dirt, 0..=1.
    pub dirty: f64,
    /// "Today" of the generated data: date ranges end here.
    pub anchor: NaiveDate,
    pub out: PathBuf,
}

/// What was written, per file.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedFile {
    pub table: String,
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// The result of a generate run.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub files: Vec<GeneratedFile>,
    pub elapsed: Duration,
}

impl GenerateReport {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// Records per client, in tenths (SPEC §2: per 5,000 clients 15,000 transactions, ...).
fn tenths_per_client(table: &str) -> u64 {
    match table {
        "clients" => 10,
        "bank_transactions" => 30,
        "client_logins" => 16,
        "client_activities" => 20,
        "payments" => 14,
        "securities_portfolios" => 6,
        "currency_rates" => 2,
        other => unreachable!("no proportion for table {other}"),
    }
}

/// How many records of `table` go with `clients` clients (at least one).
pub fn planned_rows(table: &str, clients: u64) -> u64 {
    (clients * tenths_per_client(table)).div_ceil(10).max(1)
}

/// Writes the seven CSV files into `options.out`. Each file appears whole (written to a
/// temporary name, then renamed) or not at all.
pub fn generate(options: &GenerateOptions) -> Result<GenerateReport> {
    if !(0.0..=1.0).contains(&options.dirty) {
        return Err(Error::Usage(format!(
            "--dirty {} is not a fraction; use a value between 0 and 1",
            options.dirty
        )));
    }
    if options.clients == 0 {
        return Err(Error::Usage("--clients 0: generate at least one client".into()));
    }
    std::fs::create_dir_all(&options.out).map_err(Error::io(&options.out))?;
    let started = Instant::now();
    let total: u64 = TABLES.iter().map(|t| planned_rows(t.name, options.clients)).sum();
    let bar = crate::progress::bar(total, "generate", "rows");
    let files = std::thread::scope(|scope| {
        let handles: Vec<_> = TABLES
            .iter()
            .enumerate()
            .map(|(i, table)| {
                let bar = bar.clone();
                scope.spawn(move || write_table(options, table, i as u64, &bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    bar.finish_and_clear();
    Ok(GenerateReport {
        files,
        elapsed: started.elapsed(),
    })
}

fn write_table(
    options: &GenerateOptions,
    table: &'static Table,
    stream: u64,
    bar: &ProgressBar,
) -> Result<GeneratedFile> {
    let path = options.out.join(table.file_name());
    let tmp = options.out.join(format!(".{}.tmp", table.file_name()));
    let file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rows = RowWriter::new(options, table, stream);
    writeln!(out, "{}", table.header()).map_err(Error::io(&tmp))?;
    let planned = planned_rows(table.name, options.clients);
    let mut written = 0u64;
    let mut buffer = Vec::with_capacity(1 << 16);
    for i in 1..=planned {
        written += rows.emit(i, &mut buffer);
        if buffer.len() > 60_000 {
            out.write_all(&buffer).map_err(Error::io(&tmp))?;
            buffer.clear();
        }
        if i % 8192 == 0 {
            bar.inc(8192);
        }
    }
    bar.inc(planned % 8192);
    out.write_all(&buffer).map_err(Error::io(&tmp))?;
    out.flush().map_err(Error::io(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, &path).map_err(Error::io(&path))?;
    let bytes = std::fs::metadata(&path).map_err(Error::io(&path))?.len();
    Ok(GeneratedFile {
        table: table.name.to_string(),
        path,
        rows: written,
        bytes,
    })
}

/// The kinds of dirt, with their weights out of 100.
const DIRT: [(Dirt, u64); 8] = [
    (Dirt::Duplicate, 35),
    (Dirt::Whitespace, 25),
    (Dirt::BadNumber, 10),
    (Dirt::BadDate, 10),
    (Dirt::MissingId, 8),
    (Dirt::BrokenQuote, 4),
    (Dirt::WrongFieldCount, 4),
    (Dirt::InvalidUtf8, 4),
];

#[derive(Debug, Clone, Copy)]
enum Dirt {
    Duplicate,
    Whitespace,
    BadNumber,
    BadDate,
    MissingId,
    BrokenQuote,
    WrongFieldCount,
    InvalidUtf8,
}

/// Produces the lines of one table.
struct RowWriter<'a> {
    options: &'a GenerateOptions,
    table: &'static Table,
    random: Random,
    today: i32,
    line: Vec<u8>,
}

impl<'a> RowWriter<'a> {
    fn new(options: &'a GenerateOptions, table: &'static Table, stream: u64) -> Self {
        RowWriter {
            options,
            table,
            random: Random::new(options.seed, stream),
            today: days_since_epoch(options.anchor),
            line: Vec::with_capacity(256),
        }
    }

    /// Appends record `i` (and any dirt) to `out`; returns the number of lines written.
    fn emit(&mut self, i: u64, out: &mut Vec<u8>) -> u64 {
        self.line.clear();
        self.record(i);
        if self.options.dirty > 0.0 && self.random.chance(self.options.dirty) {
            return self.emit_dirty(out);
        }
        out.extend_from_slice(&self.line);
        out.push(b'\n');
        1
    }

    fn emit_dirty(&mut self, out: &mut Vec<u8>) -> u64 {
        let roll = self.random.below(100);
        let mut acc = 0;
        let kind = DIRT.iter().find(|(_, w)| {
            acc += w;
            roll < acc
        });
        let kind = kind.map_or(Dirt::Duplicate, |(k, _)| *k);
        let line = std::mem::take(&mut self.line);
        let mut fields: Vec<Vec<u8>> = line.split(|&b| b == b',').map(<[u8]>::to_vec).collect();
        let id = self.table.column_index(self.table.id);
        let event = self.table.column_index(self.table.event);
        let mut lines = 1;
        match kind {
            Dirt::Duplicate => {
                out.extend_from_slice(&line);
                out.push(b'\n');
                lines = 2;
            }
            Dirt::Whitespace => self.whitespace(&mut fields),
            Dirt::BadNumber => {
                let numeric = self
                    .table
                    .columns
                    .iter()
                    .position(|c| matches!(c.kind, crate::schema::Kind::Float) && c.required);
                let target = numeric.unwrap_or(event);
                fields[target] = if numeric.is_some() {
                    b"12.5.0".to_vec()
                } else {
                    b"2024-13-45".to_vec()
                };
            }
            Dirt::BadDate => {
                fields[event] = if self.random.chance(0.5) {
                    b"2024-02-30".to_vec()
                } else {
                    b"31.12.2024".to_vec()
                }
            }
            Dirt::MissingId => fields[id].clear(),
            Dirt::BrokenQuote => fields[1].insert(0, b'"'),
            Dirt::WrongFieldCount => {
                fields.pop();
            }
            Dirt::InvalidUtf8 => fields[1].extend_from_slice(&[0xff, 0xfe]),
        }
        self.line = line;
        out.extend_from_slice(&fields.join(&b','));
        out.push(b'\n');
        lines
    }

    fn whitespace(&mut self, fields: &mut [Vec<u8>]) {
        if self.table.name == "clients" && self.random.chance(0.5) {
            let phone = self.table.column_index("phone");
            let digits = fields[phone].clone();
            if digits.len() == 11 {
                fields[phone] = format!(
                    "+{} ({}) {}-{}-{}",
                    as_str(&digits[0..1]),
                    as_str(&digits[1..4]),
                    as_str(&digits[4..7]),
                    as_str(&digits[7..9]),
                    as_str(&digits[9..11])
                )
                .into_bytes();
                return;
            }
        }
        let upper: Vec<usize> = (0..self.table.columns.len())
            .filter(|&i| self.table.columns[i].normalise == Normalise::Upper)
            .collect();
        let target = if upper.is_empty() {
            1
        } else {
            upper[self.random.below(upper.len() as u64) as usize]
        };
        let mixed: Vec<u8> = fields[target]
            .iter()
            .enumerate()
            .map(|(i, b)| if i % 2 == 1 { b.to_ascii_lowercase() } else { *b })
            .collect();
        fields[target] = [b"  ".as_slice(), &mixed, b"\t"].concat();
    }

    /// Writes the clean fields of record `i` into `self.line`.
    fn record(&mut self, i: u64) {
        match self.table.name {
            "clients" => self.client(i),
            "bank_transactions" => self.transaction(i),
            "client_logins" => self.login(i),
            "client_activities" => self.activity(i),
            "payments" => self.payment(i),
            "securities_portfolios" => self.portfolio(i),
            "currency_rates" => self.rate(i),
            other => unreachable!("no generator for table {other}"),
        }
    }

    fn client_ref(&mut self) {
        let client = 1 + self.random.below(self.options.clients);
        self.id("CLIENT_", client, 6);
    }

    fn id(&mut self, prefix: &str, n: u64, width: usize) {
        self.line.extend_from_slice(prefix.as_bytes());
        push_padded(&mut self.line, n, width);
    }

    fn sep(&mut self) {
        self.line.push(b',');
    }

    fn text(&mut self, s: &str) {
        self.line.extend_from_slice(s.as_bytes());
    }

    fn pick(&mut self, options: &[&str]) {
        let s = options[self.random.below(options.len() as u64) as usize];
        self.text(s);
    }

    /// A date within the last `days` days before the anchor.
    fn recent_date(&mut self, days: u64) {
        let d = self.today - self.random.below(days) as i32;
        push_date(&mut self.line, d);
    }

    fn recent_timestamp(&mut self, days: u64) {
        self.recent_date(days);
        let second = self.random.below(86_400);
        self.line.push(b' ');
        push_padded(&mut self.line, second / 3600, 2);
        self.line.push(b':');
        push_padded(&mut self.line, second / 60 % 60, 2);
        self.line.push(b':');
        push_padded(&mut self.line, second % 60, 2);
    }

    /// A decimal with two places in [lo, hi].
    fn money(&mut self, lo: u64, hi: u64) {
        let cents = lo * 100 + self.random.below((hi - lo) * 100 + 1);
        push_cents(&mut self.line, cents);
    }

    fn client(&mut self, i: u64) {
        self.id("CLIENT_", i, 6);
        self.sep();
        let female = self.random.chance(0.5);
        let (first, first_latin) = if female {
            self.random.pick(words::FEMALE_FIRST)
        } else {
            self.random.pick(words::MALE_FIRST)
        };
        let (male_surname, female_surname, surname_latin) = self.random.pick(words::SURNAMES);
        let (male_patronymic, female_patronymic) = self.random.pick(words::PATRONYMICS);
        let (surname, patronymic) = if female {
            (female_surname, female_patronymic)
        } else {
            (male_surname, male_patronymic)
        };
        let name = format!("{surname} {first} {patronymic}");
        self.text(&name);
        self.sep();
        self.text("79");
        push_padded(&mut self.line, self.random.below(1_000_000_000), 9);
        self.sep();
        let domain = *self.random.pick(words::EMAIL_DOMAINS);
        let email = format!("{first_latin}.{surname_latin}{}@{domain}", i % 1000);
        self.text(&email);
        self.sep();
        let age_days = 18 * 365 + self.random.below(62 * 365);
        push_date(&mut self.line, self.today - age_days as i32);
        self.sep();
        self.recent_date(5 * 365);
        self.sep();
        self.pick(words::CITIES);
        self.sep();
        let segment = match self.random.below(100) {
            0..=9 => "VIP",
            10..=29 => "Premium",
            30..=64 => "Standard",
            _ => "Basic",
        };
        self.text(segment);
        self.sep();
        let status = if self.random.chance(0.85) { "Active" } else { "Inactive" };
        self.text(status);
    }

    fn transaction(&mut self, i: u64) {
        self.id("TXN_", i, 8);
        self.sep();
        self.client_ref();
        self.sep();
        self.recent_date(365);
        self.sep();
        self.money(100, 50_000);
        self.sep();
        let currency = match self.random.below(10) {
            0..=6 => "RUB",
            7..=8 => "USD",
            _ => "EUR",
        };
        self.text(currency);
        self.sep();
        self.pick(&["Debit", "Credit", "Transfer"]);
        self.sep();
        self.pick(&["ATM", "Online", "Branch", "Mobile"]);
    }

    fn login(&mut self, i: u64) {
        self.id("LOGIN_", i, 8);
        self.sep();
        self.client_ref();
        self.sep();
        self.recent_timestamp(182);
        self.sep();
        let ip = format!(
            "{}.{}.{}.{}",
            1 + self.random.below(223),
            self.random.below(256),
            self.random.below(256),
            1 + self.random.below(254)
        );
        self.text(&ip);
        self.sep();
        self.pick(&["Desktop", "Mobile", "Tablet"]);
        self.sep();
        self.pick(&["Chrome", "Firefox", "Safari", "Edge"]);
        self.sep();
        let success = if self.random.chance(0.9) { "True" } else { "False" };
        self.text(success);
    }

    fn activity(&mut self, i: u64) {
        self.id("ACT_", i, 8);
        self.sep();
        self.client_ref();
        self.sep();
        self.recent_date(91);
        self.sep();
        self.pick(&["Login", "Transfer", "Payment", "View_Balance", "Update_Profile"]);
        self.sep();
        push_padded(&mut self.line, 1 + self.random.below(30), 1);
        self.sep();
        push_padded(&mut self.line, 1 + self.random.below(10), 1);
    }

    fn payment(&mut self, i: u64) {
        self.id("PAY_", i, 8);
        self.sep();
        self.client_ref();
        self.sep();
        self.recent_date(182);
        self.sep();
        self.money(50, 10_000);
        self.sep();
        self.text("RUB");
        self.sep();
        self.pick(&["Utility", "Mobile", "Internet", "Insurance"]);
        self.sep();
        let status = match self.random.below(20) {
            0..=16 => "Completed",
            17..=18 => "Pending",
            _ => "Failed",
        };
        self.text(status);
    }

    fn portfolio(&mut self, i: u64) {
        self.id("PORT_", i, 6);
        self.sep();
        self.client_ref();
        self.sep();
        let kind = *self.random.pick(&["Stock", "Bond", "ETF", "Mutual_Fund"]);
        self.text(kind);
        self.sep();
        let issuer = *self.random.pick(words::ISSUERS);
        let name = match kind {
            "Stock" => format!("{issuer} ао"),
            "Bond" => format!("{issuer} БО-{:02}", 1 + self.random.below(30)),
            "ETF" => format!("БПИФ {issuer}"),
            _ => format!("ПИФ {issuer} Сбалансированный"),
        };
        self.text(&name);
        self.sep();
        push_padded(&mut self.line, 1 + self.random.below(1000), 1);
        self.sep();
        let purchase = 1_000 + self.random.below(499_001);
        push_cents(&mut self.line, purchase);
        self.sep();
        let current = (purchase as f64 * (0.7 + self.random.unit() * 0.8)).round() as u64;
        push_cents(&mut self.line, current.clamp(1_000, 500_000));
        self.sep();
        self.recent_date(730);
    }

    fn rate(&mut self, i: u64) {
        self.id("RATE_", i, 6);
        self.sep();
        self.pick(&["USD/RUB", "EUR/RUB", "GBP/RUB"]);
        self.sep();
        self.recent_timestamp(365);
        self.sep();
        let value = 6_000 + self.random.below(4_001);
        push_cents(&mut self.line, value);
        self.sep();
        self.text("Close");
    }
}

fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Appends `n` in decimal, zero-padded to `width`.
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut len = 0;
    while n > 0 || len == 0 {
        digits[19 - len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    for _ in len..width {
        out.push(b'0');
    }
    out.extend_from_slice(&digits[20 - len..]);
}

/// Appends an amount in cents as `units.cc`.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_padded(out, cents / 100, 1);
    out.push(b'.');
    push_padded(out, cents % 100, 2);
}

/// Appends the date `days` after 1970-01-01 as `YYYY-MM-DD`.
fn push_date(out: &mut Vec<u8>, days: i32) {
    use chrono::Datelike;
    let date = NaiveDate::from_num_days_from_ce_opt(days + 719_163).expect("generated dates are in range");
    push_padded(out, date.year() as u64, 4);
    out.push(b'-');
    push_padded(out, date.month() as u64, 2);
    out.push(b'-');
    push_padded(out, date.day() as u64, 2);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn csv_path(dir: &Path, table: &Table) -> PathBuf {
        dir.join(table.file_name())
    }

    fn options(dir: &Path, dirty: f64) -> GenerateOptions {
        GenerateOptions {
            clients: 500,
            seed: 7,
            dirty,
            anchor: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
            out: dir.to_path_buf(),
        }
    }

    #[test]
    fn deterministic_per_seed_with_reference_proportions() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ra = generate(&options(a.path(), 0.0)).unwrap();
        generate(&options(b.path(), 0.0)).unwrap();
        for t in TABLES {
            let x = std::fs::read(csv_path(a.path(), t)).unwrap();
            assert_eq!(x, std::fs::read(csv_path(b.path(), t)).unwrap(), "{} differs", t.name);
        }
        let rows = |name: &str| ra.files.iter().find(|f| f.table == name).unwrap().rows;
        assert_eq!(rows("clients"), 500);
        assert_eq!(rows("bank_transactions"), 1500);
        assert_eq!(rows("client_logins"), 800);
        assert_eq!(rows("currency_rates"), 100);
        let clients = std::fs::read_to_string(csv_path(a.path(), &crate::schema::CLIENTS)).unwrap();
        assert!(clients.starts_with("client_id,client_name,phone"));
        assert!(clients.lines().nth(1).unwrap().starts_with("CLIENT_000001,"));
    }

    #[test]
    fn numbers_format_exactly() {
        let mut v = Vec::new();
        push_cents(&mut v, 1_234_505);
        v.push(b' ');
        push_padded(&mut v, 42, 6);
        v.push(b' ');
        push_date(&mut v, 19_782);
        assert_eq!(String::from_utf8(v).unwrap(), "12345.05 000042 2024-02-29");
    }
}
