//! Fuzzes the CSV line splitter and the strict field parsers of docs/SPEC.md §4: no input
//! panics; a line that splits re-splits to the same fields after quoting; integers fit 32
//! bits and decimals are finite; dates and timestamps are real calendar values.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/formats/fields.rs"]
mod fields;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = Vec::new();
    if fields::split_csv_line(line, &mut out) {
        let quoted: Vec<String> = out.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
        let rejoined = quoted.join(",");
        let mut again = Vec::new();
        assert!(fields::split_csv_line(&rejoined, &mut again));
        assert_eq!(out, again);
    }
    for field in line.split([',', '"']).map(fields::trim) {
        assert!(fields::parse_decimal(field).is_none_or(f64::is_finite));
        assert!(fields::parse_int(field).is_none_or(|n| i32::try_from(n).is_ok()));
        if let Some(days) = fields::parse_date(field) {
            assert!((-719_528..=2_932_896).contains(&days), "{field}: {days}");
        }
        let _ = fields::parse_timestamp(field);
        let _ = fields::parse_bool(field);
    }
});
