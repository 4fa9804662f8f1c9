//! The processing date: the day a run's records belong to (docs/SPEC.md §3, §4). It names
//! partitions (`processing_date=D/`), run files (`_runs/D/`) and staging paths, so it is
//! validated once, where it enters (a flag, a config value, a state file), and library APIs
//! take this type instead of text: a value like `../../x` can never reach a path.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

use crate::error::{Error, Result};

/// The earliest and latest processing dates accepted: four-digit years the generator can go
/// 80 years back from, and that every target system stores.
const FIRST_YEAR: i32 = 1900;
const LAST_YEAR: i32 = 9999;

/// A calendar day in 1900-01-01..=9999-12-31, written `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessingDate {
    date: NaiveDate,
    text: [u8; 10],
}

impl ProcessingDate {
    /// Parses `YYYY-MM-DD` strictly; the error names the value and the form to use.
    pub fn parse(text: &str) -> Result<ProcessingDate> {
        let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .filter(|_| text.len() == 10);
        match parsed {
            Some(date) => Self::from_date(date),
            None => Err(Error::Usage(format!(
                "`{text}` is not a processing date; write it as YYYY-MM-DD, e.g. 2024-06-01"
            ))),
        }
    }

    /// The processing date of `date`, if its year is in range.
    pub fn from_date(date: NaiveDate) -> Result<ProcessingDate> {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
            return Err(Error::Usage(format!(
                "processing date {date} is out of range; use a day from {FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31"
            )));
        }
        let mut text = [0u8; 10];
        text.copy_from_slice(date.format("%Y-%m-%d").to_string().as_bytes());
        Ok(ProcessingDate { date, text })
    }

    /// Today in UTC.
    pub fn today() -> ProcessingDate {
        Self::from_date(chrono::Utc::now().date_naive()).expect("today is within 1900..=9999")
    }

    /// `YYYY-MM-DD`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("formatted from a date: ASCII")
    }

    /// The calendar day.
    pub fn date(&self) -> NaiveDate {
        self.date
    }
}

impl fmt::Display for ProcessingDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ProcessingDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessingDate({})", self.as_str())
    }
}

impl FromStr for ProcessingDate {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl serde::Serialize for ProcessingDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ProcessingDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_days_in_range_parse() {
        assert_eq!(ProcessingDate::parse("2024-02-29").unwrap().as_str(), "2024-02-29");
        for bad in [
            "2024-02-30",
            "2024-6-1",
            "../../x",
            "2024-06-01/..",
            "0001-01-01",
            " 2024-06-01",
            "",
        ] {
            let err = ProcessingDate::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("YYYY-MM-DD") || err.contains("out of range"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn round_trips_through_json() {
        let date = ProcessingDate::parse("2024-06-01").unwrap();
        let json = serde_json::to_string(&date).unwrap();
        assert_eq!(json, "\"2024-06-01\"");
        assert_eq!(serde_json::from_str::<ProcessingDate>(&json).unwrap(), date);
        assert!(serde_json::from_str::<ProcessingDate>("\"../x\"").is_err());
    }
}
