//! Turns source records of one table into typed Arrow batches and quarantine rows: each record
//! is split, trimmed, normalised and parsed column by column; the first failing required field
//! (in docs/SPEC.md §4's order) sends it to quarantine with its raw text and the reason; an optional
//! field that does not parse becomes NULL and is counted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::fields::{
    parse_bool, parse_date, parse_decimal, parse_int, parse_timestamp, split_csv_line, trim, SourceField,
};
use crate::schema::{quarantine_schema, Column, Kind, Normalise, Table};

/// The quarantine reason of a line that is not a record at all.
pub const MALFORMED: &str = "malformed record";

/// The quarantine reason of a record longer than the configured maximum
/// (`clean.max_record_bytes`); its quarantine row keeps the first [`TOO_LONG_KEPT_BYTES`].
pub const TOO_LONG: &str = "record too long";

/// The default maximum record size: 1 MiB, Kafka's default maximum message size.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How much of a too-long record its quarantine row keeps (the whole record stays in the
/// source file or the raw zone, at the quarantine row's position).
pub const TOO_LONG_KEPT_BYTES: usize = 4096;

/// A batch is handed on when it holds this many rows...
const BATCH_ROWS: usize = 65_536;

/// ...or this many bytes of records: Arrow's string and binary arrays have 32-bit offsets
/// (2 GiB per array), and memory stays bounded whatever the size of the records.
const BATCH_BYTES: usize = 16 << 20;

/// Counts of one table's parse, reported in the data-quality summary.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParseCounts {
    /// Records read (every non-blank line after the header, or every Kafka message).
    pub read: u64,
    /// Records that parsed and go on to deduplication.
    pub parsed: u64,
    /// Quarantined records by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Optional fields that did not parse and were set to NULL, by column.
    pub nulled_unparsable: BTreeMap<String, u64>,
}

impl ParseCounts {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// One parsed field value.
enum Value<'a> {
    Text(Cow<'a, str>),
    Date(i32),
    Timestamp(i64),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Why a field is not usable.
enum Failure {
    Missing,
    Unparsable,
}

fn parse_field<'a>(column: &Column, raw: Cow<'a, str>) -> Result<Value<'a>, Failure> {
    let trimmed: Cow<'a, str> = match raw {
        Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
        Cow::Owned(o) => Cow::Owned(trim(&o).to_string()),
    };
    if trimmed.is_empty() {
        return Err(Failure::Missing);
    }
    let parsed = match column.kind {
        Kind::Text => Some(Value::Text(normalise(column.normalise, trimmed))),
        Kind::Date => parse_date(&trimmed).map(Value::Date),
        Kind::Timestamp => parse_timestamp(&trimmed).map(Value::Timestamp),
        Kind::Int => parse_int(&trimmed).map(Value::Int),
        Kind::Float => parse_decimal(&trimmed).map(Value::Float),
        Kind::Bool => parse_bool(&trimmed).map(Value::Bool),
    };
    match parsed {
        Some(Value::Text(t)) if t.is_empty() => Err(Failure::Missing),
        Some(v) => Ok(v),
        None => Err(Failure::Unparsable),
    }
}

fn normalise(how: Normalise, text: Cow<'_, str>) -> Cow<'_, str> {
    match how {
        Normalise::None => text,
        Normalise::Upper if text.bytes().any(|b| b.is_ascii_lowercase()) || !text.is_ascii() => {
            Cow::Owned(text.to_uppercase())
        }
        Normalise::Upper => text,
        Normalise::DigitsOnly if text.bytes().all(|b| b.is_ascii_digit()) => text,
        Normalise::DigitsOnly => Cow::Owned(text.chars().filter(|c| c.is_ascii_digit()).collect()),
    }
}

/// A typed column under construction.
enum ColumnBuilder {
    Text(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => ColumnBuilder::Text(StringBuilder::new()),
            Kind::Date => ColumnBuilder::Date(Date32Builder::new()),
            Kind::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            Kind::Int => ColumnBuilder::Int(Int64Builder::new()),
            Kind::Float => ColumnBuilder::Float(Float64Builder::new()),
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
        }
    }

    fn append(&mut self, value: &Value<'_>) {
        match (self, value) {
            (ColumnBuilder::Text(b), Value::Text(t)) => b.append_value(t),
            (ColumnBuilder::Date(b), Value::Date(d)) => b.append_value(*d),
            (ColumnBuilder::Timestamp(b), Value::Timestamp(t)) => b.append_value(*t),
            (ColumnBuilder::Int(b), Value::Int(i)) => b.append_value(*i),
            (ColumnBuilder::Float(b), Value::Float(f)) => b.append_value(*f),
            (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Quarantine rows under construction.
struct QuarantineBuilder {
    source: StringBuilder,
    position: Int64Builder,
    reason: StringBuilder,
    record: StringBuilder,
    record_bytes: BinaryBuilder,
    len: usize,
}

impl QuarantineBuilder {
    fn new() -> Self {
        QuarantineBuilder {
            source: StringBuilder::new(),
            position: Int64Builder::new(),
            reason: StringBuilder::new(),
            record: StringBuilder::new(),
            record_bytes: BinaryBuilder::new(),
            len: 0,
        }
    }

    /// Keeps the raw record: as text, and as bytes too when it is not valid UTF-8.
    fn push(&mut self, source: &str, position: i64, reason: &str, raw: &[u8]) {
        self.source.append_value(source);
        self.position.append_value(position);
        self.reason.append_value(reason);
        match std::str::from_utf8(raw) {
            Ok(text) => {
                self.record.append_value(text);
                self.record_bytes.append_null();
            }
            Err(_) => {
                self.record.append_value(String::from_utf8_lossy(raw));
                self.record_bytes.append_value(raw);
            }
        }
        self.len += 1;
    }

    fn finish(&mut self) -> Option<RecordBatch> {
        if self.len == 0 {
            return None;
        }
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.position.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.record.finish()),
            Arc::new(self.record_bytes.finish()),
        ];
        Some(RecordBatch::try_new(quarantine_schema(), columns).expect("quarantine columns match their schema"))
    }
}

/// Parses records of one table into batches of typed rows and batches of quarantine rows.
pub struct RecordParser {
    table: &'static Table,
    check_order: Vec<usize>,
    columns: Vec<ColumnBuilder>,
    arrival: Int64Builder,
    rows: usize,
    bytes: usize,
    max_record_bytes: usize,
    quarantine: QuarantineBuilder,
    counts: ParseCounts,
}

impl RecordParser {
    /// A parser of `table`'s records that quarantines records over `max_record_bytes`.
    pub fn new(table: &'static Table, max_record_bytes: usize) -> Self {
        RecordParser {
            table,
            check_order: table.required_check_order(),
            columns: table.columns.iter().map(|c| ColumnBuilder::new(c.kind)).collect(),
            arrival: Int64Builder::new(),
            rows: 0,
            bytes: 0,
            max_record_bytes,
            quarantine: QuarantineBuilder::new(),
            counts: ParseCounts::default(),
        }
    }

    pub fn table(&self) -> &'static Table {
        self.table
    }

    /// Whether the rows buffered since the last [`RecordParser::finish_batches`] (typed plus
    /// quarantined) make a full batch, by count or by bytes.
    pub fn batch_full(&self) -> bool {
        self.rows + self.quarantine.len >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    pub fn counts(&self) -> &ParseCounts {
        &self.counts
    }

    /// Parses one CSV line (without its terminator). `position` is the arrival order (the
    /// line number); `source` names where it came from.
    pub fn push_csv_line(&mut self, line: &[u8], position: i64, source: &str) {
        self.counts.read += 1;
        if line.len() > self.max_record_bytes {
            return self.reject_too_long(source, position, line);
        }
        self.bytes += line.len();
        let Ok(text) = std::str::from_utf8(line) else {
            return self.reject(source, position, MALFORMED, line);
        };
        let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(self.table.columns.len());
        let ok = split_csv_line(text, &mut fields) && fields.len() == self.table.columns.len();
        if ok {
            self.push_fields(
                fields.drain(..).map(SourceField::Text).collect(),
                position,
                source,
                line,
            );
        } else {
            self.reject(source, position, MALFORMED, line);
        }
    }

    /// Parses one Kafka message value (SPEC §2: a JSON object with the field names).
    /// `position` is its offset; a value that is not a JSON object is a malformed record.
    pub fn push_json_message(&mut self, value: Option<&[u8]>, position: i64, source: &str) {
        self.counts.read += 1;
        let raw = value.unwrap_or_default();
        if raw.len() > self.max_record_bytes {
            return self.reject_too_long(source, position, raw);
        }
        self.bytes += raw.len();
        match value.and_then(|v| super::kafka_json::decode_record(self.table, v)) {
            Some(fields) => self.push_fields(fields, position, source, raw),
            None => self.reject(source, position, MALFORMED, raw),
        }
    }

    fn push_fields(&mut self, fields: Vec<SourceField<'_>>, position: i64, source: &str, raw: &[u8]) {
        let table = self.table;
        let mut values: Vec<Result<Value<'_>, Failure>> = Vec::with_capacity(fields.len());
        for (column, field) in table.columns.iter().zip(fields) {
            values.push(match field {
                SourceField::Text(text) => parse_field(column, text),
                SourceField::Missing => Err(Failure::Missing),
                SourceField::WrongType => Err(Failure::Unparsable),
            });
        }
        for &i in &self.check_order {
            if let Err(failure) = &values[i] {
                let reason = match failure {
                    Failure::Missing => format!("missing {}", table.columns[i].name),
                    Failure::Unparsable => format!("unparsable {}", table.columns[i].name),
                };
                return self.reject(source, position, &reason, raw);
            }
        }
        for ((builder, value), column) in self.columns.iter_mut().zip(&values).zip(table.columns) {
            match value {
                Ok(v) => builder.append(v),
                Err(failure) => {
                    if matches!(failure, Failure::Unparsable) {
                        *self
                            .counts
                            .nulled_unparsable
                            .entry(column.name.to_string())
                            .or_default() += 1;
                    }
                    builder.append_null();
                }
            }
        }
        self.arrival.append_value(position);
        self.rows += 1;
        self.counts.parsed += 1;
    }

    fn reject(&mut self, source: &str, position: i64, reason: &str, raw: &[u8]) {
        *self.counts.quarantined.entry(reason.to_string()).or_default() += 1;
        self.quarantine.push(source, position, reason, raw);
    }

    fn reject_too_long(&mut self, source: &str, position: i64, raw: &[u8]) {
        let kept = &raw[..raw.len().min(TOO_LONG_KEPT_BYTES)];
        self.bytes += kept.len();
        self.reject(source, position, TOO_LONG, kept);
    }

    /// Takes the rows buffered so far: (typed rows, quarantine rows), each `None` when empty.
    pub fn finish_batches(&mut self) -> (Option<RecordBatch>, Option<RecordBatch>) {
        self.bytes = 0;
        let typed = (self.rows > 0).then(|| {
            self.rows = 0;
            let mut columns: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
            columns.push(Arc::new(self.arrival.finish()));
            RecordBatch::try_new(self.table.parsed_schema(), columns).expect("parsed columns match their schema")
        });
        (typed, self.quarantine.finish())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    use super::*;
    use crate::schema::{BANK_TRANSACTIONS, CLIENTS, CLIENT_ACTIVITIES, CURRENCY_RATES};

    fn reasons(table: &'static Table, lines: &[&str]) -> Vec<String> {
        let mut p = RecordParser::new(table, MAX_RECORD_BYTES);
        for (i, line) in lines.iter().enumerate() {
            p.push_csv_line(line.as_bytes(), i as i64, "test");
        }
        let (_, q) = p.finish_batches();
        q.map(|q| {
            q.column(2)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
    }

    #[test]
    fn each_quarantine_reason_in_spec_order() {
        let t = &BANK_TRANSACTIONS;
        assert_eq!(
            reasons(
                t,
                &[
                    ",CLIENT_1,2024-01-01,100,RUB,Debit,ATM",
                    "TXN_1,,2024-01-01,100,RUB,Debit,ATM",
                    "TXN_1,CLIENT_1,2024-02-30,100,RUB,Debit,ATM",
                    "TXN_1,CLIENT_1,,abc,RUB,Debit,ATM",
                    "TXN_1,CLIENT_1,2024-01-01,1e5,RUB,Debit,ATM",
                    "TXN_1,CLIENT_1,2024-01-01,  ,RUB,Debit,ATM",
                    "TXN_1,CLIENT_1,2024-01-01,100,RUB,Debit",
                    "TXN_1,\"CLIENT_1,2024-01-01,100,RUB,Debit,ATM",
                    "   ,  ,2024-01-01,100,RUB,Debit,ATM",
                ]
            ),
            [
                "missing transaction_id",
                "missing client_id",
                "unparsable transaction_date",
                "missing transaction_date",
                "unparsable amount",
                "missing amount",
                "malformed record",
                "malformed record",
                "missing transaction_id",
            ]
        );
        assert_eq!(
            reasons(&CURRENCY_RATES, &["RATE_1,usd/rub,2024-01-01 10:00:00,x,Close"]),
            ["unparsable rate_value"]
        );
    }

    #[test]
    fn invalid_utf8_is_malformed_and_kept_as_bytes() {
        let mut p = RecordParser::new(&CLIENTS, MAX_RECORD_BYTES);
        p.push_csv_line(
            b"CLIENT_1,\xff\xfe,1,2,2000-01-01,2020-01-01,X,VIP,Active",
            1,
            "clients.csv",
        );
        let (typed, q) = p.finish_batches();
        assert!(typed.is_none());
        let q = q.unwrap();
        assert_eq!(q.column(2).as_string::<i32>().value(0), "malformed record");
        assert_eq!(q.column(4).as_binary::<i32>().value(0)[9], 0xff);
    }

    #[test]
    fn values_are_trimmed_normalised_and_optional_failures_nulled() {
        let mut p = RecordParser::new(&CLIENTS, MAX_RECORD_BYTES);
        p.push_csv_line(
            b" CLIENT_1 ,  Ivan Petrov ,+7 (916) 123-45-67,,1990-13-01,2020-01-01,\tMoscow\t,VIP,Active",
            7,
            "c",
        );
        let (typed, q) = p.finish_batches();
        assert!(q.is_none());
        let b = typed.unwrap();
        assert_eq!(b.column(0).as_string::<i32>().value(0), "CLIENT_1");
        assert_eq!(b.column(1).as_string::<i32>().value(0), "Ivan Petrov");
        assert_eq!(b.column(2).as_string::<i32>().value(0), "79161234567");
        assert!(b.column(3).is_null(0), "empty email is NULL");
        assert!(b.column(4).is_null(0), "impossible birth date is NULL");
        assert_eq!(b.column(6).as_string::<i32>().value(0), "Moscow");
        assert_eq!(b.column(9).as_primitive::<Int64Type>().value(0), 7);
        assert_eq!(p.counts().nulled_unparsable.get("birth_date"), Some(&1));

        let mut p = RecordParser::new(&BANK_TRANSACTIONS, MAX_RECORD_BYTES);
        p.push_csv_line(b"TXN_1,CLIENT_1,2024-01-01, 12.50 , usd ,debit ,ATM", 1, "t");
        let (typed, _) = p.finish_batches();
        let b = typed.unwrap();
        assert_eq!(b.column(3).as_primitive::<Float64Type>().value(0), 12.5);
        assert_eq!(b.column(4).as_string::<i32>().value(0), "USD");
        assert_eq!(b.column(5).as_string::<i32>().value(0), "DEBIT");
    }

    #[test]
    fn integers_are_strict_but_optional() {
        let mut p = RecordParser::new(&CLIENT_ACTIVITIES, MAX_RECORD_BYTES);
        p.push_csv_line(b"ACT_1,CLIENT_1,2024-01-01,view_balance,1.5,3", 1, "a");
        let (typed, _) = p.finish_batches();
        let b = typed.unwrap();
        assert!(b.column(4).is_null(0));
        assert_eq!(b.column(3).as_string::<i32>().value(0), "VIEW_BALANCE");
        assert_eq!(p.counts().nulled_unparsable.get("duration_minutes"), Some(&1));
    }

    #[test]
    fn records_over_the_limit_are_quarantined_with_a_prefix() {
        let mut p = RecordParser::new(&CLIENTS, 64);
        let long = format!("CLIENT_1,{},,,2000-01-01,2020-01-01,X,VIP,Active", "N".repeat(100));
        p.push_csv_line(long.as_bytes(), 2, "clients.csv");
        p.push_json_message(Some(long.as_bytes()), 3, "clients[0]");
        p.push_csv_line(b"CLIENT_2,B,,,2000-01-01,2020-01-01,X,VIP,Active", 4, "clients.csv");
        let (typed, q) = p.finish_batches();
        assert_eq!(typed.unwrap().num_rows(), 1);
        let q = q.unwrap();
        assert_eq!(q.column(2).as_string::<i32>().value(0), TOO_LONG);
        assert_eq!(q.column(2).as_string::<i32>().value(1), TOO_LONG);
        assert_eq!(p.counts().quarantined.get(TOO_LONG), Some(&2));
        assert_eq!(p.counts().read, 3);
    }

    #[test]
    fn batches_are_cut_by_bytes_so_huge_records_never_overflow_an_array() {
        // 40,000 records of 100 KiB: 4 GB in one batch would overflow Arrow's 32-bit offsets
        // (and memory) if batches were cut by rows only.
        let name = "N".repeat(100 << 10);
        let line = format!("CLIENT_1,{name},,,2000-01-01,2020-01-01,X,VIP,Active");
        let mut p = RecordParser::new(&CLIENTS, MAX_RECORD_BYTES);
        let (mut batches, mut rows) = (0, 0);
        for i in 0..40_000 {
            p.push_csv_line(line.as_bytes(), i, "clients.csv");
            if p.batch_full() {
                let (typed, _) = p.finish_batches();
                let typed = typed.unwrap();
                assert!(typed.get_array_memory_size() < 64 << 20, "a batch stays small");
                rows += typed.num_rows();
                batches += 1;
            }
        }
        rows += p.finish_batches().0.map_or(0, |b| b.num_rows());
        assert_eq!(rows, 40_000);
        assert!(batches >= 200, "{batches} batches");
    }
}
