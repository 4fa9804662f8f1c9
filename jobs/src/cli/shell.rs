//! `ebroker sql`: ad-hoc SQL over the warehouse catalog (`cleaned.clients`,
//! `marts.targeted_offers`, ...) in-process or on the cluster — one-shot (`-e`, `-f`) or as an
//! interactive shell with line editing, history, multi-line statements (ended by `;`),
//! `\d` / `\d table` and timing. Results print as an aligned table, CSV or JSON, or go to a
//! Parquet file; errors show DataFusion's message (with the line and column of a syntax
//! error) and no stack trace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::sql::parser::DFParser;
use futures::TryStreamExt;

use crate::cli::catalog::{register_warehouse, CatalogTable};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text table.
    Table,
    Csv,
    /// JSON Lines: one object per row.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Where and how `ebroker sql` writes results.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: OutputFormat,
    pub path: Option<PathBuf>,
}

/// A SQL session over the warehouse.
pub struct Shell<'a> {
    engine: &'a Engine,
    tables: Vec<CatalogTable>,
    output: Output,
    timing: bool,
}

impl<'a> Shell<'a> {
    /// Registers the warehouse catalog in the engine's session.
    pub async fn open(engine: &'a Engine, warehouse: &Warehouse, output: Output) -> Result<Shell<'a>> {
        if output.format == OutputFormat::Parquet && output.path.is_none() {
            return Err(Error::Usage(
                "--format parquet writes a file: add --output FILE.parquet".into(),
            ));
        }
        let tables = register_warehouse(engine, warehouse).await?;
        Ok(Shell {
            engine,
            tables,
            output,
            timing: true,
        })
    }

    /// Runs every statement in `sql`, writing each result.
    pub async fn run_script(&mut self, sql: &str) -> Result<()> {
        let statements = DFParser::parse_sql(sql).map_err(|e| Error::Sql(e.to_string()))?;
        for statement in statements {
            let started = Instant::now();
            let plan = self
                .engine
                .context()
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(|e| Error::Sql(e.to_string()))?;
            let df = self
                .engine
                .context()
                .execute_logical_plan(plan)
                .await
                .map_err(|e| Error::Sql(e.to_string()))?;
            let rows = self.write(df).await?;
            if self.timing && self.output.path.is_none() && self.output.format == OutputFormat::Table {
                eprintln!("{rows} rows in {:.3} s", started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Writes one result in the chosen format; returns the rows written.
    async fn write(&self, df: datafusion::prelude::DataFrame) -> Result<u64> {
        let mut sink: Box<dyn Write + Send> = match &self.output.path {
            Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(Error::io(p))?)),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let io_error =
            |e: std::io::Error| Error::io(self.output.path.clone().unwrap_or_else(|| PathBuf::from("<stdout>")))(e);
        let format_error = |e: datafusion::arrow::error::ArrowError| Error::engine("writing the result")(e.into());
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(Error::engine("running the query"))?;
        let mut rows = 0u64;
        match self.output.format {
            OutputFormat::Table => {
                let mut batches = Vec::new();
                while let Some(batch) = stream.try_next().await.map_err(Error::engine("running the query"))? {
                    rows += batch.num_rows() as u64;
                    batches.push(batch);
                }
                if batches.is_empty() {
                    batches.push(RecordBatch::new_empty(schema));
                }
                writeln!(sink, "{}", pretty_format_batches(&batches).map_err(format_error)?).map_err(io_error)?;
            }
            OutputFormat::Csv => {
                let mut writer = datafusion::arrow::csv::Writer::new(&mut sink);
                while let Some(batch) = stream.try_next().await.map_err(Error::engine("running the query"))? {
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).map_err(format_error)?;
                }
            }
            OutputFormat::Json => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut sink);
                while let Some(batch) = stream.try_next().await.map_err(Error::engine("running the query"))? {
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).map_err(format_error)?;
                }
                writer.finish().map_err(format_error)?;
            }
            OutputFormat::Parquet => {
                let path = self.output.path.as_deref().unwrap_or(Path::new("out.parquet"));
                let mut writer = ArrowWriter::try_new(&mut sink, schema, None).map_err(|source| Error::Parquet {
                    path: path.display().to_string(),
                    source,
                })?;
                while let Some(batch) = stream.try_next().await.map_err(Error::engine("running the query"))? {
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).map_err(|source| Error::Parquet {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
                writer.close().map_err(|source| Error::Parquet {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        sink.flush().map_err(io_error)?;
        Ok(rows)
    }

    /// The interactive shell: reads statements until `\q` or end of input.
    pub async fn interactive(&mut self) -> Result<()> {
        let mut editor =
            rustyline::DefaultEditor::new().map_err(|e| Error::Usage(format!("cannot open the terminal: {e}")))?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ebroker_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!(
            "ebroker sql — {} tables; \\d lists them, \\d TABLE describes one, \\timing toggles timing, \\q quits.",
            self.tables.len()
        );
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "ebroker> " } else { "     ..> " };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(_) => break,
            };
            let trimmed = line.trim();
            if buffer.is_empty() && trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                if !self.meta_command(trimmed).await {
                    break;
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            if trimmed.ends_with(';') {
                let _ = editor.add_history_entry(buffer.trim());
                if let Err(e) = self.run_script(&buffer).await {
                    eprintln!("error: {e}");
                }
                buffer.clear();
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        Ok(())
    }

    /// Handles `\d`, `\d table`, `\timing`, `\q`; false means quit.
    async fn meta_command(&mut self, command: &str) -> bool {
        let mut words = command.split_whitespace();
        match (words.next(), words.next()) {
            (Some("\\q"), _) => return false,
            (Some("\\timing"), _) => {
                self.timing = !self.timing;
                println!("timing {}", if self.timing { "on" } else { "off" });
            }
            (Some("\\d"), None) => {
                for t in &self.tables {
                    println!("{t}");
                }
            }
            (Some("\\d"), Some(table)) => {
                if let Err(e) = self.run_script(&format!("DESCRIBE {table}")).await {
                    eprintln!("error: {e}");
                }
            }
            _ => eprintln!("unknown command {command}; try \\d, \\d TABLE, \\timing or \\q"),
        }
        true
    }
}
