//! The tables as data (docs/SPEC.md §2, §4): the seven source tables — column names, types,
//! which fields are required, which are normalised, the id and the event date, the columns
//! cleaning derives — one definition that the generator, the cleaner, the Kafka stages and the
//! database sinks all read; the marts are declared in [`marts`].

pub mod marts;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The type a source field parses into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Date,
    Timestamp,
    Int,
    Float,
    Bool,
}

impl Kind {
    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
        }
    }
}

/// How a text value is normalised after trimming (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalise {
    None,
    Upper,
    DigitsOnly,
}

/// One column of a source table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// A row whose value is missing or unparsable goes to quarantine.
    pub required: bool,
    pub normalise: Normalise,
}

const fn col(name: &'static str, kind: Kind, required: bool, normalise: Normalise) -> Column {
    Column {
        name,
        kind,
        required,
        normalise,
    }
}

use Kind::*;
use Normalise::{DigitsOnly, None as Keep, Upper};

/// One source table.
#[derive(Debug)]
pub struct Table {
    /// Table name, topic suffix and cleaned directory name.
    pub name: &'static str,
    /// Column of the record id (the Kafka key).
    pub id: &'static str,
    /// Column of the event date (dedup keeps the latest).
    pub event: &'static str,
    pub columns: &'static [Column],
    /// Columns cleaning adds after the parsed ones (`amount_rub` of the transactions).
    pub derived: &'static [Column],
    /// The SQL file (under `sql/`) that deduplicates, and for some tables enriches, the
    /// parsed rows into the cleaned table.
    pub clean_sql: &'static str,
}

/// The cleaning SQL of the tables that are only deduplicated.
const DEDUP_SQL: &str = "datafusion/clean_dedup.sql";

pub const CLIENTS: Table = Table {
    name: "clients",
    id: "client_id",
    event: "registration_date",
    columns: &[
        col("client_id", Text, true, Keep),
        col("client_name", Text, false, Keep),
        col("phone", Text, false, DigitsOnly),
        col("email", Text, false, Keep),
        col("birth_date", Date, false, Keep),
        col("registration_date", Date, true, Keep),
        col("city", Text, false, Keep),
        col("segment", Text, false, Keep),
        col("status", Text, false, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

pub const BANK_TRANSACTIONS: Table = Table {
    name: "bank_transactions",
    id: "transaction_id",
    event: "transaction_date",
    columns: &[
        col("transaction_id", Text, true, Keep),
        col("client_id", Text, true, Keep),
        col("transaction_date", Date, true, Keep),
        col("amount", Float, true, Keep),
        col("currency", Text, false, Upper),
        col("transaction_type", Text, false, Upper),
        col("channel", Text, false, Keep),
    ],
    derived: &[col("amount_rub", Float, false, Keep)],
    clean_sql: "datafusion/clean_bank_transactions.sql",
};

pub const CLIENT_LOGINS: Table = Table {
    name: "client_logins",
    id: "login_id",
    event: "login_timestamp",
    columns: &[
        col("login_id", Text, true, Keep),
        col("client_id", Text, true, Keep),
        col("login_timestamp", Timestamp, true, Keep),
        col("ip_address", Text, false, Keep),
        col("device_type", Text, false, Upper),
        col("browser", Text, false, Keep),
        col("success", Bool, false, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

pub const CLIENT_ACTIVITIES: Table = Table {
    name: "client_activities",
    id: "activity_id",
    event: "activity_date",
    columns: &[
        col("activity_id", Text, true, Keep),
        col("client_id", Text, true, Keep),
        col("activity_date", Date, true, Keep),
        col("activity_type", Text, false, Upper),
        col("duration_minutes", Int, false, Keep),
        col("page_views", Int, false, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

pub const PAYMENTS: Table = Table {
    name: "payments",
    id: "payment_id",
    event: "payment_date",
    columns: &[
        col("payment_id", Text, true, Keep),
        col("client_id", Text, true, Keep),
        col("payment_date", Date, true, Keep),
        col("amount", Float, true, Keep),
        col("currency", Text, false, Upper),
        col("payment_type", Text, false, Upper),
        col("status", Text, false, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

pub const SECURITIES_PORTFOLIOS: Table = Table {
    name: "securities_portfolios",
    id: "portfolio_id",
    event: "purchase_date",
    columns: &[
        col("portfolio_id", Text, true, Keep),
        col("client_id", Text, true, Keep),
        col("security_type", Text, false, Upper),
        col("security_name", Text, false, Keep),
        col("quantity", Int, true, Keep),
        col("purchase_price", Float, true, Keep),
        col("current_price", Float, true, Keep),
        col("purchase_date", Date, true, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

pub const CURRENCY_RATES: Table = Table {
    name: "currency_rates",
    id: "rate_id",
    event: "rate_date",
    columns: &[
        col("rate_id", Text, true, Keep),
        col("currency_pair", Text, false, Upper),
        col("rate_date", Timestamp, true, Keep),
        col("rate_value", Float, true, Keep),
        col("rate_type", Text, false, Keep),
    ],
    derived: &[],
    clean_sql: DEDUP_SQL,
};

/// All tables, in the order the cleaner processes them (rates before the transactions that
/// are converted with them).
pub const TABLES: [&Table; 7] = [
    &CLIENTS,
    &CURRENCY_RATES,
    &BANK_TRANSACTIONS,
    &CLIENT_LOGINS,
    &CLIENT_ACTIVITIES,
    &PAYMENTS,
    &SECURITIES_PORTFOLIOS,
];

/// Name of the arrival-order column the parser adds (line number or Kafka offset).
pub const ARRIVAL: &str = "_arrival";

impl Table {
    /// Looks a table up by name.
    pub fn by_name(name: &str) -> Option<&'static Table> {
        TABLES.iter().copied().find(|t| t.name == name)
    }

    /// The CSV file name the generator writes and the cleaner reads.
    pub fn file_name(&self) -> String {
        format!("{}.csv", self.name)
    }

    /// The CSV header line.
    pub fn header(&self) -> String {
        self.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
    }

    /// Whether the table has a `client_id` column.
    pub fn has_client_id(&self) -> bool {
        self.columns.iter().any(|c| c.name == "client_id")
    }

    pub fn column_index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .expect("column exists in its table")
    }

    /// Indexes of the required columns, in the order quarantine reasons are checked:
    /// id, client_id, event date, then the other required columns in column order.
    pub fn required_check_order(&self) -> Vec<usize> {
        let mut order = vec![self.column_index(self.id)];
        if self.has_client_id() && self.id != "client_id" {
            order.push(self.column_index("client_id"));
        }
        order.push(self.column_index(self.event));
        for (i, c) in self.columns.iter().enumerate() {
            if c.required && !order.contains(&i) {
                order.push(i);
            }
        }
        order
    }

    /// The Arrow schema of the typed (parsed) table, with the arrival column appended.
    pub fn parsed_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.kind.arrow_type(), !c.required))
            .collect();
        fields.push(Field::new(ARRIVAL, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// The schema of the cleaned table: the parsed columns (without the arrival order), then
    /// the derived ones.
    pub fn cleaned_schema(&self) -> SchemaRef {
        let fields = self
            .columns
            .iter()
            .chain(self.derived)
            .map(|c| Field::new(c.name, c.kind.arrow_type(), !c.required));
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    }
}

/// The schema of a quarantine partition.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
        Field::new("record_bytes", DataType::Binary, true),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_order_follows_the_spec() {
        let names = |t: &Table| {
            t.required_check_order()
                .iter()
                .map(|&i| t.columns[i].name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&CLIENTS), ["client_id", "registration_date"]);
        assert_eq!(
            names(&BANK_TRANSACTIONS),
            ["transaction_id", "client_id", "transaction_date", "amount"]
        );
        assert_eq!(
            names(&SECURITIES_PORTFOLIOS),
            [
                "portfolio_id",
                "client_id",
                "purchase_date",
                "quantity",
                "purchase_price",
                "current_price"
            ]
        );
        assert_eq!(names(&CURRENCY_RATES), ["rate_id", "rate_date", "rate_value"]);
    }
}
