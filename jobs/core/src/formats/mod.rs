//! Record formats (docs/SPEC.md §2, §4): how a source record arrives — a CSV line or a Kafka
//! JSON message — and the one strict parser both go through, so a record is typed or
//! quarantined with the same reason whichever way it came.

pub mod csv;
pub mod fields;
pub mod kafka_json;
pub mod record;

#[cfg(test)]
mod mutations;
