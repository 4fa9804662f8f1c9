"""Reads ebroker's warehouse tables back with Apache Spark (pyspark 3.5), the way the bank's
existing Spark jobs would: `spark.read.parquet(<root>/<zone>/<table>)`, with Hive-style
`processing_date=D` partition discovery. Used by tests/it/interop.rs.

    python spark_read.py <warehouse URL> <zone/table> [<zone/table> ...]

Prints one JSON object: per table its row count, its columns, the processing dates Spark
discovered, and the first column's three smallest values (the sampled rows' keys) with those
rows as strings.
"""

import json
import sys

from pyspark.sql import SparkSession


def main() -> None:
    root, tables = sys.argv[1].rstrip("/"), sys.argv[2:]
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("ebroker-interop")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    for table in tables:
        frame = spark.read.parquet(f"{root}/{table}")
        key = frame.columns[0]
        sample = frame.orderBy(key).limit(3).collect()
        out[table] = {
            "rows": frame.count(),
            "columns": frame.columns,
            "processing_dates": sorted(
                str(row[0]) for row in frame.select("processing_date").distinct().collect()
            ),
            "sample_keys": [str(row[key]) for row in sample],
        }
    spark.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
