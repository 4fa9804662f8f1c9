//! The one error type of ebroker (core and jobs alike). Every message names the value at fault and,
//! where there is one, the fix; the CLI prints the whole chain and maps kinds to exit codes.

use std::path::PathBuf;

/// The error of a client library of a service (Kafka, PostgreSQL, ClickHouse), kept as the
/// cause: this crate links none of them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in an ebroker job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, malformed or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A command-line or job argument is wrong (exit code 2).
    #[error("invalid argument: {0}")]
    Usage(String),

    /// An analyst's SQL does not parse or plan (exit code 2); DataFusion's message, which
    /// starts with what kind of error it is and gives the line and column of a syntax error.
    #[error("{0}")]
    Sql(String),

    /// A file or directory could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input file does not have the shape the contract (SPEC §2) describes.
    #[error("input {path}: {message}")]
    Input { path: String, message: String },

    /// The object store behind a warehouse URL failed.
    #[error("storage error at {url}: {source}")]
    Storage {
        url: String,
        #[source]
        source: object_store::Error,
    },

    /// DataFusion (planning or execution) failed.
    #[error("query engine error while {context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    /// Writing or reading Parquet failed.
    #[error("parquet error on {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },

    /// Record counts did not reconcile: a record would have been lost or doubled.
    #[error("reconciliation failed for {table}: {message}")]
    Reconcile { table: String, message: String },

    /// A pipeline stage failed after its retries.
    #[error("stage `{stage}` failed: {message}")]
    Stage { stage: String, message: String },

    /// Another process holds the processing date's lease (docs/DESIGN.md, "One writer per
    /// date").
    #[error("processing date {date} is being written by another process: {message}")]
    Locked { date: String, message: String },

    /// A Kafka client call failed.
    #[error("Kafka at {brokers}: {doing}: {source}")]
    Kafka {
        brokers: String,
        doing: String,
        #[source]
        source: BoxError,
    },

    /// A database (Greenplum or PostgreSQL) call failed. `target` is user@host:port/db.
    #[error("database {target}: {doing}: {source}")]
    Database {
        target: String,
        doing: String,
        #[source]
        source: BoxError,
    },

    /// A ClickHouse call failed.
    #[error("ClickHouse at {url}: {doing}: {source}")]
    ClickHouse {
        url: String,
        doing: String,
        #[source]
        source: BoxError,
    },

    /// JSON (run state, reports) could not be encoded or decoded.
    #[error("JSON error on {path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps a DataFusion error with what ebroker was doing at the time.
    pub fn engine(context: impl Into<String>) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
        let context = context.into();
        move |source| {
            let context = if matches!(
                source.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ) {
                format!("{context} (out of query memory: raise engine.memory_limit, e.g. EBROKER_ENGINE__MEMORY_LIMIT=1GiB, or lower engine.target_partitions)")
            } else {
                context
            };
            Error::Engine { context, source }
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Wraps an object-store error with the URL it happened on.
    pub fn storage(url: impl Into<String>) -> impl FnOnce(object_store::Error) -> Error {
        let url = crate::secrets::redact_urls(&url.into());
        move |source| {
            let source = match crate::kerberos::hint(&source.to_string()) {
                Some(hint) => object_store::Error::Generic {
                    store: "HDFS",
                    source: format!("{source}; {hint}").into(),
                },
                None => source,
            };
            Error::Storage { url, source }
        }
    }

    /// The process exit code the CLI uses for this error: 2 for usage and configuration
    /// mistakes, 3 for bad input data, 4 for failed reconciliation, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Sql(_) => 2,
            Error::Input { .. } => 3,
            Error::Reconcile { .. } => 4,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;

    use super::Error;

    #[test]
    fn running_out_of_query_memory_names_the_setting_to_raise() {
        let exhausted = DataFusionError::Context(
            "sorting".into(),
            Box::new(DataFusionError::ResourcesExhausted("SortPreservingMergeExec[0]".into())),
        );
        let text = Error::engine("running segment")(exhausted).to_string();
        assert!(
            text.contains("raise engine.memory_limit") && text.contains("SortPreservingMergeExec[0]"),
            "{text}"
        );
        let other = Error::engine("running segment")(DataFusionError::Plan("no such column".into())).to_string();
        assert!(!other.contains("memory_limit"), "{other}");
    }
}
