//! The tables `publish greenplum` creates (docs/SPEC.md §7): the seven cleaned tables and
//! `client_segmentation`, with their PostgreSQL types derived from the warehouse's Arrow
//! schemas, each with a `processing_date` column so a day can be replaced as a unit.

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use crate::schema::{Table, TABLES};

/// A PostgreSQL column type the loader writes (binary COPY encodes each of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Text,
    Int4,
    Int8,
    Float8,
    /// NUMERIC(18, scale): money, rounded to cents by the jobs.
    Numeric {
        scale: u8,
    },
    Date,
    Timestamp,
    Bool,
}

impl PgType {
    pub fn sql(self) -> String {
        match self {
            PgType::Text => "TEXT".into(),
            PgType::Int4 => "INTEGER".into(),
            PgType::Int8 => "BIGINT".into(),
            PgType::Float8 => "DOUBLE PRECISION".into(),
            PgType::Numeric { scale } => format!("NUMERIC(18,{scale})"),
            PgType::Date => "DATE".into(),
            PgType::Timestamp => "TIMESTAMP".into(),
            PgType::Bool => "BOOLEAN".into(),
        }
    }
}

/// One column of a published table.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    pub name: String,
    pub pg_type: PgType,
    pub nullable: bool,
}

/// Where a published table's rows come from in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cleaned,
    Mart,
}

/// A table `publish greenplum` creates and loads.
#[derive(Debug, Clone)]
pub struct PgTable {
    pub name: String,
    pub source: Source,
    /// Columns as in the Parquet files, in order (`processing_date` is added by the loader).
    pub columns: Vec<PgColumn>,
    /// The row identity: deduplication key and Greenplum distribution key.
    pub key: String,
    /// Column ordering duplicates: the latest one wins (the event date).
    pub latest_by: Option<String>,
    /// Columns that get an index (client_segmentation: segment, city, status).
    pub indexes: Vec<String>,
}

impl PgTable {
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Integer columns that fit INTEGER (SPEC §2 ranges), published as INTEGER.
const INT4_COLUMNS: [&str; 3] = ["duration_minutes", "page_views", "quantity"];

/// Money columns of client_segmentation: rounded to cents, published as NUMERIC(18,2).
const MONEY_COLUMNS: [&str; 5] = [
    "total_transaction_amount",
    "avg_transaction_amount",
    "max_transaction_amount",
    "total_payment_amount",
    "portfolio_value",
];

/// Maps an Arrow schema to PostgreSQL columns.
pub fn pg_columns(schema: &SchemaRef) -> Vec<PgColumn> {
    schema
        .fields()
        .iter()
        .filter(|f| f.name() != "processing_date")
        .map(|f| {
            let name = f.name().as_str();
            let pg_type = match f.data_type() {
                DataType::Int64 | DataType::Int32 if INT4_COLUMNS.contains(&name) => PgType::Int4,
                DataType::Int64 | DataType::Int32 => PgType::Int8,
                DataType::Float64 if MONEY_COLUMNS.contains(&name) => PgType::Numeric { scale: 2 },
                DataType::Float64 => PgType::Float8,
                DataType::Date32 => PgType::Date,
                DataType::Timestamp(_, _) => PgType::Timestamp,
                DataType::Boolean => PgType::Bool,
                _ => PgType::Text,
            };
            PgColumn {
                name: name.to_string(),
                pg_type,
                nullable: f.is_nullable(),
            }
        })
        .collect()
}

/// The eight published tables: the cleaned tables, then client_segmentation.
pub fn published_tables(segmentation_schema: &SchemaRef) -> Vec<PgTable> {
    let mut tables: Vec<PgTable> = TABLES.iter().map(|t| cleaned_table(t)).collect();
    tables.push(PgTable {
        name: "client_segmentation".into(),
        source: Source::Mart,
        columns: pg_columns(segmentation_schema),
        key: "client_id".into(),
        latest_by: None,
        indexes: vec!["segment".into(), "city".into(), "status".into()],
    });
    tables
}

fn cleaned_table(table: &Table) -> PgTable {
    PgTable {
        name: table.name.to_string(),
        source: Source::Cleaned,
        columns: pg_columns(&table.cleaned_schema()),
        key: table.id.to_string(),
        latest_by: Some(table.event.to_string()),
        indexes: Vec::new(),
    }
}

/// The distribution key of a table in Greenplum: client_id, or the id where there is none.
pub fn distribution_key(table: &PgTable) -> &str {
    if table.columns.iter().any(|c| c.name == "client_id") {
        "client_id"
    } else {
        &table.key
    }
}
