//! Where the marts go (docs/SPEC.md §7, §8). Each sink is one folder, the shape Vector gives
//! its sinks: the loader, the DDL it runs (templates in `sql/<sink>/`), its reports or
//! verification; the configuration section is `[<sink>]` in `ebroker-core`'s config.

pub mod clickhouse;
pub mod greenplum;
