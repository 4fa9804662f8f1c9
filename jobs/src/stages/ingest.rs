//! The ingest stage (docs/SPEC.md §3.3): the Kafka topics -> `raw/<table>/processing_date=D/`
//! exactly once ([`crate::sources::kafka::ingest`]), one task per partition range: on the
//! cluster's executors with `--cluster`. A date already ingested is a no-op
//! unless `--force`.

use super::{Flag, Stage, StageContext, StageReport};
use crate::error::Result;
use crate::sources::kafka::ingest::ingest_on;

pub struct Ingest;

#[async_trait::async_trait]
impl Stage for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn command(&self) -> &'static [&'static str] {
        &["ingest"]
    }

    fn about(&self) -> &'static str {
        "Dump the Kafka topics to raw/<table>/processing_date=D/ exactly once (SPEC §3.3): each partition from the group's committed offset to the high-water mark seen at the start; offsets are committed only after the dump and its manifest are durable"
    }

    fn flags(&self) -> &'static [Flag] {
        &[Flag::Date, Flag::Force]
    }

    fn enabled(&self, ctx: &StageContext) -> bool {
        ctx.config.kafka.enabled()
    }

    async fn run(&self, ctx: &StageContext) -> Result<StageReport> {
        let outcome = ingest_on(
            ctx.engine().await?,
            &ctx.config.kafka,
            &ctx.warehouse,
            ctx.date,
            ctx.force,
        )
        .await?;
        let records = outcome.manifest.records();
        let date = ctx.date;
        let mut summary = outcome.manifest.render();
        if outcome.ingested {
            let secs = outcome.seconds.max(1e-9);
            summary.push_str(&format!(
                "ingested {records} records for {date} in {secs:.2} s ({:.0} msg/s), peak RSS {}\n",
                records as f64 / secs,
                crate::resources::peak_rss_text()
            ));
        } else {
            summary.push_str(&format!(
                "{date} was already ingested ({records} records); nothing read. Use --force to read its offset ranges again.\n"
            ));
        }
        Ok(StageReport {
            rows: records,
            summary,
            tables: Vec::new(),
        })
    }
}
