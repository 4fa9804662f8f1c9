//! PostgreSQL's binary COPY format, written from Arrow batches: the header, one tuple per row
//! (field count, then each field as a length and its network-order bytes, -1 for NULL), and
//! the trailer. Every type the loader publishes is encoded: text, integer, bigint, float8,
//! numeric (base-10000 digits), date and timestamp (days and microseconds since 2000-01-01)
//! and boolean. The day's `processing_date` is appended to every row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;

use super::tables::{PgColumn, PgType};

/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

/// The binary COPY header: signature, flags, header extension length.
pub fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// The binary COPY trailer.
pub fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// The Arrow type a column is read as before encoding.
fn arrow_type(pg: PgType) -> DataType {
    match pg {
        PgType::Text => DataType::Utf8,
        PgType::Int4 | PgType::Int8 => DataType::Int64,
        PgType::Float8 | PgType::Numeric { .. } => DataType::Float64,
        PgType::Date => DataType::Date32,
        PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        PgType::Bool => DataType::Boolean,
    }
}

/// Appends every row of `batch` (its columns in `columns` order) plus `processing_date`
/// (Arrow days) as binary COPY tuples. Errors name the column and the value that cannot be
/// represented.
pub fn encode_batch(
    columns: &[PgColumn],
    batch: &RecordBatch,
    processing_date: i32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| {
            let array = batch
                .column_by_name(&c.name)
                .ok_or_else(|| format!("the source has no column {}", c.name))?;
            cast(array, &arrow_type(c.pg_type))
                .map_err(|e| format!("column {} cannot be read as {}: {e}", c.name, c.pg_type.sql()))
        })
        .collect::<Result<_, _>>()?;
    let fields = (columns.len() + 1) as i16;
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&fields.to_be_bytes());
        for (column, array) in columns.iter().zip(&arrays) {
            encode_field(column, array, row, out)?;
        }
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&(processing_date - PG_EPOCH_DAYS).to_be_bytes());
    }
    Ok(())
}

fn encode_field(column: &PgColumn, array: &Arc<dyn Array>, row: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if array.is_null(row) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    match column.pg_type {
        PgType::Text => {
            let text = array.as_string::<i32>().value(row);
            let len = i32::try_from(text.len())
                .map_err(|_| format!("{}: a text of {} bytes is too long", column.name, text.len()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        PgType::Int4 => {
            let v = array.as_primitive::<Int64Type>().value(row);
            let v = i32::try_from(v).map_err(|_| format!("{} = {v} does not fit INTEGER", column.name))?;
            put(out, &v.to_be_bytes());
        }
        PgType::Int8 => put(out, &array.as_primitive::<Int64Type>().value(row).to_be_bytes()),
        PgType::Float8 => put(out, &array.as_primitive::<Float64Type>().value(row).to_be_bytes()),
        PgType::Numeric { scale } => {
            let v = array.as_primitive::<Float64Type>().value(row);
            let bytes =
                numeric(v, scale).ok_or_else(|| format!("{} = {v} does not fit NUMERIC(18,{scale})", column.name))?;
            put(out, &bytes);
        }
        PgType::Date => put(
            out,
            &(array.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS).to_be_bytes(),
        ),
        PgType::Timestamp => put(
            out,
            &(array.as_primitive::<TimestampMicrosecondType>().value(row) - PG_EPOCH_MICROS).to_be_bytes(),
        ),
        PgType::Bool => put(out, &[u8::from(array.as_boolean().value(row))]),
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The binary NUMERIC of `value` rounded to `scale` decimals: ndigits, weight, sign, dscale,
/// then base-10000 digits, most significant first. `None` when it is not finite or does not
/// fit 18 digits.
pub fn numeric(value: f64, scale: u8) -> Option<Vec<u8>> {
    if !value.is_finite() {
        return None;
    }
    let scaled = (value * 10f64.powi(scale as i32)).round();
    if scaled.abs() >= 1e18 {
        return None;
    }
    let negative = scaled < 0.0;
    // Pad the fraction to whole base-10000 digits: units of 10^-(4 * fraction_groups).
    let fraction_groups = (scale as usize).div_ceil(4);
    let pad = fraction_groups * 4 - scale as usize;
    let mut units = scaled.abs() as u128 * 10u128.pow(pad as u32);
    let mut groups = Vec::new();
    while units > 0 {
        groups.push((units % 10_000) as i16);
        units /= 10_000;
    }
    // groups: least significant first, the first `fraction_groups` after the point.
    let weight = groups.len() as i16 - fraction_groups as i16 - 1;
    let mut digits: Vec<i16> = groups.into_iter().rev().collect();
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(if digits.is_empty() { 0 } else { weight }).to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(scale as i16).to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(bytes: &[u8]) -> (i16, i16, u16, i16, Vec<i16>) {
        let word = |i: usize| i16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let n = word(0);
        let ds = (0..n as usize).map(|k| word(8 + 2 * k)).collect();
        (n, word(2), word(4) as u16, word(6), ds)
    }

    #[test]
    fn numerics_are_base_10000_with_weight_and_sign() {
        assert_eq!(
            digits(&numeric(12345.67, 2).unwrap()),
            (3, 1, 0, 2, vec![1, 2345, 6700])
        );
        assert_eq!(digits(&numeric(-0.05, 2).unwrap()), (1, -1, 0x4000, 2, vec![500]));
        assert_eq!(digits(&numeric(0.0, 2).unwrap()), (0, 0, 0, 2, vec![]));
        assert_eq!(digits(&numeric(100000000.0, 2).unwrap()), (1, 2, 0, 2, vec![1]));
        assert!(numeric(f64::NAN, 2).is_none());
        assert!(numeric(1e17, 2).is_none(), "more than 18 digits");
    }
}
