//! The rows `publish clickhouse` sends, as RowBinary structs matching `sql/clickhouse/*.sql`,
//! built from the marts' Arrow batches. Decimals travel as fixed-point integers (cents in an
//! Int64), never as floats; DateTime as seconds and Date as days since the epoch.

use clickhouse::Row;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampSecondType, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;

/// `marketing_clients`.
#[derive(Debug, Row, Serialize)]
pub struct MarketingClient<'a> {
    pub client_id: &'a str,
    pub client_name: Option<&'a str>,
    pub portfolio_segment: &'a str,
    pub transaction_segment: &'a str,
    pub combined_segment: &'a str,
    /// Decimal(15,2) in cents.
    pub total_value: i64,
    pub activity_score: u32,
    pub priority_level: u8,
    pub last_updated: u32,
}

/// `targeted_offers`.
#[derive(Debug, Row, Serialize)]
pub struct TargetedOffer<'a> {
    pub offer_id: u64,
    pub client_id: &'a str,
    pub client_name: Option<&'a str>,
    pub segment: &'a str,
    pub combined_segment: &'a str,
    pub offer_type: &'a str,
    pub offer_description: &'a str,
    /// Decimal(12,2) in cents.
    pub expected_revenue: i64,
    pub priority_level: u8,
    pub offer_priority: u8,
    pub days_valid: u16,
    pub nba_rank: u8,
    pub total_value: i64,
    pub total_portfolio_value: i64,
    pub created_at: u32,
}

/// `marketing_analytics_daily`.
#[derive(Debug, Row, Serialize)]
pub struct AnalyticsDaily<'a> {
    pub analysis_date: u16,
    pub segment: &'a str,
    pub clients_count: u64,
    pub total_revenue: i64,
    pub avg_revenue: i64,
    pub active_clients: u64,
    pub new_clients: u64,
}

/// A mart batch with its columns cast to the types the rows are built from.
pub struct Columns {
    batch: RecordBatch,
}

impl Columns {
    pub fn new(batch: RecordBatch) -> Self {
        Columns { batch }
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, name: &str, as_type: DataType) -> Result<ArrayRef, String> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| format!("the mart has no column {name}"))?;
        cast(column, &as_type).map_err(|e| format!("column {name}: {e}"))
    }

    pub fn text(&self, name: &str) -> Result<StringArray, String> {
        Ok(self.get(name, DataType::Utf8)?.as_string::<i32>().clone())
    }

    pub fn int(&self, name: &str) -> Result<ArrayRef, String> {
        self.get(name, DataType::Int64)
    }

    pub fn uint(&self, name: &str) -> Result<ArrayRef, String> {
        self.get(name, DataType::UInt64)
    }

    pub fn float(&self, name: &str) -> Result<ArrayRef, String> {
        self.get(name, DataType::Float64)
    }

    pub fn seconds(&self, name: &str) -> Result<ArrayRef, String> {
        self.get(name, DataType::Timestamp(TimeUnit::Second, None))
    }

    pub fn days(&self, name: &str) -> Result<ArrayRef, String> {
        self.get(name, DataType::Date32)
    }
}

/// Reads a non-null value, naming the column and row when it is NULL or out of range.
pub fn value<T: TryFrom<i64>>(array: &ArrayRef, name: &str, row: usize) -> Result<T, String> {
    if array.is_null(row) {
        return Err(format!("{name} is NULL in row {row}"));
    }
    let v: i64 = match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        DataType::UInt64 => i64::try_from(array.as_primitive::<UInt64Type>().value(row))
            .map_err(|_| format!("{name} too large in row {row}"))?,
        DataType::Timestamp(TimeUnit::Second, _) => array.as_primitive::<TimestampSecondType>().value(row),
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row) as i64,
        other => return Err(format!("{name} has type {other}")),
    };
    T::try_from(v).map_err(|_| format!("{name} = {v} does not fit its ClickHouse type (row {row})"))
}

/// The fixed-point cents of a money value (Decimal(_, 2)).
pub fn cents(array: &ArrayRef, name: &str, row: usize) -> Result<i64, String> {
    if array.is_null(row) {
        return Ok(0);
    }
    let v = array.as_primitive::<Float64Type>().value(row);
    let c = (v * 100.0).round();
    if !c.is_finite() || c.abs() >= 9.0e17 {
        return Err(format!("{name} = {v} does not fit a Decimal (row {row})"));
    }
    Ok(c as i64)
}

/// A UInt64 value (offer ids use the whole range).
pub fn unsigned(array: &ArrayRef, name: &str, row: usize) -> Result<u64, String> {
    if array.is_null(row) {
        return Err(format!("{name} is NULL in row {row}"));
    }
    Ok(array.as_primitive::<UInt64Type>().value(row))
}

/// A text value that must be present.
pub fn text<'a>(array: &'a StringArray, name: &str, row: usize) -> Result<&'a str, String> {
    if array.is_null(row) {
        return Err(format!("{name} is NULL in row {row}"));
    }
    Ok(array.value(row))
}

/// A text value that may be NULL.
pub fn optional_text(array: &StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}
