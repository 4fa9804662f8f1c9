//! Hostile-input tests of the record formats (issue 15): valid records of every table, as CSV
//! lines and as Kafka JSON messages, mutated at random — bytes flipped, quotes, separators,
//! line breaks, NULs, invalid UTF-8 and long digit runs inserted, ranges cut, duplicated and
//! spliced between tables — and pushed through the real parsers. Every input must either
//! parse or be quarantined with one of SPEC §4's reasons, and the counts must add up; no
//! input may panic. Deterministic (a fixed seed), so a failure reproduces; the coverage-guided
//! fuzz targets for the field parsers are under `fuzz/`.

use std::borrow::Cow;

use datafusion::arrow::array::AsArray;

use super::fields::{parse_decimal, parse_int, split_csv_line};
use super::kafka_json::encode_record;
use super::record::{RecordParser, MALFORMED, TOO_LONG};
use crate::schema::{Table, TABLES};

/// Mutated inputs per table and format.
const ROUNDS: usize = 20_000;

/// One valid record per table, in column order.
fn seed(table: &Table) -> String {
    let fields: Vec<&str> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            crate::schema::Kind::Text if c.name == table.id => "ID_000001",
            crate::schema::Kind::Text if c.name == "client_id" => "CLIENT_000001",
            crate::schema::Kind::Text if c.name == "currency_pair" => "USD/RUB",
            crate::schema::Kind::Text => "Москва, \"центр\"",
            crate::schema::Kind::Date => "2024-05-01",
            crate::schema::Kind::Timestamp => "2024-05-01 12:30:00",
            crate::schema::Kind::Int => "42",
            crate::schema::Kind::Float => "1234.56",
            crate::schema::Kind::Bool => "True",
        })
        .collect();
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// xorshift64*: small, fast and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\",\r\n\0 \t-+.e0123456789\xff\xfe\xc3{}[]:";

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(16)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 => out.truncate(at),
            5 => {
                let from = rng.below(other.len() + 1);
                out.splice(at..at, other[from..].iter().copied().take(rng.below(32)));
            }
            _ => {
                let digits = 1 + rng.below(400);
                out.splice(at..at, std::iter::repeat_n(b'9', digits));
            }
        }
    }
    out
}

/// Checks what a parser produced: counts add up, and every quarantine reason is one of §4's.
fn check(table: &Table, parser: &mut RecordParser, pushed: u64) {
    let counts = parser.counts().clone();
    let (typed, quarantined) = parser.finish_batches();
    assert_eq!(counts.read, pushed);
    assert_eq!(counts.read, counts.parsed + counts.quarantined_total());
    assert_eq!(typed.map_or(0, |b| b.num_rows()) as u64, counts.parsed);
    let Some(quarantined) = quarantined else {
        return assert_eq!(counts.quarantined_total(), 0);
    };
    assert_eq!(quarantined.num_rows() as u64, counts.quarantined_total());
    for reason in quarantined.column(2).as_string::<i32>().iter().flatten() {
        let column = reason
            .strip_prefix("missing ")
            .or_else(|| reason.strip_prefix("unparsable "));
        let known = column.is_some_and(|c| table.columns.iter().any(|col| col.name == c));
        assert!(
            known || reason == MALFORMED || reason == TOO_LONG,
            "unexpected reason {reason:?}"
        );
    }
}

#[test]
fn mutated_csv_lines_parse_or_are_quarantined_with_a_reason() {
    let mut rng = Rng(0x5eed_0001);
    let seeds: Vec<String> = TABLES.iter().copied().map(seed).collect();
    for (i, &table) in TABLES.iter().enumerate() {
        let mut parser = RecordParser::new(table, 4096);
        for round in 0..ROUNDS {
            let other = &seeds[rng.below(seeds.len())];
            let line = mutate(&mut rng, seeds[i].as_bytes(), other.as_bytes());
            parser.push_csv_line(&line, round as i64, "fuzz.csv");
        }
        check(table, &mut parser, ROUNDS as u64);
    }
}

#[test]
fn mutated_kafka_messages_parse_or_are_quarantined_with_a_reason() {
    let mut rng = Rng(0x5eed_0002);
    let messages: Vec<Vec<u8>> = TABLES
        .iter()
        .map(|t| {
            let line = seed(t);
            let mut fields = Vec::new();
            assert!(split_csv_line(&line, &mut fields), "{line}");
            let mut out = Vec::new();
            encode_record(t, &fields, &mut out);
            out
        })
        .collect();
    for (i, &table) in TABLES.iter().enumerate() {
        let mut parser = RecordParser::new(table, 4096);
        for round in 0..ROUNDS {
            let other = &messages[rng.below(messages.len())];
            let message = mutate(&mut rng, &messages[i], other);
            parser.push_json_message(Some(&message), round as i64, "fuzz[0]");
        }
        check(table, &mut parser, ROUNDS as u64);
    }
}

#[test]
fn split_lines_round_trip_and_numbers_stay_in_range() {
    let mut rng = Rng(0x5eed_0003);
    let seeds: Vec<String> = TABLES.iter().copied().map(seed).collect();
    for _ in 0..ROUNDS * 5 {
        let seed = &seeds[rng.below(seeds.len())];
        let bytes = mutate(&mut rng, seed.as_bytes(), b"1e308,-0.5,\"x\"");
        let Ok(line) = std::str::from_utf8(&bytes) else {
            continue;
        };
        for field in line.split([',', '"']) {
            assert!(parse_decimal(field).is_none_or(f64::is_finite), "{field}");
            assert!(parse_int(field).is_none_or(|n| i32::try_from(n).is_ok()), "{field}");
        }
        let mut fields: Vec<Cow<'_, str>> = Vec::new();
        if !split_csv_line(line, &mut fields) {
            continue;
        }
        let quoted: Vec<String> = fields
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        let rejoined = quoted.join(",");
        let mut again: Vec<Cow<'_, str>> = Vec::new();
        assert!(split_csv_line(&rejoined, &mut again), "{rejoined:?}");
        assert_eq!(fields, again, "{line:?}");
    }
}
