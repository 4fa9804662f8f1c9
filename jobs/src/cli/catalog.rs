//! The warehouse as a SQL catalog for analysts: every table of every zone registered as one
//! partitioned table (Hive layout, `processing_date` as a DATE partition column) under a schema
//! named after its zone — `raw.clients`, `quarantine.payments`, `cleaned.clients`,
//! `marts.targeted_offers`. Tables are discovered by listing the warehouse (file, hdfs, s3),
//! in the client's session, in-process or on the cluster.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::warehouse::{Warehouse, Zone};

/// The zones that become schemas, in the order data flows.
pub const ZONES: [Zone; 4] = [Zone::Raw, Zone::Quarantine, Zone::Cleaned, Zone::Marts];

/// A registered table: `zone.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogTable {
    pub schema: String,
    pub table: String,
}

impl std::fmt::Display for CatalogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Registers every table found in the warehouse; returns them sorted.
pub async fn register_warehouse(engine: &Engine, warehouse: &Warehouse) -> Result<Vec<CatalogTable>> {
    let ctx = engine.context();
    let catalog_name = ctx.state().config().options().catalog.default_catalog.clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| Error::Config(format!("the session has no catalog {catalog_name}")))?;
    let mut tables = Vec::new();
    for zone in ZONES {
        if catalog.schema(zone.dir()).is_none() {
            catalog
                .register_schema(zone.dir(), Arc::new(MemorySchemaProvider::new()))
                .map_err(Error::engine(format!("creating schema {}", zone.dir())))?;
        }
        for table in table_dirs(warehouse, zone).await? {
            if register_table(engine, warehouse, zone, &table).await? {
                tables.push(CatalogTable {
                    schema: zone.dir().to_string(),
                    table,
                });
            }
        }
    }
    tables.sort();
    Ok(tables)
}

/// The table directories directly under a zone.
async fn table_dirs(warehouse: &Warehouse, zone: Zone) -> Result<Vec<String>> {
    let prefix = warehouse.path(&format!("{}/", zone.dir()));
    let listing = match warehouse.store().list_with_delimiter(Some(&prefix)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage(warehouse.url(zone.dir()).to_string())(e)),
    };
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|name| !name.starts_with(['_', '.']))
        .collect())
}

/// Registers `zone.table` as a partitioned Parquet table; false when it holds no files yet.
async fn register_table(engine: &Engine, warehouse: &Warehouse, zone: Zone, table: &str) -> Result<bool> {
    let what = format!("registering {}.{table}", zone.dir());
    let url = ListingTableUrl::parse(warehouse.url(&format!("{}/{table}/", zone.dir())))
        .map_err(Error::engine(what.clone()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("processing_date".to_string(), DataType::Date32)]);
    let state = engine.context().state();
    let schema = match options.infer_schema(&state, &url).await {
        Ok(schema) => schema,
        Err(e) if e.to_string().contains("No files") || e.to_string().contains("not found") => return Ok(false),
        Err(e) => return Err(Error::engine(what)(e)),
    };
    if schema.fields().is_empty() {
        return Ok(false);
    }
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let listing = ListingTable::try_new(config).map_err(Error::engine(what.clone()))?;
    let name = datafusion::common::TableReference::partial(zone.dir(), table);
    engine
        .context()
        .deregister_table(name.clone())
        .map_err(Error::engine(what.clone()))?;
    engine
        .context()
        .register_table(name, Arc::new(listing))
        .map_err(Error::engine(what))?;
    Ok(true)
}
