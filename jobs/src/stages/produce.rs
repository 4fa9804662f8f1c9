//! The produce stage (docs/SPEC.md §3.2): the seven CSV files -> the Kafka topics, one JSON
//! message per record keyed by its id ([`crate::sources::kafka::produce`]). Without an input
//! directory it generates the sources first, into a temporary directory.

use super::generate::{generate_files, GenerateOptions};
use super::{Flag, Stage, StageContext, StageReport};
use crate::error::{Error, Result};
use crate::sources::kafka::produce::produce_csv_dir;

pub struct Produce;

#[async_trait::async_trait]
impl Stage for Produce {
    fn name(&self) -> &'static str {
        "produce"
    }

    fn command(&self) -> &'static [&'static str] {
        &["produce"]
    }

    fn about(&self) -> &'static str {
        "Send the seven CSV files (or N generated clients) to the Kafka topics (SPEC §3.2): one JSON message per record, keyed by its id; needs kafka.brokers"
    }

    fn flags(&self) -> &'static [Flag] {
        &[Flag::Input, Flag::Generator, Flag::Date]
    }

    fn enabled(&self, ctx: &StageContext) -> bool {
        ctx.config.kafka.enabled()
    }

    fn writes_date(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let generated;
        let input = match &ctx.input {
            Some(dir) => dir.clone(),
            None => {
                generated = tempfile::Builder::new()
                    .prefix("ebroker-produce-")
                    .tempdir()
                    .map_err(Error::io(std::env::temp_dir()))?;
                let out = generated.path().to_path_buf();
                generate_files(GenerateOptions::from_config(ctx, out.clone())).await?;
                out
            }
        };
        let report = produce_csv_dir(&ctx.config.kafka, &input, ctx.config.clean.max_record_bytes).await?;
        report.check()?;
        let summary = format!("{}peak RSS {}\n", report.render(), crate::resources::peak_rss_text());
        Ok(StageReport {
            rows: report.delivered(),
            summary,
            tables: Vec::new(),
        })
    }
}
