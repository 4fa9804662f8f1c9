//! The message format of the seven topics (docs/SPEC.md §2): one JSON object per record with the
//! SPEC field names. Numbers and booleans travel as JSON numbers and booleans when the source
//! text is one; any other text travels as a string, so dirt reaches cleaning unchanged and is
//! quarantined there with the same reasons as from CSV.

use std::borrow::Cow;

use serde_json::Value;

use super::fields::{parse_bool, parse_decimal, parse_int, trim, SourceField};
use crate::schema::{Kind, Table};

/// Appends the JSON object of one CSV record (its fields in column order) to `out`.
pub fn encode_record(table: &Table, fields: &[Cow<'_, str>], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (column, raw)) in table.columns.iter().zip(fields).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(column.name, out);
        out.push(b':');
        let text = trim(raw);
        match column.kind {
            _ if text.is_empty() => out.extend_from_slice(b"null"),
            Kind::Int => match parse_int(text) {
                Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
                None => write_string(raw, out),
            },
            Kind::Float => match parse_decimal(text).and_then(serde_json::Number::from_f64) {
                Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
                None => write_string(raw, out),
            },
            Kind::Bool => match parse_bool(text) {
                Some(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                None => write_string(raw, out),
            },
            _ => write_string(raw, out),
        }
    }
    out.push(b'}');
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, text).expect("writing JSON to a Vec cannot fail");
}

/// Decodes a message value into fields in the table's column order; `None` when the value is
/// not a JSON object at all (broken JSON, a bare string, invalid UTF-8).
pub fn decode_record<'a>(table: &Table, value: &'a [u8]) -> Option<Vec<SourceField<'a>>> {
    let object: serde_json::Map<String, Value> = serde_json::from_slice(value).ok()?;
    let mut object = object;
    Some(
        table
            .columns
            .iter()
            .map(|column| match object.remove(column.name) {
                None | Some(Value::Null) => SourceField::Missing,
                Some(Value::String(s)) => SourceField::Text(Cow::Owned(s)),
                Some(Value::Number(n)) if column.kind == Kind::Int => SourceField::Text(Cow::Owned(n.to_string())),
                Some(Value::Number(n)) if column.kind == Kind::Float => {
                    SourceField::Text(Cow::Owned(plain_decimal(&n)))
                }
                Some(Value::Bool(b)) if column.kind == Kind::Bool => {
                    SourceField::Text(Cow::Borrowed(if b { "true" } else { "false" }))
                }
                Some(_) => SourceField::WrongType,
            })
            .collect(),
    )
}

/// A JSON number as the plain decimal text SPEC §4 parses: serde_json writes 10^16 and
/// above, and non-zero values under 10^-5, with an exponent (`1e16`), which the decimal rule
/// rejects; Rust's `Display` of the same double never uses one.
fn plain_decimal(number: &serde_json::Number) -> String {
    match number.as_f64() {
        Some(value) if number.is_f64() => value.to_string(),
        _ => number.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BANK_TRANSACTIONS, CLIENT_LOGINS};

    fn encode(table: &Table, fields: &[&str]) -> String {
        let fields: Vec<Cow<'_, str>> = fields.iter().map(|f| Cow::Borrowed(*f)).collect();
        let mut out = Vec::new();
        encode_record(table, &fields, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn typed_values_travel_typed_and_dirt_travels_as_text() {
        let json = encode(
            &BANK_TRANSACTIONS,
            &["TXN_1", "CLIENT_1", "2024-01-02", "12.50", " usd ", "", "ATM"],
        );
        assert_eq!(
            json,
            r#"{"transaction_id":"TXN_1","client_id":"CLIENT_1","transaction_date":"2024-01-02","amount":12.5,"currency":" usd ","transaction_type":null,"channel":"ATM"}"#
        );
        let dirty = encode(
            &BANK_TRANSACTIONS,
            &[
                "TXN_2",
                "CLIENT_1",
                "2024-01-02",
                "12,5x",
                "RUB",
                "Debit",
                "Онлайн \"x\"",
            ],
        );
        assert!(
            dirty.contains(r#""amount":"12,5x""#) && dirty.contains(r#""channel":"Онлайн \"x\"""#),
            "{dirty}"
        );
        let login = encode(
            &CLIENT_LOGINS,
            &["L1", "C1", "2024-01-02 10:00:00", "1.2.3.4", "Mobile", "Chrome", "True"],
        );
        assert!(login.ends_with(r#""success":true}"#), "{login}");
    }

    #[test]
    fn decoding_keeps_text_and_flags_wrong_types() {
        let value = br#"{"transaction_id":"TXN_1","client_id":7,"transaction_date":"2024-01-02","amount":12.5,"currency":null,"transaction_type":{"a":1}}"#;
        let fields = decode_record(&BANK_TRANSACTIONS, value).unwrap();
        assert_eq!(fields[0], SourceField::Text(Cow::Borrowed("TXN_1")));
        assert_eq!(fields[1], SourceField::WrongType);
        assert_eq!(fields[3], SourceField::Text(Cow::Borrowed("12.5")));
        assert_eq!(fields[4], SourceField::Missing);
        assert_eq!(fields[5], SourceField::WrongType);
        assert_eq!(fields[6], SourceField::Missing, "absent field");
        assert!(decode_record(&BANK_TRANSACTIONS, b"{\"transaction_id\":").is_none());
        assert!(decode_record(&BANK_TRANSACTIONS, b"\"just a string\"").is_none());
        assert!(decode_record(&BANK_TRANSACTIONS, b"\xff\xfe").is_none());
    }

    #[test]
    fn very_large_and_very_small_decimals_survive_the_round_trip() {
        for amount in ["10000000000000000", "0.000001", "123456789012345678901234567890.5"] {
            let json = encode(
                &BANK_TRANSACTIONS,
                &["T", "C", "2024-01-02", amount, "RUB", "Debit", "ATM"],
            );
            let fields = decode_record(&BANK_TRANSACTIONS, json.as_bytes()).unwrap();
            let SourceField::Text(text) = &fields[3] else {
                panic!("{json}")
            };
            assert_eq!(parse_decimal(text), parse_decimal(amount), "{json} -> {text}");
        }
    }
}
