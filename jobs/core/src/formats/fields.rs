//! Strict parsing of one source record (docs/SPEC.md §4): splitting a CSV line into fields without
//! guessing about broken quoting, trimming, and parsing integers, decimals, dates, timestamps
//! and booleans exactly as the contract allows — nothing looser.

use std::borrow::Cow;

use chrono::NaiveDate;

/// One field of a source record as it arrived, before parsing.
#[derive(Debug, PartialEq)]
pub enum SourceField<'a> {
    /// Text to parse with the column's strict rules.
    Text(Cow<'a, str>),
    /// Absent (a JSON message without the field, or `null`).
    Missing,
    /// A value of a type the column cannot hold (a JSON object for a date, a number for text).
    WrongType,
}

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// Trims what SPEC §4 calls surrounding whitespace: spaces, tabs, CR and LF.
pub fn trim(value: &str) -> &str {
    value.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Splits one CSV line (without its line terminator) into `out`. Returns `false` when the
/// line is not a well-formed record: a quote inside an unquoted field, an unclosed quote,
/// or text after a closing quote.
pub fn split_csv_line<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> bool {
    out.clear();
    let bytes = line.as_bytes();
    let mut pos = 0;
    loop {
        if bytes.get(pos) == Some(&b'"') {
            let Some((value, next)) = quoted_field(line, pos + 1) else {
                return false;
            };
            out.push(value);
            match bytes.get(next) {
                None => return true,
                Some(b',') => pos = next + 1,
                Some(_) => return false,
            }
        } else {
            let end = line[pos..].find(',').map_or(line.len(), |i| pos + i);
            let value = &line[pos..end];
            if value.contains('"') {
                return false;
            }
            out.push(Cow::Borrowed(value));
            if end == line.len() {
                return true;
            }
            pos = end + 1;
        }
    }
}

/// Reads a quoted field whose content starts at `start`; returns it and the index after the
/// closing quote.
fn quoted_field(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let bytes = line.as_bytes();
    let mut owned: Option<String> = None;
    let mut segment_start = start;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                owned.get_or_insert_with(String::new).push_str(&line[segment_start..=i]);
                i += 2;
                segment_start = i;
                continue;
            }
            let value = match owned {
                Some(mut s) => {
                    s.push_str(&line[segment_start..i]);
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(&line[start..i]),
            };
            return Some((value, i + 1));
        }
        i += 1;
    }
    None
}

/// An integer: digits with an optional sign, within a signed 32-bit integer (SPEC §4:
/// `3000000000` is unparsable). Returned widened, as the cleaned tables store it.
pub fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok().map(i64::from)
}

/// A decimal in plain notation: optional sign, digits, optional fraction. No exponent,
/// no `inf`/`nan`, at least one digit before or after the point, and finite as a double
/// (SPEC §4: a 400-digit amount is unparsable, not infinite).
pub fn parse_decimal(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A date `YYYY-MM-DD` that exists in the calendar, as days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    Some(days_since_epoch(date))
}

/// Days since 1970-01-01 of a calendar date.
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

/// A timestamp `YYYY-MM-DD HH:MM:SS` (or with `T`), as microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = parse_date(&s[..10])? as i64;
    let (h, m, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(((days * 86_400) + (h * 3600 + m * 60 + sec) as i64) * 1_000_000)
}

/// `True`/`False`/`true`/`false`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "true" => Some(true),
        "False" | "false" => Some(false),
        _ => None,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter()
        .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        split_csv_line(line, &mut out).then(|| out.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn csv_lines_split_strictly() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split("\"x, y\",\"say \"\"hi\"\"\",z").unwrap(),
            ["x, y", "say \"hi\"", "z"]
        );
        assert_eq!(split("").unwrap(), [""]);
        assert_eq!(split("a,").unwrap(), ["a", ""]);
        assert!(split("\"unclosed,b").is_none());
        assert!(split("a\"b,c").is_none());
        assert!(split("\"a\"b,c").is_none());
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-7"), Some(-7));
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int("1e3"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("2147483647"), Some(2_147_483_647));
        assert_eq!(parse_int("-2147483648"), Some(-2_147_483_648));
        assert_eq!(parse_int("2147483648"), None);
        assert_eq!(parse_int("3000000000"), None);
        assert_eq!(parse_int("-2147483649"), None);
        assert_eq!(parse_decimal("100.25"), Some(100.25));
        assert_eq!(parse_decimal("-3"), Some(-3.0));
        assert_eq!(parse_decimal(".5"), Some(0.5));
        assert_eq!(parse_decimal("1e5"), None);
        assert_eq!(parse_decimal("NaN"), None);
        assert_eq!(parse_decimal("inf"), None);
        assert_eq!(parse_decimal("12,5"), None);
        assert_eq!(parse_decimal("."), None);
        assert_eq!(parse_decimal("abc"), None);
        let huge = "9".repeat(400);
        assert_eq!(parse_decimal(&huge), None, "a 400-digit amount is not finite");
        assert_eq!(parse_decimal(&format!("-{huge}.5")), None);
        assert!(parse_decimal(&"9".repeat(300)).is_some_and(f64::is_finite));
    }

    #[test]
    fn dates_must_exist() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-1-05"), None);
        assert_eq!(parse_date("05.01.2024"), None);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:01:00"), Some(60_000_000));
        assert_eq!(parse_timestamp("1970-01-01 24:00:00"), None);
        assert_eq!(parse_timestamp("1970-01-01"), None);
    }

    #[test]
    fn booleans_and_trimming() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("TRUE"), None);
        assert_eq!(parse_bool("1"), None);
        assert_eq!(trim(" \t x y\r\n"), "x y");
    }
}
