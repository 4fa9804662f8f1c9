//! `ebroker sql --test PATH`: the SQL rules (docs/SPEC.md §4–§8) checked by sqllogictest files
//! (`sql/tests/*.slt`, the format DataFusion tests its own SQL with), so an analyst who edits a
//! rule file runs its tests without writing Rust. `cargo test` runs the same files.
//!
//! Each file runs in a fresh in-process session with ebroker's SQL functions and the table
//! `offer_templates`. One statement form is added to SQL: `CREATE VIEW v AS RULE 'file.sql'
//! WITH (key = 'value', ...)` renders a rule file of `sql/` (honouring `sql.dir` overrides)
//! with its `{{key}}` placeholders filled and defines it as view `v`. sql/tests/README.md has
//! the conventions for results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::schema::marts::OFFER_TEMPLATES;
use crate::sql::SqlLibrary;
use crate::stages::offers::load_templates;

/// The outcome of one `.slt` file.
#[derive(Debug)]
pub struct FileOutcome {
    pub file: PathBuf,
    /// The first failing record and why, or `None` when every record passed.
    pub failure: Option<String>,
}

/// Runs every `.slt` file at `path` (a file, or a directory searched non-recursively, in
/// name order) against the rules `config` selects.
pub async fn run(config: &Config, path: &Path) -> Result<Vec<FileOutcome>> {
    let files = slt_files(path)?;
    let mut outcomes = Vec::new();
    for file in files {
        let (config, sql) = (config.clone(), SqlLibrary::new(config.sql.override_dir()));
        let mut runner = sqllogictest::Runner::new(move || {
            let (config, sql) = (config.clone(), sql.clone());
            async move { RuleSession::open(&config, sql).await }
        });
        let failure = runner.run_file_async(&file).await.err().map(|e| e.to_string());
        outcomes.push(FileOutcome { file, failure });
    }
    Ok(outcomes)
}

/// The outcomes as lines for people, and an error naming the failed files if any failed.
pub fn summarise(outcomes: &[FileOutcome]) -> (String, Result<()>) {
    let mut text = String::new();
    for outcome in outcomes {
        match &outcome.failure {
            None => text.push_str(&format!("ok      {}\n", outcome.file.display())),
            Some(why) => text.push_str(&format!("FAILED  {}\n{why}\n", outcome.file.display())),
        }
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.file.display().to_string())
        .collect();
    text.push_str(&format!("{} rule files, {} failed\n", outcomes.len(), failed.len()));
    let result = if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Stage {
            stage: "sql --test".into(),
            message: format!(
                "rule tests failed in {}; the first difference of each is printed above",
                failed.join(", ")
            ),
        })
    };
    (text, result)
}

fn slt_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(Error::io(path))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no .slt files; point --test at sql/tests/ or at one file",
            path.display()
        )));
    }
    Ok(files)
}

/// One file's session.
struct RuleSession {
    engine: Engine,
    sql: SqlLibrary,
}

impl RuleSession {
    async fn open(config: &Config, sql: SqlLibrary) -> Result<RuleSession> {
        let mut config = config.clone();
        config.cluster.url.clear();
        let engine = Engine::in_process(&config)?;
        let templates = load_templates(&sql)?;
        let table = MemTable::try_new(templates.schema(), vec![vec![templates]])
            .map_err(Error::engine("registering the offer templates"))?;
        engine
            .context()
            .register_table(OFFER_TEMPLATES.name, Arc::new(table))
            .map_err(Error::engine("registering the offer templates"))?;
        Ok(RuleSession { engine, sql })
    }

    async fn execute(&self, statement: &str) -> Result<DBOutput<DefaultColumnType>> {
        let statement = match RuleView::parse(statement)? {
            Some(view) => view.create_statement(&self.sql)?,
            None => statement.to_string(),
        };
        let df = self.engine.sql(&statement, "a rule test").await.map_err(sql_error)?;
        let types: Vec<DefaultColumnType> = df
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let batches = df.collect().await.map_err(|e| Error::Sql(e.to_string()))?;
        let rows = rows_of(&batches)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }
}

fn sql_error(error: Error) -> Error {
    match error {
        Error::Engine { source, .. } => Error::Sql(source.to_string()),
        other => other,
    }
}

#[async_trait::async_trait]
impl AsyncDB for RuleSession {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>> {
        self.execute(sql).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "ebroker"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// `CREATE VIEW name AS RULE 'file' [WITH (key = 'value', ...)]`.
#[derive(Debug, PartialEq)]
struct RuleView {
    name: String,
    file: String,
    params: Vec<(String, String)>,
}

impl RuleView {
    /// The rule view `statement` defines, `None` for any other statement.
    fn parse(statement: &str) -> Result<Option<RuleView>> {
        let mut rest = statement.trim().trim_end_matches(';').trim();
        for word in ["CREATE", "VIEW"] {
            match strip_word(rest, word) {
                Some(after) => rest = after,
                None => return Ok(None),
            }
        }
        let rest = rest.trim_start();
        let name_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after_name) = rest.split_at(name_end);
        let Some(after_rule) = strip_word(after_name, "AS").and_then(|r| strip_word(r, "RULE")) else {
            return Ok(None);
        };
        let bad = |why: &str| {
            Error::Sql(format!("{why} in `{}`; write CREATE VIEW v AS RULE 'datafusion/segment.sql' WITH (processing_date = '2024-06-01')", statement.trim()))
        };
        let (file, after_file) = quoted(after_rule).ok_or_else(|| bad("the rule file must be quoted"))?;
        let mut params = Vec::new();
        if let Some(with) = strip_word(after_file, "WITH") {
            let inner = with
                .trim()
                .strip_prefix('(')
                .and_then(|w| w.trim_end().strip_suffix(')'));
            let mut list = inner.ok_or_else(|| bad("WITH needs (key = 'value', ...)"))?.trim();
            while !list.is_empty() {
                let (key, value_part) = list
                    .split_once('=')
                    .ok_or_else(|| bad("a parameter needs `= 'value'`"))?;
                let (value, after_value) = quoted(value_part).ok_or_else(|| bad("parameter values must be quoted"))?;
                params.push((key.trim().to_string(), value));
                list = after_value.trim().strip_prefix(',').unwrap_or(after_value).trim();
            }
        } else if !after_file.trim().is_empty() {
            return Err(bad("unexpected text after the rule file"));
        }
        Ok(Some(RuleView {
            name: name.to_string(),
            file,
            params,
        }))
    }

    fn create_statement(&self, sql: &SqlLibrary) -> Result<String> {
        let params: Vec<(&str, &str)> = self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ok(format!(
            "CREATE VIEW {} AS {}",
            self.name,
            sql.render(&self.file, &params)?
        ))
    }
}

/// `text` without its leading keyword `word` (any case, then whitespace or end).
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let text = text.trim_start();
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && (rest.is_empty() || rest.starts_with(char::is_whitespace))).then_some(rest)
}

/// A single-quoted SQL string at the start of `text` ('' is a quote) and the text after it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.trim_start().strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|(_, n)| *n) == Some('\'') {
                chars.next();
                value.push('\'');
            } else {
                return Some((value, &body[i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

/// Every row as text: NULL, `(empty)` for an empty string, floats in Rust's shortest
/// round-trip form (`100`, `1234.5`), everything else as Arrow displays it.
fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Cell> = batch
            .columns()
            .iter()
            .map(|c| Cell::new(c, &options))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c.text(row)).collect());
        }
    }
    Ok(rows)
}

/// How one column's values become text.
enum Cell<'a> {
    Float(&'a ArrayRef),
    Other(&'a ArrayRef, ArrayFormatter<'a>),
}

impl<'a> Cell<'a> {
    fn new(array: &'a ArrayRef, options: &'a FormatOptions<'a>) -> Result<Cell<'a>> {
        if array.data_type().is_floating() {
            return Ok(Cell::Float(array));
        }
        let formatter = ArrayFormatter::try_new(array.as_ref(), options)
            .map_err(|e| Error::Sql(format!("formatting a result: {e}")))?;
        Ok(Cell::Other(array, formatter))
    }

    fn text(&self, row: usize) -> String {
        match self {
            Cell::Float(array) if array.is_null(row) => "NULL".into(),
            Cell::Float(array) => match array.data_type() {
                DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
                _ => array.as_primitive::<Float64Type>().value(row).to_string(),
            },
            Cell::Other(array, formatter) => {
                let text = formatter.value(row).to_string();
                if text.is_empty() && !array.is_null(row) {
                    "(empty)".into()
                } else {
                    text
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_views_parse_and_other_statements_pass_through() {
        let view = RuleView::parse(
            "create view s AS RULE 'datafusion/segment.sql' WITH (processing_date = '2024-06-01', x = 'it''s')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(view.name, "s");
        assert_eq!(view.file, "datafusion/segment.sql");
        assert_eq!(
            view.params,
            [
                ("processing_date".into(), "2024-06-01".into()),
                ("x".into(), "it's".into())
            ]
        );
        assert_eq!(RuleView::parse("CREATE VIEW v AS SELECT 1").unwrap(), None);
        assert_eq!(RuleView::parse("SELECT 1").unwrap(), None);
        assert!(RuleView::parse("CREATE VIEW v AS RULE datafusion/segment.sql").is_err());
    }

    /// The shipped rule tests pass against the shipped rules.
    #[tokio::test]
    async fn the_rules_in_sql_tests_hold() {
        let config = Config::load_from(None, &[], &[]).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/tests");
        let outcomes = run(&config, &dir).await.unwrap();
        let (text, result) = summarise(&outcomes);
        assert!(result.is_ok(), "{text}");
        assert!(outcomes.len() >= 5, "{text}");
    }
}
