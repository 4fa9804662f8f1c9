//! Where records come from besides local CSV files: Kafka topics (docs/SPEC.md §2, §3.2–3.3).

pub mod kafka;
