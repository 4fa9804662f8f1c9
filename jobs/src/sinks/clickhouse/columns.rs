//! The one loader of every published mart: the target columns come from the table's DDL file
//! (`sql/clickhouse/<table>.sql`, the one place their ClickHouse types are written), and any
//! mart batch is encoded into them as RowBinary by column name. Decimals travel as
//! fixed-point integers (never floats), DateTime as seconds and Date as days since the epoch;
//! a value that does not fit its column is an error naming the column and the row.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampSecondType, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;

/// A ClickHouse column type, as far as publishing needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChType {
    String,
    Nullable(Box<ChType>),
    /// An unsigned integer of this many bytes.
    UInt(u8),
    /// A signed integer of this many bytes.
    Int(u8),
    /// Decimal(P, S) with P <= 18: an Int64 of value * 10^S, below 10^P in magnitude.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Date,
    DateTime,
}

/// One column of a target table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChColumn {
    pub name: String,
    pub ty: ChType,
}

/// The columns of the `CREATE TABLE` statement in `ddl`, in order.
pub fn parse_columns(ddl: &str) -> Result<Vec<ChColumn>, String> {
    let code: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let open = code.find('(').ok_or("no column list after CREATE TABLE")?;
    let mut depth = 0;
    let mut close = None;
    for (i, c) in code[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let list = &code[open + 1..close.ok_or("unclosed column list")?];
    split_top_level(list)
        .into_iter()
        .map(|definition| {
            let definition = definition.trim();
            let (name, ty) = definition
                .split_once(char::is_whitespace)
                .ok_or(format!("column `{definition}` has no type"))?;
            Ok(ChColumn {
                name: name.trim_matches('`').to_string(),
                ty: parse_type(ty.trim())?,
            })
        })
        .collect()
}

fn split_top_level(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn parse_type(text: &str) -> Result<ChType, String> {
    let inner = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|t| t.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(of) = inner("Nullable(") {
        return Ok(ChType::Nullable(Box::new(parse_type(of)?)));
    }
    if let Some(of) = inner("LowCardinality(") {
        return parse_type(of); // RowBinary sends it as the inner type
    }
    if let Some(args) = inner("Decimal(") {
        let (precision, scale) = args.split_once(',').ok_or(format!("{text}: Decimal needs (P, S)"))?;
        let (precision, scale): (u32, u32) = (
            precision.trim().parse().map_err(|_| format!("{text}: bad precision"))?,
            scale.trim().parse().map_err(|_| format!("{text}: bad scale"))?,
        );
        if precision > 18 || scale > precision {
            return Err(format!("{text}: only Decimal(P <= 18, S <= P) can be published"));
        }
        return Ok(ChType::Decimal { precision, scale });
    }
    if text.starts_with("DateTime64") {
        // Not in ClickHouse 18.16; its RowBinary is an Int64 of ticks, not the seconds sent here.
        return Err(format!(
            "ClickHouse type {text} cannot be published: use DateTime('UTC') (ClickHouse 18.16 has no DateTime64)"
        ));
    }
    if text == "DateTime" {
        return Ok(ChType::DateTime);
    }
    if let Some(args) = inner("DateTime(") {
        // DateTime('zone'): RowBinary carries the Unix time whatever the zone; the zone (UTC in
        // the shipped DDL) only decides the dates, months and partitions the server derives.
        let zone = args.strip_prefix('\'').and_then(|z| z.strip_suffix('\''));
        if !zone.is_some_and(|z| !z.is_empty() && !z.contains(['\'', '\\'])) {
            return Err(format!(
                "{text}: DateTime takes one quoted time zone, e.g. DateTime('UTC')"
            ));
        }
        return Ok(ChType::DateTime);
    }
    match text {
        "String" => Ok(ChType::String),
        "Date" => Ok(ChType::Date),
        "UInt8" => Ok(ChType::UInt(1)),
        "UInt16" => Ok(ChType::UInt(2)),
        "UInt32" => Ok(ChType::UInt(4)),
        "UInt64" => Ok(ChType::UInt(8)),
        "Int8" => Ok(ChType::Int(1)),
        "Int16" => Ok(ChType::Int(2)),
        "Int32" => Ok(ChType::Int(4)),
        "Int64" => Ok(ChType::Int(8)),
        other => Err(format!("ClickHouse type {other} cannot be published yet")),
    }
}

/// Appends the RowBinary rows of `batch` for `columns` to `out`. `day` (days since the epoch)
/// is the processing date a `Date` column named `day_column` must hold.
pub fn encode(
    columns: &[ChColumn],
    batch: &RecordBatch,
    day_column: &str,
    day: i32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let arrays: Vec<ArrayRef> = columns.iter().map(|c| source(batch, c)).collect::<Result<_, _>>()?;
    for row in 0..batch.num_rows() {
        for (column, array) in columns.iter().zip(&arrays) {
            write_value(&column.ty, array, &column.name, row, out)?;
            if column.name == day_column
                && column.ty == ChType::Date
                && array.as_primitive::<Date32Type>().value(row) != day
            {
                return Err(format!("{} of row {row} is not the processing date", column.name));
            }
        }
    }
    Ok(())
}

/// The mart's column for `column`, cast to the Arrow type its encoding reads.
fn source(batch: &RecordBatch, column: &ChColumn) -> Result<ArrayRef, String> {
    let array = batch
        .column_by_name(&column.name)
        .ok_or_else(|| format!("the mart has no column {}", column.name))?;
    let as_type = match &column.ty {
        ChType::Nullable(inner) => arrow_type(inner),
        ty => arrow_type(ty),
    };
    cast(array, &as_type).map_err(|e| format!("column {}: {e}", column.name))
}

fn arrow_type(ty: &ChType) -> DataType {
    match ty {
        ChType::String | ChType::Nullable(_) => DataType::Utf8,
        ChType::UInt(8) => DataType::UInt64,
        ChType::UInt(_) | ChType::Int(_) => DataType::Int64,
        ChType::Decimal { .. } => DataType::Float64,
        ChType::Date => DataType::Date32,
        ChType::DateTime => DataType::Timestamp(TimeUnit::Second, None),
    }
}

fn write_value(ty: &ChType, array: &ArrayRef, name: &str, row: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match ty {
        ChType::Nullable(inner) if array.is_null(row) => {
            let _ = inner;
            out.push(1);
            Ok(())
        }
        ChType::Nullable(inner) => {
            out.push(0);
            write_value(inner, array, name, row, out)
        }
        // Money that is missing is zero (the marts fill it; this keeps a NULL from failing a day).
        ChType::Decimal { precision, scale } => {
            let value = if array.is_null(row) {
                0.0
            } else {
                array.as_primitive::<Float64Type>().value(row)
            };
            let fixed = (value * 10f64.powi(*scale as i32)).round();
            if !fixed.is_finite() || fixed.abs() >= 10f64.powi(*precision as i32) {
                return Err(format!(
                    "{name} = {value} does not fit Decimal({precision}, {scale}) (row {row})"
                ));
            }
            out.extend_from_slice(&(fixed as i64).to_le_bytes());
            Ok(())
        }
        _ if array.is_null(row) => Err(format!("{name} is NULL in row {row}")),
        ChType::String => {
            let text = array.as_string::<i32>().value(row);
            write_length(text.len(), out);
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        ChType::UInt(8) => {
            out.extend_from_slice(&array.as_primitive::<UInt64Type>().value(row).to_le_bytes());
            Ok(())
        }
        ChType::UInt(bytes) => write_int(
            array.as_primitive::<Int64Type>().value(row),
            *bytes,
            false,
            name,
            row,
            out,
        ),
        ChType::Int(bytes) => write_int(
            array.as_primitive::<Int64Type>().value(row),
            *bytes,
            true,
            name,
            row,
            out,
        ),
        ChType::Date => {
            let days = i64::from(array.as_primitive::<Date32Type>().value(row));
            write_int(days, 2, false, name, row, out)
        }
        ChType::DateTime => write_int(
            array.as_primitive::<TimestampSecondType>().value(row),
            4,
            false,
            name,
            row,
            out,
        ),
    }
}

/// `value` as a little-endian integer of `bytes` bytes, if it fits.
fn write_int(value: i64, bytes: u8, signed: bool, name: &str, row: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let bits = u32::from(bytes) * 8;
    let fits = if signed {
        bits == 64 || (-(1i64 << (bits - 1))..(1i64 << (bits - 1))).contains(&value)
    } else {
        value >= 0 && (bits == 64 || value < (1i64 << bits))
    };
    if !fits {
        return Err(format!("{name} = {value} does not fit its ClickHouse type (row {row})"));
    }
    out.extend_from_slice(&value.to_le_bytes()[..usize::from(bytes)]);
    Ok(())
}

/// RowBinary's string length: unsigned LEB128.
fn write_length(mut length: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Float64Array, Int64Array, StringArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn the_shipped_ddl_parses_into_publishable_columns() {
        for file in ["marketing_clients", "targeted_offers", "marketing_analytics_daily"] {
            let ddl = std::fs::read_to_string(format!("{}/../sql/clickhouse/{file}.sql", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
            let columns = parse_columns(&ddl).unwrap();
            assert!(columns.len() >= 7, "{file}: {columns:?}");
        }
        let columns = parse_columns(
            "CREATE TABLE t (\n  a Nullable(String),\n  b Decimal(15, 2), c DateTime('UTC')\n) ENGINE = Log",
        )
        .unwrap();
        assert_eq!(columns[0].ty, ChType::Nullable(Box::new(ChType::String)));
        assert_eq!(
            columns[1].ty,
            ChType::Decimal {
                precision: 15,
                scale: 2
            }
        );
        assert_eq!(columns[2].ty, ChType::DateTime);
        let cases: [(&str, Result<ChType, String>); 4] = [
            ("DateTime", Ok(ChType::DateTime)),
            ("DateTime('UTC')", Ok(ChType::DateTime)),
            ("DateTime( 'America/New_York' )", Ok(ChType::DateTime)),
            (
                "Nullable(DateTime('UTC'))",
                Ok(ChType::Nullable(Box::new(ChType::DateTime))),
            ),
        ];
        for (ty, parsed) in cases {
            assert_eq!(parse_type(ty), parsed, "{ty}");
        }
        for ty in ["DateTime(UTC)", "DateTime('')", "DateTime64(3)", "DateTime64(3, 'UTC')"] {
            let err = parse_type(ty).unwrap_err();
            assert!(err.contains(ty) && err.contains("DateTime('UTC')"), "{ty}: {err}");
        }
    }

    /// Every DateTime of the shipped ClickHouse DDL is `DateTime('UTC')`: the rows hold D 00:00
    /// UTC, and a zone-less DateTime takes its months and dates in the server's time zone.
    #[test]
    fn the_shipped_ddl_keeps_every_datetime_in_utc() {
        let dir = format!("{}/../sql/clickhouse", env!("CARGO_MANIFEST_DIR"));
        let mut datetimes = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices("DateTime") {
                if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue; // toDateTime(..) and the like
                }
                assert!(
                    code[at..].starts_with("DateTime('UTC')"),
                    "{}: {}",
                    path.display(),
                    &code[at..code.len().min(at + 30)]
                );
                datetimes += 1;
            }
            if code.contains("CREATE TABLE") {
                let columns = parse_columns(&code).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!columns.is_empty(), "{}", path.display());
            }
        }
        assert!(
            datetimes >= 3,
            "last_updated, created_at and sent_at are DateTime('UTC')"
        );
    }

    #[test]
    fn rows_encode_as_clickhouse_reads_them_and_misfits_name_the_column() {
        let columns = parse_columns(
            "CREATE TABLE t (s String, n Nullable(String), m Decimal(12, 2), u UInt8, d Date, t DateTime)",
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("n", DataType::Utf8, true),
            Field::new("m", DataType::Float64, true),
            Field::new("u", DataType::Int64, false),
            Field::new("d", DataType::Date32, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Second, None), false),
        ]));
        let batch = |u: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(vec!["ab"])),
                    Arc::new(StringArray::from(vec![None::<&str>])),
                    Arc::new(Float64Array::from(vec![12.345])),
                    Arc::new(Int64Array::from(vec![u])),
                    Arc::new(Date32Array::from(vec![19875])),
                    Arc::new(TimestampSecondArray::from(vec![1_717_200_000])),
                ],
            )
            .unwrap()
        };
        let mut out = Vec::new();
        encode(&columns, &batch(7), "d", 19875, &mut out).unwrap();
        let mut expected = vec![2, b'a', b'b', 1];
        expected.extend_from_slice(&1235i64.to_le_bytes());
        expected.push(7);
        expected.extend_from_slice(&19875u16.to_le_bytes());
        expected.extend_from_slice(&1_717_200_000u32.to_le_bytes());
        assert_eq!(out, expected);
        let err = encode(&columns, &batch(256), "d", 19875, &mut Vec::new()).unwrap_err();
        assert!(err.contains("u = 256") && err.contains("row 0"), "{err}");
        let err = encode(&columns, &batch(1), "d", 19876, &mut Vec::new()).unwrap_err();
        assert!(err.contains("not the processing date"), "{err}");
    }

    #[test]
    fn decimals_are_checked_against_their_declared_precision() {
        let columns = parse_columns("CREATE TABLE t (m Decimal(12, 2))").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("m", DataType::Float64, false)]));
        let batch = |m: f64| RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Float64Array::from(vec![m]))]);
        encode(&columns, &batch(9_999_999_999.99).unwrap(), "d", 0, &mut Vec::new()).unwrap();
        let err = encode(&columns, &batch(10_000_000_000.0).unwrap(), "d", 0, &mut Vec::new()).unwrap_err();
        assert!(
            err.contains("m = 10000000000") && err.contains("Decimal(12, 2)"),
            "{err}"
        );
    }
}
