//! The SQL of the jobs, loaded from `sql/` (compiled in with `include_str!`, overridable file
//! by file from a directory given as `sql.dir`), with `{{name}}` placeholders filled from
//! values the library has validated — so analysts change rules without touching Rust.

use std::borrow::Cow;
use std::path::PathBuf;

use crate::error::{Error, Result};

macro_rules! sql_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../sql/", $name)))),*]
    };
}

/// Every file under `sql/` that the library uses, by its path relative to `sql/`.
const BUILTIN: &[(&str, &str)] = sql_files!(
    "datafusion/clean_dedup.sql",
    "datafusion/clean_bank_transactions.sql",
    "datafusion/clean_rate_lookup.sql",
    "datafusion/segment.sql",
    "datafusion/marketing_clients.sql",
    "datafusion/targeted_offers.sql",
    "datafusion/analytics_daily.sql",
    "datafusion/report_offers_by_type.sql",
    "datafusion/report_top_clients.sql",
    "datafusion/report_offers_by_priority.sql",
    "datafusion/page_segments.sql",
    "datafusion/page_combined_segments.sql",
    "datafusion/page_offers_by_type.sql",
    "clickhouse/marketing_clients.sql",
    "clickhouse/targeted_offers.sql",
    "clickhouse/marketing_analytics_daily.sql",
    "clickhouse/marketing_campaign_results.sql",
    "clickhouse/campaign_performance.sql",
    "clickhouse/report_offers_by_type.sql",
    "clickhouse/report_top_clients.sql",
    "clickhouse/report_offers_by_priority.sql",
    "clickhouse/report_segment_distribution.sql",
    "greenplum/create_table.sql",
    "greenplum/storage.sql",
    "greenplum/pxf_external_table.sql",
    "greenplum/pxf_load.sql",
    "greenplum/segmentation.sql",
    "greenplum/verify.sql",
    "offer_templates.csv",
);

/// The SQL files of the jobs.
#[derive(Debug, Clone, Default)]
pub struct SqlLibrary {
    override_dir: Option<PathBuf>,
}

impl SqlLibrary {
    /// The compiled-in SQL, with files in `override_dir` (same relative names) taking
    /// precedence when present.
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        SqlLibrary { override_dir }
    }

    /// The names of all built-in files.
    pub fn names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// The text of `name` (e.g. `datafusion/clean_dedup.sql`).
    pub fn get(&self, name: &str) -> Result<Cow<'static, str>> {
        if let Some(dir) = &self.override_dir {
            let path = dir.join(name);
            if path.exists() {
                return std::fs::read_to_string(&path).map(Cow::Owned).map_err(Error::io(path));
            }
        }
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| Cow::Borrowed(*text))
            .ok_or_else(|| {
                Error::Config(format!(
                    "no SQL file named {name}; known files: {}",
                    Self::names().collect::<Vec<_>>().join(", ")
                ))
            })
    }

    /// The text of `name` with each `{{key}}` replaced by its value. Every placeholder in the
    /// file must be given, so a typo in an override fails loudly instead of running wrong SQL.
    pub fn render(&self, name: &str, params: &[(&str, &str)]) -> Result<String> {
        // Comment lines go first: their placeholders (documentation) are not filled, and a value
        // spanning lines can never turn a comment into SQL.
        let mut sql_only: String = self
            .get(name)?
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut unfilled = sql_only.clone();
        for (key, value) in params {
            let placeholder = format!("{{{{{key}}}}}");
            sql_only = sql_only.replace(&placeholder, value);
            unfilled = unfilled.replace(&placeholder, "");
        }
        if let Some(start) = unfilled.find("{{") {
            let end = unfilled[start..].find("}}").map_or(unfilled.len(), |e| start + e + 2);
            return Err(Error::Config(format!(
                "{name} uses placeholder {} that ebroker does not provide; known: {}",
                &unfilled[start..end],
                params
                    .iter()
                    .map(|(k, _)| format!("{{{{{k}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(sql_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_placeholders_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("datafusion")).unwrap();
        std::fs::write(
            dir.path().join("datafusion/clean_dedup.sql"),
            "-- {{ignored}}\nSELECT {{columns}} FROM {{nope}}",
        )
        .unwrap();
        let lib = SqlLibrary::new(Some(dir.path().to_path_buf()));
        let err = lib
            .render("datafusion/clean_dedup.sql", &[("columns", "a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("{{nope}}"), "{err}");
        assert!(SqlLibrary::default()
            .get("datafusion/clean_dedup.sql")
            .unwrap()
            .contains("RIGHT ANTI JOIN parsed"));
        assert!(SqlLibrary::default().get("nope.sql").is_err());
    }
}
