//! Greenplum's stand-in, a real PostgreSQL 15 (`EBROKER_TEST_POSTGRES`, started by
//! deploy/local/postgres.sh): 20,000 clients published with binary COPY, the in-database
//! segmentation equal to the mart, publishing twice leaves one copy, a failed publish leaves
//! the previous state, the COPY encoder round-trips every type, and the generated DDL of both
//! flavours matches its golden file (Greenplum and PXF cannot run here: their DDL is checked
//! as text). `EBROKER_UPDATE_GOLDEN=1` rewrites the golden files.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use ebroker::runner::Status;
use ebroker::sinks::greenplum::tables::{PgColumn, PgType};
use ebroker::sinks::greenplum::{copy, ddl};
use ebroker_integration::day;
use ebroker_integration::{postgres_settings, repo_root, unique_name, Sources, TestWarehouse};
use ebroker_integration::{run, RunOptions};
use sqlx::Row;

const DATE: &str = "2024-06-01";

fn options(input: Option<std::path::PathBuf>, clients: u64) -> RunOptions {
    RunOptions {
        date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        input,
        clients,
        seed: 21,
        dirty: 0.03,
        resume: false,
    }
}

async fn count(conn: &mut sqlx::PgConnection, schema: &str, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM \"{schema}\".{table} WHERE processing_date = DATE '{DATE}'");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .unwrap()
        .get(0)
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_clients_load_by_copy_and_the_database_agrees_with_the_mart() {
    let schema = unique_name("gp");
    let wh = TestWarehouse::with_settings(postgres_settings(&schema));
    let state = run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options(None, 20_000))
        .await
        .unwrap();
    assert!(
        state.stages.iter().all(|s| s.status != Status::Failed),
        "{}",
        state.render()
    );
    let report: ebroker::stages::clean::CleanReport = wh
        .warehouse
        .read_json(&format!("_runs/{DATE}/clean.json"))
        .await
        .unwrap()
        .unwrap();

    let (compared, differences) = ebroker::sinks::greenplum::verify(&wh.config.greenplum, &wh.sql, day(DATE))
        .await
        .unwrap();
    assert!(
        differences.is_empty(),
        "the database's segmentation differs: {differences:?}"
    );
    let clients = report.table("clients").unwrap().written;
    assert_eq!(compared, clients, "one segmentation row per cleaned client");

    // Publish the same day again: still one copy of every table.
    let again = ebroker::sinks::greenplum::publish(&wh.config.greenplum, &wh.warehouse, &wh.sql, day(DATE))
        .await
        .unwrap();
    let mut conn = ebroker::sinks::greenplum::connect(&wh.config.greenplum).await.unwrap();
    for q in &report.tables {
        assert_eq!(
            count(&mut conn, &schema, &q.table).await as u64,
            q.written,
            "{} after two publishes",
            q.table
        );
    }
    assert_eq!(count(&mut conn, &schema, "client_segmentation").await as u64, clients);
    assert_eq!(
        count(&mut conn, &schema, ddl::IN_DATABASE_SEGMENTATION).await as u64,
        clients
    );
    assert_eq!(again.segmented_in_database, clients);

    // A publish that fails part-way (here: broken in-database SQL) leaves the previous state.
    let broken = wh.input_dir("broken-sql");
    std::fs::create_dir_all(broken.join("greenplum")).unwrap();
    std::fs::write(
        broken.join("greenplum/segmentation.sql"),
        "SELECT no_such_column FROM no_such_table",
    )
    .unwrap();
    let err = ebroker::sinks::greenplum::publish(
        &wh.config.greenplum,
        &wh.warehouse,
        &ebroker::sql::SqlLibrary::new(Some(broken)),
        day(DATE),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("segmentation.sql"), "{err}");
    for q in &report.tables {
        assert_eq!(
            count(&mut conn, &schema, &q.table).await as u64,
            q.written,
            "{} after a failed publish",
            q.table
        );
    }
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_encoder_round_trips_every_type() {
    let schema = unique_name("gp_copy");
    let wh = TestWarehouse::with_settings(postgres_settings(&schema));
    let mut conn = ebroker::sinks::greenplum::connect(&wh.config.greenplum).await.unwrap();
    let columns = vec![
        PgColumn {
            name: "t".into(),
            pg_type: PgType::Text,
            nullable: true,
        },
        PgColumn {
            name: "i4".into(),
            pg_type: PgType::Int4,
            nullable: true,
        },
        PgColumn {
            name: "i8".into(),
            pg_type: PgType::Int8,
            nullable: true,
        },
        PgColumn {
            name: "f8".into(),
            pg_type: PgType::Float8,
            nullable: true,
        },
        PgColumn {
            name: "n".into(),
            pg_type: PgType::Numeric { scale: 2 },
            nullable: true,
        },
        PgColumn {
            name: "d".into(),
            pg_type: PgType::Date,
            nullable: true,
        },
        PgColumn {
            name: "ts".into(),
            pg_type: PgType::Timestamp,
            nullable: true,
        },
        PgColumn {
            name: "b".into(),
            pg_type: PgType::Bool,
            nullable: true,
        },
    ];
    let ddl_columns: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.pg_type.sql()))
        .collect();
    for sql in [
        format!("CREATE SCHEMA \"{schema}\""),
        format!(
            "CREATE TABLE \"{schema}\".types ({}, processing_date DATE)",
            ddl_columns.join(", ")
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let schema_ref = Arc::new(Schema::new(vec![
        Field::new("t", DataType::Utf8, true),
        Field::new("i4", DataType::Int64, true),
        Field::new("i8", DataType::Int64, true),
        Field::new("f8", DataType::Float64, true),
        Field::new("n", DataType::Float64, true),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("b", DataType::Boolean, true),
    ]));
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some("Москва, ул. Ленина «1»"), Some(""), None])),
        Arc::new(Int64Array::from(vec![Some(-2_147_483_648), Some(30), None])),
        Arc::new(Int64Array::from(vec![Some(-9_007_199_254_740_993), Some(0), None])),
        Arc::new(Float64Array::from(vec![Some(-1.5e-7), Some(12345.678), None])),
        Arc::new(Float64Array::from(vec![Some(-1234567.891), Some(0.05), None])),
        // 1969-12-31 and 1999-12-31 (before both epochs), and NULL
        Arc::new(Date32Array::from(vec![Some(-1), Some(10_956), None])),
        // 1960-01-01 00:00:00.000001 and 2024-02-29 23:59:59
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(-315_619_199_999_999),
            Some(1_709_251_199_000_000),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
    ];
    let batch = RecordBatch::try_new(schema_ref, arrays).unwrap();
    let mut data = Vec::new();
    copy::header(&mut data);
    copy::encode_batch(&columns, &batch, 19_875, &mut data).unwrap(); // 2024-06-01
    copy::trailer(&mut data);
    let mut copy_in = conn
        .copy_in_raw(&format!("COPY \"{schema}\".types FROM STDIN (FORMAT binary)"))
        .await
        .unwrap();
    copy_in.send(data).await.unwrap();
    assert_eq!(copy_in.finish().await.unwrap(), 3);

    let sql = format!("SELECT concat_ws('|', coalesce(t, 'NULL'), coalesce(i4::text, 'NULL'), coalesce(i8::text, 'NULL'), coalesce(f8::text, 'NULL'), coalesce(n::text, 'NULL'), coalesce(d::text, 'NULL'), coalesce(ts::text, 'NULL'), coalesce(b::text, 'NULL'), processing_date::text) FROM \"{schema}\".types ORDER BY i8 NULLS LAST");
    let rows: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        vec![
            "Москва, ул. Ленина «1»|-2147483648|-9007199254740993|-1.5e-07|-1234567.89|1969-12-31|1960-01-01 00:00:00.000001|true|2024-06-01",
            "|30|0|12345.678|0.05|1999-12-31|2024-02-29 23:59:59|false|2024-06-01",
            "NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|2024-06-01",
        ]
    );
}

#[cfg_attr(not(feature = "services"), ignore = "needs the services of deploy/local/test.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_name_the_server_but_never_the_password() {
    let mut settings = postgres_settings("gp_secret");
    settings.push(("greenplum.port".into(), "1".into()));
    settings.push(("greenplum.password".into(), "\"s3cret-Pa55\"".into()));
    let wh = TestWarehouse::with_settings(settings);
    let err = ebroker::sinks::greenplum::connect(&wh.config.greenplum)
        .await
        .unwrap_err();
    let text = format!("{err:#} {err:?}");
    assert!(text.contains(":1/postgres") && text.contains("connecting"), "{text}");
    assert!(!text.contains("s3cret-Pa55"), "the password leaked: {text}");
}

/// The whole DAG for one client with one transaction, and the tables `publish greenplum`
/// would load from it.
async fn one_client_day() -> (TestWarehouse, Vec<ebroker::sinks::greenplum::tables::PgTable>) {
    let mut s = Sources::new();
    s.client("CLIENT_000001").transaction("CLIENT_000001", "100.00");
    let wh = TestWarehouse::new();
    let input = wh.input_dir("src");
    s.write(&input);
    run(&wh.config, &wh.engine, &wh.warehouse, &wh.sql, &options(Some(input), 1))
        .await
        .unwrap();
    let tables = ebroker::sinks::greenplum::published_tables(&wh.warehouse, day(DATE))
        .await
        .unwrap();
    (wh, tables)
}

/// The statements `publish greenplum` runs for a day, as one SQL text.
async fn generated_ddl(greenplum: bool) -> String {
    let (wh, tables) = one_client_day().await;
    let mut statements = ddl::create_statements(&wh.sql, "bank", &tables, greenplum).unwrap();
    for table in &tables {
        if greenplum {
            statements.extend(ddl::pxf_load(&wh.sql, "bank", table, day(DATE), "data/bank", "default").unwrap());
        } else {
            statements.push(ddl::delete_day("bank", &table.name, day(DATE)));
            statements.push(ddl::copy_in("bank", table));
        }
    }
    statements
        .iter()
        .map(|s| format!("{s};\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/golden").join(name);
    if std::env::var_os("EBROKER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; create it with EBROKER_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} changed; review and regenerate with EBROKER_UPDATE_GOLDEN=1",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_ddl_matches_the_golden_files() {
    let greenplum = generated_ddl(true).await;
    check_golden("greenplum_publish.sql", &greenplum);
    for clause in [
        "APPENDOPTIMIZED=TRUE, COMPRESSTYPE=ZSTD, COMPRESSLEVEL=3",
        "DISTRIBUTED BY (client_id)",
        "DISTRIBUTED BY (rate_id)",
        "pxf://data/bank/cleaned/clients/processing_date=2024-06-01?PROFILE=hdfs:parquet&SERVER=default",
        "FORMATTER='pxfwritable_import'",
    ] {
        assert!(greenplum.contains(clause), "greenplum flavour lacks {clause}");
    }
    let postgres = generated_ddl(false).await;
    check_golden("postgres_publish.sql", &postgres);
    for clause in ["APPENDOPTIMIZED", "DISTRIBUTED", "EXTERNAL", "pxf://"] {
        assert!(
            !postgres.contains(clause),
            "postgres flavour has the Greenplum clause {clause}"
        );
    }
}

/// The type PXF's `hdfs:parquet` profile reads a Parquet column as (PXF's Parquet data type
/// mapping), or `None` where PXF cannot read it. An INT64 timestamp cannot be read as
/// TIMESTAMP (greenplum-db/pxf#918), only as the BIGINT it is stored as.
fn pxf_reads_as(column: &datafusion::parquet::schema::types::ColumnDescriptor) -> Option<&'static str> {
    use datafusion::parquet::basic::{LogicalType, Type};
    match (column.physical_type(), column.logical_type_ref()) {
        (Type::BYTE_ARRAY, Some(LogicalType::String) | None) => Some("TEXT"),
        (Type::BOOLEAN, None) => Some("BOOLEAN"),
        (Type::INT32, Some(LogicalType::Date)) => Some("DATE"),
        (Type::INT32, None | Some(LogicalType::Integer { .. })) => Some("INTEGER"),
        (Type::INT64, None | Some(LogicalType::Integer { .. } | LogicalType::Timestamp { .. })) => Some("BIGINT"),
        (Type::DOUBLE, None) => Some("DOUBLE PRECISION"),
        (Type::FLOAT, None) => Some("REAL"),
        (Type::INT96, _) => Some("TIMESTAMP"),
        (Type::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Decimal { .. })) => Some("NUMERIC"),
        _ => None,
    }
}

/// Every column of every file a PXF external table reads has a Parquet type that PXF reads as
/// the type the external table declares; INT64 timestamps are declared BIGINT (PXF cannot read
/// them as TIMESTAMP). Checked on the files of a real run, short of a PXF server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pxf_external_tables_declare_what_the_parquet_files_hold() {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let (wh, tables) = one_client_day().await;
    let mut checked = 0;
    for table in &tables {
        let statements = ddl::pxf_load(&wh.sql, "bank", table, day(DATE), "data/bank", "default").unwrap();
        let Some(external) = statements.iter().find(|s| s.contains("CREATE READABLE EXTERNAL TABLE")) else {
            continue;
        };
        let declared: std::collections::BTreeMap<String, String> = external
            .lines()
            .filter_map(|line| line.trim().trim_end_matches(',').split_once(' '))
            .filter(|(name, _)| table.columns.iter().any(|c| c.name == *name))
            .map(|(name, ty)| (name.to_string(), ty.to_string()))
            .collect();
        let zone = match table.source {
            ebroker::sinks::greenplum::tables::Source::Cleaned => ebroker::warehouse::Zone::Cleaned,
            ebroker::sinks::greenplum::tables::Source::Mart => ebroker::warehouse::Zone::Marts,
        };
        let dir = wh
            .warehouse
            .local_dir(&ebroker::warehouse::Warehouse::partition(zone, &table.name, day(DATE)))
            .unwrap();
        for file in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if file.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            for column in schema.columns() {
                let name = column.name();
                let reads_as = pxf_reads_as(column)
                    .unwrap_or_else(|| panic!("{}: PXF cannot read column {name} ({column:?})", file.display()));
                assert_eq!(
                    declared.get(name).map(String::as_str),
                    Some(reads_as),
                    "{}: column {name} is {:?}/{:?} in Parquet",
                    table.name,
                    column.physical_type(),
                    column.logical_type_ref()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} columns checked");
}
