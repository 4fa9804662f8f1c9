//! The integration test binary: SQL rules on hand-made data, the end-to-end DAG on generated
//! dirty data, and (in later modules) the real services on 127.0.0.1 and on test hosts in network
//! namespaces.

mod buckets;
mod cleaning;
mod clickhouse;
mod cluster;
mod commit;
mod greenplum;
mod hdfs;
mod kafka;
mod netns;
mod pipeline;
mod rules;
mod runs;
mod sql;
