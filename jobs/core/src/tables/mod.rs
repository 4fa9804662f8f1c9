//! A day of a warehouse table through the engine: registering the cleaned tables and marts
//! of a processing date under their plain names, writing a query's result as a day's
//! partition through staging and one commit, and the client buckets of the cleaned tables.

pub mod buckets;
pub mod partitions;
