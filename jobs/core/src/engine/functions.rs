//! Scalar functions the jobs call that DataFusion does not have: `offer_id` (from the SQL of
//! the offers) and `client_bucket` (from the bucketed write of the cleaned tables). They
//! travel by name: the same [`register`] runs in the CLI and on every cluster node.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array, UInt64Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

/// Seed of the offer id hash; changing it changes every offer id.
const OFFER_ID_SEED: u64 = 0x0eb0_4e4b_0ff3_4001;

/// A deterministic 64-bit offer id (SPEC §6): xxHash64 of `client_id`, `offer_type` and the
/// processing date joined by the unit separator, so a rerun produces the same ids.
pub fn offer_id(client_id: &str, offer_type: &str, processing_date: &str) -> u64 {
    let key = format!("{client_id}\u{1f}{offer_type}\u{1f}{processing_date}");
    xxhash_rust::xxh64::xxh64(key.as_bytes(), OFFER_ID_SEED)
}

/// `offer_id(client_id, offer_type, processing_date)` as a SQL function (all text).
pub fn offer_id_udf() -> ScalarUDF {
    create_udf(
        "offer_id",
        vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(offer_id_columnar),
    )
}

fn offer_id_columnar(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let (clients, types, dates) = (
        as_string_array(&arrays[0])?,
        as_string_array(&arrays[1])?,
        as_string_array(&arrays[2])?,
    );
    let mut out = UInt64Builder::with_capacity(clients.len());
    for i in 0..clients.len() {
        if clients.is_null(i) || types.is_null(i) || dates.is_null(i) {
            out.append_null();
        } else {
            out.append_value(offer_id(clients.value(i), types.value(i), dates.value(i)));
        }
    }
    let array: ArrayRef = Arc::new(out.finish());
    Ok(ColumnarValue::Array(array))
}

/// `client_bucket(client_id, buckets)`: the bucket of each client id (see
/// [`crate::warehouse::buckets::bucket_of`]); a NULL id falls in bucket 0.
pub fn client_bucket_udf() -> ScalarUDF {
    create_udf(
        "client_bucket",
        vec![DataType::Utf8, DataType::Int64],
        DataType::UInt32,
        Volatility::Immutable,
        Arc::new(client_bucket_columnar),
    )
}

fn client_bucket_columnar(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let buckets = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if (1..=i64::from(u32::MAX)).contains(n) => *n as u32,
        other => {
            return Err(DataFusionError::Plan(format!(
                "client_bucket needs a constant bucket count >= 1, got {other:?}"
            )))
        }
    };
    let ids = match &args[0] {
        ColumnarValue::Array(ids) => Arc::clone(ids),
        ColumnarValue::Scalar(id) => {
            let bucket = match id {
                ScalarValue::Utf8(Some(id)) => crate::warehouse::buckets::bucket_of(id.as_bytes(), buckets),
                _ => 0,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::UInt32(Some(bucket))));
        }
    };
    let ids = as_string_array(&ids)?;
    let buckets = UInt32Array::from_iter_values((0..ids.len()).map(|i| {
        if ids.is_null(i) {
            0
        } else {
            crate::warehouse::buckets::bucket_of(ids.value(i).as_bytes(), buckets)
        }
    }));
    let array: ArrayRef = Arc::new(buckets);
    Ok(ColumnarValue::Array(array))
}

/// All functions of ebroker.
pub fn all() -> Vec<ScalarUDF> {
    vec![offer_id_udf(), client_bucket_udf()]
}

/// Registers every function of ebroker on `ctx`.
pub fn register(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_ids_are_stable_and_distinct() {
        let a = offer_id("CLIENT_000001", "Welcome Bonus", "2024-01-01");
        assert_eq!(a, offer_id("CLIENT_000001", "Welcome Bonus", "2024-01-01"));
        assert_ne!(a, offer_id("CLIENT_000001", "Welcome Bonus", "2024-01-02"));
        assert_ne!(offer_id("A", "BC", "d"), offer_id("AB", "C", "d"));
    }
}
